import type { RequestHandler } from "express";
import { GraphQLError } from "graphql";
import { admit, type Services } from "./context.ts";

/**
 * Admission before anything else of a GraphQL request is read: the key is checked (from memory
 * when cached), the tenant's rate and in-flight limits applied, and a refusal (401, 429) is
 * answered in GraphQL's error shape without parsing the body or entering Apollo. A flood of
 * refused requests then costs the process little, and other tenants keep their latency.
 * The admitted tenant is left in `res.locals.tenant` for the context.
 */
export function admission(services: Services): RequestHandler {
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
      res.status(http?.status ?? 400).json({ errors: [{ message: error.message, extensions }] });
    }
  };
}
