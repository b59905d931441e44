import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A plain HTTP forwarder in front of a test app, standing in for a proxy or load balancer that
 * does not pass WebSocket upgrades (they are cut), and, on demand, a flaky network that fails
 * the PUTs whose path matches `failPuts` with 503.
 */
export interface Forwarder {
  url: string;
  failPuts: RegExp | null;
  /** How many PUTs were failed on purpose. */
  failed: number;
  stop(): Promise<void>;
}

export async function startForwarder(target: string, port = 0): Promise<Forwarder> {
  const upstream = new URL(target);
  const state: Forwarder = { url: "", failPuts: null, failed: 0, stop: async () => {} };
  const server = createServer((req, res) => {
    if (req.method === "PUT" && state.failPuts?.test(req.url ?? "")) {
      state.failed++;
      req.resume();
      req.on("end", () => res.writeHead(503, { "content-type": "text/plain" }).end("unavailable"));
      return;
    }
    const forwarded = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forwarded.on("error", () => res.destroy());
    req.pipe(forwarded);
  });
  server.on("upgrade", (_req, socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.stop = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}
