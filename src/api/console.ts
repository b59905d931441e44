/**
 * The web console's static files (console/, built into dist/console by Vite) at /console/, and
 * / redirecting there. The page runs under its own Content-Security-Policy: scripts, styles and
 * fonts from this origin only, nothing inline, no frames, no forms posting elsewhere; images and
 * fetches also from the object store's origin (signed download and upload URLs point there).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import express, { type RequestHandler, Router } from "express";

export const CONSOLE_PATH = "/console";

/** The console's CSP; `storeOrigins` are where signed object URLs point (maybe this origin). */
export function consolePolicy(storeOrigins: readonly string[]): string {
  const store = storeOrigins.join(" ");
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "font-src 'self'",
    `img-src 'self' data: ${store}`.trim(),
    // 'self' covers the GraphQL WebSocket on this origin (CSP 3 matches ws: to http:).
    `connect-src 'self' ${store}`.trim(),
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/** Whether `dir` holds a built console. */
export const consoleIsBuilt = (dir: string): boolean => existsSync(join(dir, "index.html"));

/** Serves `dir` (the built console) under /console with `policy`; a JSON 404 when it was never built. */
export function consoleRouter(dir: string, storeOrigins: readonly string[]): Router {
  const router = Router();
  const policy = consolePolicy(storeOrigins);
  const headers: RequestHandler = (_req, res, next) => {
    res.setHeader("Content-Security-Policy", policy);
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    next();
  };
  router.get("/", (_req, res) => res.redirect(302, `${CONSOLE_PATH}/`));
  router.use(
    CONSOLE_PATH,
    headers,
    express.static(dir, {
      index: "index.html",
      redirect: true,
      fallthrough: true,
      setHeaders(res, path) {
        // File names under assets/ carry their content hash; index.html must always be fresh.
        res.setHeader(
          "Cache-Control",
          path.startsWith(join(dir, "assets")) ? "public, max-age=31536000, immutable" : "no-cache",
        );
      },
    }),
    // Only what static did not serve gets here: say so when there is no console at all.
    (_req: express.Request, res: express.Response, next: express.NextFunction) => {
      if (consoleIsBuilt(dir)) return next();
      res.status(404).json({
        error: { code: "CONSOLE_NOT_BUILT", message: "the web console is not built here: run `make build`" },
      });
    },
  );
  return router;
}
