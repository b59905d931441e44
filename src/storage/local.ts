// Temporary: src/api/server.ts still imports from here. Once it imports LocalStore and
// localStoreRouter from ./index.ts, delete this file.
export { localStoreRouter } from "./local-router.ts";
export { LocalStore } from "./local-store.ts";
