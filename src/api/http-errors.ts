/**
 * The last handler of the HTTP app: any failure outside GraphQL's own responses (a body that is
 * not JSON, one over the size limit, a bad or unsupported content encoding, a route that does not
 * exist) answers typed JSON with the right status, never Express's HTML page with a stack trace
 * and file paths. `requestId` lets an operator find the request in the logs.
 */
import type { ErrorRequestHandler, RequestHandler } from "express";
import type { Logger } from "../log.ts";

interface HttpFailure {
  status: number;
  code: string;
  message: string;
}

/** body-parser's errors carry `type` and `status`; anything else is ours and internal. */
function classify(error: unknown): HttpFailure {
  const e = error as { type?: string; status?: number; statusCode?: number };
  switch (e?.type) {
    case "entity.parse.failed":
      return { status: 400, code: "BAD_REQUEST", message: "the request body is not valid JSON" };
    case "entity.too.large":
      return { status: 413, code: "PAYLOAD_TOO_LARGE", message: "the request body is over the size limit" };
    case "encoding.unsupported":
      return {
        status: 415,
        code: "UNSUPPORTED_MEDIA_TYPE",
        message: "the request body's content encoding is not supported",
      };
    case "request.aborted":
      return { status: 400, code: "BAD_REQUEST", message: "the request was aborted" };
  }
  const status = e?.status ?? e?.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500)
    return { status, code: "BAD_REQUEST", message: "the request could not be read (bad encoding or body)" };
  return { status: 500, code: "INTERNAL_SERVER_ERROR", message: "internal error" };
}

export function jsonErrors(log: Logger): ErrorRequestHandler {
  return (error, _req, res, next) => {
    if (res.headersSent) return next(error);
    const failure = classify(error);
    const requestId = res.locals.requestId as string | undefined;
    if (failure.status >= 500)
      log.error("request failed", {
        requestId,
        error: error instanceof Error ? error.message : String(error),
      });
    res.status(failure.status).json({ error: { code: failure.code, message: failure.message, requestId } });
  };
}

export const notFoundJson: RequestHandler = (_req, res) => {
  res
    .status(404)
    .json({ error: { code: "NOT_FOUND", message: "no such route", requestId: res.locals.requestId } });
};
