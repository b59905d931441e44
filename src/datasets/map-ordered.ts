/**
 * Bounded parallelism that keeps order. The input is read ahead in the background while the
 * caller consumes results, so reading the archive, the work (decoding on other threads) and the
 * caller's own work (writing the canonical file) all overlap; a generator that pulled the next
 * input only when asked for a result would leave the workers idle whenever the caller awaits.
 * Results still come out in input order (labels and pixels must pair up deterministically), and
 * at most `limit` inputs and results are held at once, so memory stays flat.
 */

/** Applies `work` to each item, up to `limit` at a time, yielding results in input order. */
export async function* mapOrdered<T, R>(
  items: AsyncIterable<T>,
  limit: number,
  work: (item: T) => Promise<R>,
): AsyncGenerator<R> {
  const pending: Promise<R>[] = [];
  /** tasks started and not yet handed to the caller (pending, plus the one being awaited) */
  let held = 0;
  let finished = false;
  let readError: { error: unknown } | null = null;
  let stopped = false;
  // Each side waits on the other through one resolver at a time.
  let readerWaiting: (() => void) | null = null;
  let consumerWaiting: (() => void) | null = null;
  const wakeReader = () => {
    const wake = readerWaiting;
    readerWaiting = null;
    wake?.();
  };
  const wakeConsumer = () => {
    const wake = consumerWaiting;
    consumerWaiting = null;
    wake?.();
  };

  const reader = (async () => {
    try {
      for await (const item of items) {
        if (stopped) break;
        const task = work(item);
        // Awaited in order below; this only keeps an early failure from being "unhandled".
        task.catch(() => undefined);
        pending.push(task);
        held++;
        wakeConsumer();
        while (held >= limit && !stopped) await new Promise<void>((r) => (readerWaiting = r));
        if (stopped) break;
      }
    } catch (error) {
      readError = { error };
    } finally {
      finished = true;
      wakeConsumer();
    }
  })();

  try {
    for (;;) {
      while (pending.length === 0 && !finished) await new Promise<void>((r) => (consumerWaiting = r));
      const next = pending.shift();
      if (next === undefined) {
        if (readError) throw (readError as { error: unknown }).error;
        return;
      }
      const result = await next.finally(() => {
        held--;
        wakeReader();
      });
      yield result;
    }
  } finally {
    // On an error or early exit: stop reading, let running work finish before the caller cleans up.
    stopped = true;
    wakeReader();
    await reader;
    await Promise.allSettled(pending);
  }
}
