import type { DataSource } from "typeorm";
import {
  forgetLostWorkers,
  liveWorkersByQueue,
  registerWorker,
  unregisterWorker,
  workerHeartbeat,
} from "../db/workers.ts";

/** Why a queue has no worker, or null when one serves it. */
export type QueueAvailability = { served: true } | { served: false; autoscaled: boolean };

/**
 * Which queues live workers serve. Workers register at start and heartbeat; a launch that no live
 * worker can serve is refused at once, unless the operator declared its queue autoscaled (a pod
 * starts when work arrives): then it waits, says why, and fails after the queue timeout.
 */
export class WorkerRegistry {
  constructor(
    private readonly db: DataSource,
    private readonly staleAfterSeconds: number,
    private readonly autoscaledQueues: readonly string[] = [],
    readonly queueTimeoutSeconds = 3600,
  ) {}

  register(name: string, queues: string[]): Promise<void> {
    return registerWorker(this.db, name, queues);
  }

  heartbeat(name: string): Promise<void> {
    return workerHeartbeat(this.db, name);
  }

  unregister(name: string): Promise<void> {
    return unregisterWorker(this.db, name);
  }

  isAutoscaled(queue: string): boolean {
    return this.autoscaledQueues.includes(queue);
  }

  async availability(queue: string): Promise<QueueAvailability> {
    const live = await liveWorkersByQueue(this.db, this.staleAfterSeconds);
    if ((live.get(queue) ?? 0) > 0) return { served: true };
    return { served: false, autoscaled: this.isAutoscaled(queue) };
  }

  /** Drops the rows of workers silent for ten times the staleness (the sweeper's job). */
  forgetLost(): Promise<number> {
    return forgetLostWorkers(this.db, this.staleAfterSeconds * 10);
  }

  /** Live workers per queue (operators' view). */
  liveByQueue(): Promise<Map<string, number>> {
    return liveWorkersByQueue(this.db, this.staleAfterSeconds);
  }
}
