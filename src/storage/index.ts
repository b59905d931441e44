/**
 * Object storage: the ObjectStore contract and a factory that builds the configured store.
 * The app's Config satisfies StorageConfig as it is (`createObjectStore(config)`).
 */
import type { StoreSettings } from "../config.ts";
import { LocalStore } from "./local-store.ts";
import type { ObjectStore } from "./object-store.ts";
import { S3Store } from "./s3.ts";

export { localStoreRouter } from "./local-router.ts";
export { LocalStore, type LocalStoreOptions } from "./local-store.ts";
export {
  InvalidKeyError,
  NotFoundError,
  type ObjectStore,
  SizeMismatchError,
  type StoredObject,
} from "./object-store.ts";
export { S3Store, type S3StoreOptions } from "./s3.ts";

export interface StorageConfig {
  store: StoreSettings;
  /** Base URL clients reach the API at; the local store's signed URLs start with it. */
  publicBaseUrl: string;
  /** Signs the local store's URLs. */
  signingSecret: string;
  limits?: { maxUploadBytes?: number };
}

/**
 * The configured store. A LocalStore needs its router mounted by the API:
 * `if (store instanceof LocalStore) app.use("/objects", localStoreRouter(store))`.
 */
export function createObjectStore(config: StorageConfig): ObjectStore {
  const store = config.store;
  switch (store.kind) {
    case "local":
      return new LocalStore({
        root: store.root,
        publicBaseUrl: config.publicBaseUrl,
        signingSecret: config.signingSecret,
        maxUploadBytes: config.limits?.maxUploadBytes,
      });
    case "s3":
      return new S3Store({
        bucket: store.bucket,
        region: store.region,
        endpoint: store.endpoint,
        forcePathStyle: store.forcePathStyle,
        credentials: store.credentials,
      });
  }
}

/**
 * The origin signed URLs point to (the local store's public base, or the S3 endpoint/bucket
 * host): a page that shows downloads or sends uploads must be allowed to reach it. Presigning
 * is local computation; when even that fails (no credentials yet), undefined.
 */
export async function storeOrigin(store: ObjectStore): Promise<string | undefined> {
  try {
    return new URL(await store.downloadUrl("origin-probe", { expiresInSeconds: 60 })).origin;
  } catch {
    return undefined;
  }
}
