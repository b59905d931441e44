/**
 * Every request gets an id: the caller's `X-Request-Id` when it is a sane token, else a fresh
 * UUID; it is echoed in the response header so a client can quote it. With JSON logs, one line
 * per request (method, route, status, milliseconds, requestId).
 */
import { randomUUID } from "node:crypto";
import type { RequestHandler } from "express";
import type { Logger } from "../log.ts";

const SANE_ID = /^[\w.:-]{1,100}$/;

export function requestIds(log: Logger): RequestHandler {
  return (req, res, next) => {
    const given = req.get("x-request-id");
    const requestId = given && SANE_ID.test(given) ? given : randomUUID();
    res.locals.requestId = requestId;
    res.setHeader("X-Request-Id", requestId);
    if (log.format === "json") {
      const started = process.hrtime.bigint();
      const path = req.path; // before mounted routers rewrite req.url
      res.on("finish", () => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        log.info("request", {
          requestId,
          method: req.method,
          path,
          status: res.statusCode,
          ms: Math.round(ms * 10) / 10,
        });
      });
    }
    next();
  };
}
