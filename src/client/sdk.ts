/** The TypeScript client package (clients/typescript) the CLI is built on. */
export * from "../../clients/typescript/src/index.ts";
