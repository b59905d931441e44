import assert from "node:assert/strict";
import { describe, it } from "node:test";
import express from "express";
import request from "supertest";
import { requestIds } from "../../src/api/request-log.ts";
import { createLogger } from "../../src/log.ts";

function appWith(format: "text" | "json") {
  const lines: string[] = [];
  const app = express();
  app.use(requestIds(createLogger(format, (line) => lines.push(line))));
  app.get("/thing", (_req, res) => {
    res.status(201).json({ requestId: res.locals.requestId });
  });
  return { app, lines };
}

describe("request ids and JSON request logs", () => {
  it("keeps a sane X-Request-Id, replaces any other, echoes it, and logs one JSON line per request", async () => {
    const { app, lines } = appWith("json");
    const given = await request(app).get("/thing").set("X-Request-Id", "abc-123");
    assert.equal(given.headers["x-request-id"], "abc-123");
    assert.equal(given.body.requestId, "abc-123");
    const hostile = await request(app).get("/thing").set("X-Request-Id", 'a b"}{'.repeat(3));
    assert.match(String(hostile.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
    const fresh = await request(app).get("/thing?secret=1");
    assert.match(String(fresh.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
    const logged = lines.map((line) => JSON.parse(line));
    assert.equal(logged.length, 3);
    assert.deepEqual(
      logged.map((l) => [l.level, l.msg, l.method, l.path, l.status]),
      [
        ["info", "request", "GET", "/thing", 201],
        ["info", "request", "GET", "/thing", 201],
        ["info", "request", "GET", "/thing", 201],
      ],
    );
    assert.deepEqual(
      logged.map((l) => l.requestId),
      ["abc-123", hostile.headers["x-request-id"], fresh.headers["x-request-id"]],
    );
    assert.ok(logged.every((l) => typeof l.ms === "number" && !Number.isNaN(Date.parse(l.time))));
  });

  it("text logs stay quiet per request and print fields as key=value", async () => {
    const { app, lines } = appWith("text");
    await request(app).get("/thing");
    assert.deepEqual(lines, []);
    const out: string[] = [];
    createLogger("text", (line) => out.push(line)).info("job claimed", { jobId: "j1", attempt: 2 });
    assert.deepEqual(out, ["job claimed jobId=j1 attempt=2\n"]);
  });
});
