/**
 * trapdoor's TypeScript client. `TrapdoorClient` holds the verbs; the schema's types (inputs,
 * enums, objects) are generated from schema/schema.graphql into generated/schema.ts.
 */
export { type PartFile, TrapdoorClient, type UploadOptions } from "./client.ts";
export { downloadVerified } from "./download.ts";
export { type ErrorKind, TrapdoorError } from "./errors.ts";
export type * as Schema from "./generated/schema.ts";
export * from "./queries.ts";
export {
  ApiClient,
  type ApiErrorJson,
  apiError,
  type Credentials,
  networkError,
  type RequestOptions,
} from "./transport.ts";
export {
  describeFile,
  type LocalPart,
  putPart,
  stillValid,
  type UploadState,
  UploadStateStore,
  type UploadTarget,
} from "./upload.ts";
export { type FollowOptions, followJob } from "./watch.ts";
