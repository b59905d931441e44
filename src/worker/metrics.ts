/**
 * A worker's /metrics (when TRAPDOOR_METRICS_PORT is set): jobs it started and finished, whether
 * it is busy, and the trainer's images/s per stage as last reported. Workers serve nothing else.
 */
import { createServer, type Server } from "node:http";
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";

export class WorkerMetrics {
  readonly registry = new Registry();
  private readonly started = new Counter({
    name: "trapdoor_worker_jobs_started_total",
    help: "Training jobs this worker claimed",
    registers: [this.registry],
  });
  private readonly finished = new Counter({
    name: "trapdoor_worker_jobs_finished_total",
    help: "Training jobs this worker is done with (any outcome)",
    registers: [this.registry],
  });
  private readonly busy = new Gauge({
    name: "trapdoor_worker_busy_jobs",
    help: "Training jobs this worker runs now",
    registers: [this.registry],
  });
  private readonly throughput = new Gauge({
    name: "trapdoor_trainer_images_per_second",
    help: "Training throughput the trainer last reported, per stage",
    labelNames: ["stage"] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "trapdoor_worker_" });
  }

  jobStarted(): void {
    this.started.inc();
    this.busy.inc();
  }

  jobFinished(): void {
    this.finished.inc();
    this.busy.dec();
  }

  progress(stage: string, imagesPerSecond: number): void {
    this.throughput.set({ stage }, imagesPerSecond);
  }

  /** Serve GET /metrics on `port` (0: any free port); resolves with the server once listening. */
  serve(port: number, host = "0.0.0.0"): Promise<Server> {
    const server = createServer(async (req, res) => {
      if (req.method === "GET" && req.url === "/metrics") {
        res.writeHead(200, { "content-type": this.registry.contentType });
        res.end(await this.registry.metrics());
        return;
      }
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve(server));
    });
  }
}
