/** The API's types, generated from schema/schema.graphql (make codegen): a renamed field fails typecheck here. */
export type * from "../../clients/typescript/src/generated/schema.ts";
