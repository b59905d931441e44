import type { RequestHandler } from "express";
import { GraphQLError } from "graphql";
import { admit, type Services } from "./context.ts";

/** A 429 is answered after this long: a client that ignores Retry-After and retries at once is slowed. */
const RATE_LIMITED_DELAY_MS = 1000;
/** At most this many refusals wait at once (beyond, they are answered at once: memory stays bounded). */
const MAX_DELAYED = 2000;

/**
 * Admission before anything else of a GraphQL request is read: the key is checked (from memory
 * when cached), the tenant's rate and in-flight limits applied, and a refusal (401, 429) is
 * answered in GraphQL's error shape without parsing the body or entering Apollo. A 429 waits a
 * second before it is sent (a tarpit): a flooding client that retries at once on a few
 * connections then sends a few requests a second instead of thousands, and other tenants keep
 * their latency. The admitted tenant is left in `res.locals.tenant` for the context.
 */
export function admission(services: Services): RequestHandler {
  let delayed = 0;
  return async (req, res, next) => {
    try {
      res.locals.tenant = await admit(services, req.headers.authorization, (release) =>
        res.once("close", release),
      );
      next();
    } catch (error) {
      if (!(error instanceof GraphQLError)) {
        next(error);
        return;
      }
      const { http, ...extensions } = error.extensions as {
        http?: { status?: number; headers?: Map<string, string> };
      } & Record<string, unknown>;
      for (const [name, value] of http?.headers ?? []) res.setHeader(name, value);
      // The body is not wanted: drain it so the connection can serve the next request.
      req.resume();
      const send = () => {
        if (!res.destroyed)
          res.status(http?.status ?? 400).json({ errors: [{ message: error.message, extensions }] });
      };
      if (extensions.code !== "RATE_LIMITED" || delayed >= MAX_DELAYED) {
        send();
        return;
      }
      delayed++;
      setTimeout(() => {
        delayed--;
        send();
      }, RATE_LIMITED_DELAY_MS).unref();
    }
  };
}
