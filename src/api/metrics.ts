/**
 * GET /metrics for Prometheus: request latency by route and status, jobs by state and queue, and
 * work waiting per queue (read from PostgreSQL at scrape time, so every API replica reports the
 * same numbers), plus the process's own metrics.
 */
import type { RequestHandler } from "express";
import { collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Services } from "./context.ts";

export interface ApiMetrics {
  /** Times every request (mount first). */
  timing: RequestHandler;
  /** Serves the registry in Prometheus's text format. */
  endpoint: RequestHandler;
}

export function apiMetrics(services: Pick<Services, "jobs">): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "trapdoor_api_" });
  const requests = new Histogram({
    name: "trapdoor_http_request_duration_seconds",
    help: "HTTP request latency of the API",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new Gauge({
    name: "trapdoor_jobs",
    help: "Training jobs by status and queue (all tenants)",
    labelNames: ["status", "queue"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const row of await services.jobs.countsByStatus())
        this.set({ status: row.status, queue: row.queue }, row.count);
    },
  });
  new Gauge({
    name: "trapdoor_queue_depth",
    help: "Work waiting for a worker, per queue (queued jobs; datasets no worker has claimed yet)",
    labelNames: ["queue"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const [queue, depth] of Object.entries(await services.jobs.queueDepths()))
        this.set({ queue }, depth);
    },
  });
  // One child per label set, found by a plain string key: prom-client would otherwise sort and
  // hash the label object on every request (4 % of the API's CPU under load).
  const children = new Map<string, ReturnType<typeof requests.labels>>();
  const observe = (method: string, route: string, status: number, seconds: number) => {
    const key = `${method} ${route} ${status}`;
    let child = children.get(key);
    if (child === undefined) {
      child = requests.labels(method, route, String(status));
      children.set(key, child);
    }
    child.observe(seconds);
  };
  return {
    timing: (req, res, next) => {
      // The route now: routers mounted on a path rewrite req.url before the response finishes.
      const route = routeOf(req.path);
      const started = performance.now();
      res.on("finish", () =>
        observe(req.method, route, res.statusCode, (performance.now() - started) / 1000),
      );
      next();
    },
    endpoint: async (_req, res) => {
      res.set("Content-Type", registry.contentType);
      res.send(await registry.metrics());
    },
  };
}

/** A bounded label: the API's own routes by name, everything else as "other". */
function routeOf(path: string): string {
  for (const route of ["/graphql", "/healthz", "/readyz", "/metrics", "/objects"])
    if (path === route || path.startsWith(`${route}/`)) return route;
  return "other";
}
