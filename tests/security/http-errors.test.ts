import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { gql, startTestApp } from "../helpers/app.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

/** POST raw bytes to /graphql with the given headers. */
async function post(app: TestApp, body: string, headers: Record<string, string>) {
  const res = await fetch(`${app.url}/graphql`, {
    method: "POST",
    headers: { authorization: `Bearer ${app.key}`, "content-type": "application/json", ...headers },
    body,
  });
  return { status: res.status, type: res.headers.get("content-type") ?? "", text: await res.text() };
}

describe("malformed HTTP requests get typed JSON errors, never an HTML page with a stack trace", () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({}, { api: true, worker: false });
  });
  after(async () => {
    await app?.cleanup();
  });

  const assertTypedJson = (
    res: { status: number; type: string; text: string },
    status: number,
    code: string,
  ) => {
    assert.equal(res.status, status, res.text);
    assert.match(res.type, /^application\/json/);
    const body = JSON.parse(res.text) as { error: { code: string; message: string; requestId: string } };
    assert.equal(body.error.code, code);
    assert.ok(body.error.requestId, "the requestId to quote");
    assert.doesNotMatch(
      res.text,
      /<html|<pre|\bat [\w.]+ \(|\/work\/|node_modules|\.ts:\d+/i,
      "no stack, no paths",
    );
  };

  it("a body that is not JSON: 400 BAD_REQUEST", async () => {
    assertTypedJson(await post(app, '{"query": "{ viewer { id } }"', {}), 400, "BAD_REQUEST");
  });

  it("a body over the limit: 413 PAYLOAD_TOO_LARGE", async () => {
    const big = JSON.stringify({
      query: "{ viewer { id } }",
      variables: { pad: "x".repeat(2 * 1024 * 1024) },
    });
    assertTypedJson(await post(app, big, {}), 413, "PAYLOAD_TOO_LARGE");
  });

  it("a body claiming gzip that is not: 400; an encoding nobody supports: 415", async () => {
    assertTypedJson(
      await post(app, "definitely not gzip", { "content-encoding": "gzip" }),
      400,
      "BAD_REQUEST",
    );
    assertTypedJson(
      await post(app, "{}", { "content-encoding": "zstd-but-not-really" }),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    );
  });

  it("a route that does not exist: 404 NOT_FOUND as JSON", async () => {
    const res = await fetch(`${app.url}/nothing/here`);
    assertTypedJson(
      { status: res.status, type: res.headers.get("content-type") ?? "", text: await res.text() },
      404,
      "NOT_FOUND",
    );
  });

  it("revokeApiKey with an id no key can have is NOT_FOUND, not an internal error", async () => {
    const res = await gql(app.url as string, app.key, `mutation { revokeApiKey(id: "x") }`);
    assert.equal(res.errors?.[0]?.extensions?.code, "NOT_FOUND", JSON.stringify(res));
    const fine = await gql<{ revokeApiKey: boolean }>(
      app.url as string,
      app.key,
      `mutation { revokeApiKey(id: "00000000-0000-4000-8000-000000000000") }`,
    );
    assert.equal(fine.data?.revokeApiKey, false, "a well-formed unknown id is simply not revoked");
  });
});
