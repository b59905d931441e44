/**
 * Bounded parallelism that keeps order: image decodes run on libuv/libvips threads, so a few in
 * flight keep the cores busy while the archive is read on the main thread, and results still
 * come out in archive order (labels and pixels must pair up deterministically). At most `limit`
 * inputs and results are held at once, so memory stays flat.
 */

/** Applies `work` to each item, up to `limit` at a time, yielding results in input order. */
export async function* mapOrdered<T, R>(
  items: AsyncIterable<T>,
  limit: number,
  work: (item: T) => Promise<R>,
): AsyncGenerator<R> {
  const pending: Promise<R>[] = [];
  try {
    for await (const item of items) {
      const task = work(item);
      // Awaited in order below; this only keeps an early failure from being "unhandled".
      task.catch(() => undefined);
      pending.push(task);
      if (pending.length >= limit) yield await (pending.shift() as Promise<R>);
    }
    while (pending.length > 0) yield await (pending.shift() as Promise<R>);
  } finally {
    // On an error or early exit, let running work finish before the caller cleans up.
    await Promise.allSettled(pending);
  }
}
