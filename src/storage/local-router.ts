/**
 * Serves the LocalStore's signed URLs over HTTP (the URL format: local-signing.ts): PUT stores
 * a signed upload of exactly the signed size, GET and HEAD download an object as an attachment.
 * Refusals are JSON `{error}` responses (400, 403, 404, 405, 409, 410, 413).
 */
import type { ReadStream } from "node:fs";
import { finished, PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type Request, type Response, Router } from "express";
import { getFields, putFields } from "./local-signing.ts";
import type { LocalStore } from "./local-store.ts";
import { ObjectExistsError } from "./local-write.ts";
import {
  assertValidKey,
  attachmentDisposition,
  InvalidKeyError,
  NotFoundError,
  SizeMismatchError,
} from "./object-store.ts";

function queryString(req: Request, name: string): string | undefined {
  const value = (req.query as Record<string, unknown>)[name];
  return typeof value === "string" ? value : undefined;
}

function queryInt(req: Request, name: string): number | undefined {
  const value = queryString(req, name);
  return value !== undefined && /^\d{1,16}$/.test(value) ? Number(value) : undefined;
}

function fail(res: Response, status: number, message: string): void {
  if (!res.headersSent) res.status(status).json({ error: message });
}

/**
 * Serves the LocalStore's signed URLs. Mount it before any body parser:
 * `app.use("/objects", localStoreRouter(store))`.
 */
export function localStoreRouter(
  store: LocalStore,
  /** Whether a signed upload may still be stored (false → 410: e.g. its dataset was deleted). */
  uploadAllowed: (key: string) => Promise<boolean> = async () => true,
): Router {
  const router = Router();

  router.use(async (req, res) => {
    let key: string;
    try {
      key = decodeURIComponent(req.path.slice(1));
      assertValidKey(key);
    } catch (err) {
      fail(res, 400, err instanceof InvalidKeyError ? err.message : "malformed object key");
      return;
    }
    const expires = queryInt(req, "expires");
    const sig = queryString(req, "sig");
    const now = Date.now() / 1000;

    if (req.method === "PUT") {
      const size = queryInt(req, "size");
      const iat = queryInt(req, "iat");
      if (expires === undefined || size === undefined || iat === undefined || sig === undefined) {
        fail(res, 403, "missing or malformed signature parameters");
        return;
      }
      if (!store.verify(putFields(key, expires, size, iat), sig)) {
        fail(res, 403, "invalid signature");
        return;
      }
      if (now > expires) {
        fail(res, 403, "upload URL has expired");
        return;
      }
      // A signature cannot be revoked; whether its owner still wants the bytes can be asked.
      if (!(await uploadAllowed(key))) {
        req.resume();
        fail(
          res,
          410,
          "this upload URL is no longer accepted: its dataset was deleted or no longer awaits an upload",
        );
        return;
      }
      if (size > store.maxUploadBytes) {
        fail(res, 413, `upload is larger than ${store.maxUploadBytes} bytes`);
        return;
      }
      const declared = req.headers["content-length"];
      if (declared !== undefined && Number(declared) !== size) {
        fail(res, 400, `Content-Length ${declared} does not match the signed size ${size}`);
        return;
      }
      // The body goes through a PassThrough so that a failed upload does not destroy the request
      // (and with it the connection) before the error response is sent.
      const body = new PassThrough();
      req.pipe(body);
      finished(req, (err) => {
        if (err) body.destroy(err); // the client went away mid-upload
      });
      try {
        const stored = await store.receiveUpload(key, body, size, iat);
        res.status(200).json(stored);
      } catch (err) {
        req.unpipe(body);
        req.resume(); // discard whatever is left of the body
        if (err instanceof SizeMismatchError) {
          fail(res, 400, `${err.message} (signed size ${size})`);
        } else if (err instanceof ObjectExistsError || err instanceof InvalidKeyError) {
          fail(res, 409, err.message);
        } else if (req.destroyed) {
          res.destroy();
        } else {
          throw err;
        }
      }
      return;
    }

    if (req.method === "GET" || req.method === "HEAD") {
      const name = queryString(req, "name") ?? "";
      if (expires === undefined || sig === undefined) {
        fail(res, 403, "missing or malformed signature parameters");
        return;
      }
      if (!store.verify(getFields(key, expires, name), sig)) {
        fail(res, 403, "invalid signature");
        return;
      }
      if (now > expires) {
        fail(res, 403, "download URL has expired");
        return;
      }
      let object: { stream: NodeJS.ReadableStream; sizeBytes: number };
      try {
        object = await store.openForRead(key);
      } catch (err) {
        if (err instanceof NotFoundError) {
          fail(res, 404, "no such object");
          return;
        }
        throw err;
      }
      res.status(200);
      res.setHeader("Content-Type", "application/octet-stream");
      res.setHeader("Content-Length", String(object.sizeBytes));
      res.setHeader("Content-Disposition", attachmentDisposition(name || key));
      res.setHeader("X-Content-Type-Options", "nosniff");
      res.setHeader("Cache-Control", "private, no-store");
      if (req.method === "HEAD") {
        (object.stream as ReadStream).destroy();
        res.end();
        return;
      }
      try {
        await pipeline(object.stream, res);
      } catch {
        res.destroy();
      }
      return;
    }

    res.setHeader("Allow", "GET, HEAD, PUT");
    fail(res, 405, "method not allowed");
  });

  return router;
}
