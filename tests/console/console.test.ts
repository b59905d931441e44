/**
 * The web console in a real browser: Debian's chromium driven by playwright-core against a real
 * trapdoor on loopback (embedded Postgres, local store, in-process worker, real trainer). It
 * signs in, uploads a dataset through the page, launches a short T&R job, watches it finish
 * without a reload, reads its curves and health report, downloads the model, compares a study
 * and reads the operations view; a wrong key, a failing API and an unreachable one each show a
 * clear message. Every view is checked by axe-core (no serious or critical violations) and under
 * the console's CSP (no violation reported), and its screenshot is written to docs/console/.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import express from "express";
import { type Browser, chromium, type Page } from "playwright-core";
import request from "supertest";
import { buildConsole, bundleSizes } from "../../bench/console/size.ts";
import { consolePolicy, consoleRouter } from "../../src/api/console.ts";
import { gql, makeDatasets, startTestApp, uploadNpyPair, waitFor } from "../helpers/app.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

const repo = fileURLToPath(new URL("../..", import.meta.url));
const SCREENSHOTS = join(repo, "docs", "console");
const CHROMIUM = process.env.TRAPDOOR_CHROMIUM ?? "/usr/bin/chromium";
// This machine's closed network refuses what chromium would fetch in the background.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const AXE = readFileSync(join(repo, "node_modules", "axe-core", "axe.min.js"), "utf8");
/** Small, quick, and still a T&R run with isolation, a health report and previews. */
const TNR_HP = {
  stage1Epochs: "2",
  stage2Epochs: "2",
  batchSize: "64",
  previewCount: "4",
  isolateProbeEpochs: "2",
};
/** A dataset name that would be markup if anything on the page rendered it as HTML. */
const HOSTILE_NAME = `<img src=x onerror="document.title='pwned'">train`;

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

describe("the console's routes", () => {
  it("answers JSON, not a blank page, where the console was never built", async () => {
    const app = express().use(consoleRouter(join(tmpdir(), "trapdoor-no-console-here"), []));
    const res = await request(app).get("/console/");
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, "CONSOLE_NOT_BUILT");
    assert.match(res.body.error.message, /make build/);
  });

  it("lets the page reach the object store's origin for images and uploads, nothing else", () => {
    const policy = consolePolicy(["https://bucket.s3.eu-west-1.amazonaws.com"]);
    assert.match(policy, /img-src 'self' data: https:\/\/bucket\.s3\.eu-west-1\.amazonaws\.com;/);
    assert.match(policy, /connect-src 'self' https:\/\/bucket\.s3\.eu-west-1\.amazonaws\.com;/);
    assert.match(policy, /script-src 'self';/);
    assert.equal(consolePolicy([]).includes("connect-src 'self';"), true);
  });
});

describe("web console in chromium", { timeout: 240_000 }, () => {
  let app: TestApp;
  let browser: Browser;
  let page: Page;
  let url: string;
  let data: Record<"train" | "holdout" | "test" | "asr", string>;
  let work: string;
  const cspViolations: string[] = [];
  const pageErrors: string[] = [];
  const notFound: string[] = [];

  /** axe-core on the page as it is now; only serious and critical violations fail. */
  async function accessible(view: string): Promise<void> {
    // Evaluated through the DevTools protocol, which the page's CSP does not govern.
    await page.evaluate(`${AXE};0`);
    const violations = (await page.evaluate(
      "axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations)",
    )) as AxeViolation[];
    const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    assert.deepEqual(
      bad.map(
        (v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`,
      ),
      [],
      `${view}: accessibility violations`,
    );
  }

  const shoot = (view: string) => page.screenshot({ path: join(SCREENSHOTS, `${view}.png`), fullPage: true });
  const nav = (label: string) =>
    page.getByRole("navigation", { name: "Views" }).getByRole("link", { name: label }).click();

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "trapdoor-console-"));
    const out = join(work, "console");
    buildConsole(out);
    data = makeDatasets(join(work, "data"), { nTrain: 600, nHoldout: 120, nTest: 120 });
    app = await startTestApp({ TRAPDOOR_CONSOLE_DIR: out });
    url = app.url as string;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const context = await browser.newContext({
      viewport: { width: 1280, height: 860 },
      acceptDownloads: true,
    });
    page = await context.newPage();
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("response", (r) => {
      if (r.status() === 404) notFound.push(r.url());
    });
  });

  after(async () => {
    await browser?.close();
    await app?.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it("ships a production bundle of at most 250 KB gzipped", () => {
    const sizes = bundleSizes(join(work, "console"));
    const gzip = sizes.reduce((sum, s) => sum + s.gzip, 0);
    assert.ok(sizes.some((s) => s.file.endsWith(".js")));
    assert.ok(gzip <= 250_000, `${gzip} bytes gzipped`);
  });

  it("is served at /console/ under a strict CSP, and / leads there", async () => {
    const res = await fetch(`${url}/`, { redirect: "manual" });
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "/console/");
    const index = await fetch(`${url}/console/`);
    assert.equal(index.status, 200);
    const csp = index.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /style-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const html = await index.text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "no inline script in index.html");
    // The API's own responses keep the data-only policy.
    const graphql = await fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(
      graphql.headers.get("content-security-policy"),
      "default-src 'none'; frame-ancestors 'none'",
    );
  });

  it("refuses a wrong key with a clear message, then signs in with the right one", async () => {
    await page.goto(`${url}/`);
    await page.getByLabel("API key").fill("td_not_a_real_key");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "refused" }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused key is not kept");
    await accessible("sign-in");
    await shoot("sign-in");
    await page.getByLabel("API key").fill(app.key);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Jobs", level: 1 }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("trapdoor.apiKey")), app.key);
  });

  let trainId: string;
  it("uploads a dataset from the page (sha256 in the browser) and shows it READY, names escaped", async () => {
    await nav("Datasets");
    await page.getByLabel("Name").fill(HOSTILE_NAME);
    await page.getByLabel("Role").selectOption("TRAIN");
    await page.getByLabel("Format").selectOption("NPY_PAIR");
    await page.getByLabel("Images file").setInputFiles(join(data.train, "images.npy"));
    await page.getByLabel("Labels file").setInputFiles(join(data.train, "labels.npy"));
    await page.getByRole("button", { name: "Upload" }).click();
    const uploaded = page.getByRole("status").filter({ hasText: "Uploaded" });
    await uploaded.waitFor();
    trainId = decodeURIComponent(
      ((await uploaded.getByRole("link").getAttribute("href")) as string).split("/").pop() as string,
    );
    const row = page.locator(`tr[data-dataset="${trainId}"]`);
    await row.getByText("READY").waitFor({ timeout: 60_000 });
    // The name is shown as text: no element was made of it, nothing ran.
    assert.equal(await row.getByRole("link").first().textContent(), HOSTILE_NAME);
    assert.equal(await page.locator('img[src="x"]').count(), 0);
    assert.doesNotMatch(await page.title(), /pwned/);
    // What the browser hashed is what the store holds: the service checked it on completion.
    const res = await gql<{ dataset: { status: string; count: number } }>(
      url,
      app.key,
      `query($id: ID!) { dataset(id: $id) { status count } }`,
      { id: trainId },
    );
    assert.deepEqual(res.data?.dataset, { status: "READY", count: 600 });
    await accessible("datasets");
    await shoot("datasets");
  });

  it("shows a dataset's class histogram and its first images", async () => {
    await page.locator(`tr[data-dataset="${trainId}"]`).getByRole("link").first().click();
    await page.getByText("Images per class").waitFor();
    const thumbs = page.locator("canvas.thumb");
    await waitFor("sample thumbnails", async () => (await thumbs.count()) === 16, 20_000);
    // Painted from the NPY bytes: not a blank canvas.
    const inked = await thumbs.first().evaluate((c) => {
      const ctx = (c as HTMLCanvasElement).getContext("2d") as CanvasRenderingContext2D;
      const { data } = ctx.getImageData(
        0,
        0,
        (c as HTMLCanvasElement).width,
        (c as HTMLCanvasElement).height,
      );
      return new Set(data.filter((_, i) => i % 4 === 0)).size;
    });
    assert.ok(inked > 1, "the thumbnail has more than one grey level");
    await accessible("dataset");
    await shoot("dataset");
  });

  let jobId: string;
  it("launches from the generated form: a bad value is shown at its field, a good launch opens the job", async () => {
    // The other sets arrive through the API, as an application would send them.
    const holdout = await uploadNpyPair(url, app.key, data.holdout, "HOLDOUT");
    const test = await uploadNpyPair(url, app.key, data.test, "TEST");
    const asr = await uploadNpyPair(url, app.key, data.asr, "ASR_TEST");
    await nav("Launch");
    await page.getByLabel("Method").selectOption("TRAP_AND_REPLACE");
    await page.getByLabel("Training set").selectOption(trainId);
    await page.getByLabel("Clean holdout set").selectOption(holdout);
    await page.getByLabel("Test set", { exact: true }).selectOption(test);
    await page.getByLabel("ASR test set (optional)").selectOption(asr);
    await page.getByLabel("Attack target class (optional)").fill("0");
    // Every hyper-parameter of the method has its input, with its default shown.
    assert.equal(await page.locator("#hp-stage1Epochs").getAttribute("placeholder"), "30");
    await page.locator("#hp-stage1Epochs").fill("0");
    await page.getByRole("button", { name: "Launch" }).click();
    const fieldError = page.locator('[id="hyperparameters.stage1Epochs-error"]');
    await fieldError.waitFor();
    assert.match((await fieldError.textContent()) as string, /stage1Epochs|minimum|>=|at least/i);
    assert.equal(await page.locator("#hp-stage1Epochs").getAttribute("aria-invalid"), "true");
    await accessible("launch");
    await shoot("launch");
    for (const [name, value] of Object.entries(TNR_HP)) await page.locator(`#hp-${name}`).fill(value);
    await page.getByRole("button", { name: "Launch" }).click();
    await page.waitForURL(/#\/jobs\/[0-9a-f-]{36}$/);
    jobId = page.url().split("/").pop() as string;
  });

  it("watches the job to SUCCEEDED without a reload: progress moves, curves, previews and health appear", async () => {
    await page.evaluate(() => {
      (window as unknown as { marker: number }).marker = 1;
    });
    const seen = new Set<string>();
    const status = page.locator(".view-head .status");
    await waitFor(
      "the job page to show SUCCEEDED",
      async () => {
        const bar = page.locator(".job-progress progress");
        if (await bar.count()) seen.add((await bar.getAttribute("value")) as string);
        return (await status.textContent()) === "SUCCEEDED";
      },
      180_000,
      100,
    );
    assert.equal(
      await page.evaluate(() => (window as unknown as { marker?: number }).marker),
      1,
      "the page was not reloaded",
    );
    const partial = [...seen].map(Number).filter((v) => v > 0 && v < 100);
    assert.ok(partial.length >= 1, `the bar moved through intermediate values (saw ${[...seen].join(", ")})`);
    await page.locator(".job-progress progress[value='100']").waitFor();
    // Per-epoch curves: CA, ASR and the training losses, each a uPlot canvas.
    for (const title of ["Clean accuracy (CA)", "Attack success rate (ASR)", "Reconstruction MSE"]) {
      await page.locator("figure.chart", { hasText: title }).locator("canvas").first().waitFor();
    }
    // The reconstruction preview and the flagged training images are real images the browser decoded.
    const loaded = (selector: string) =>
      page
        .locator(selector)
        .evaluateAll((imgs) =>
          imgs.map((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0),
        );
    await waitFor(
      "previews decoded",
      async () => (await loaded("img.preview")).length > 0 && (await loaded("img.preview")).every(Boolean),
      20_000,
    );
    await page.getByRole("heading", { name: "Health report" }).waitFor();
    // A T&R report is calibrated: the page says how often its verdict was wrong out of sample.
    const measured = JSON.parse(
      readFileSync(join(repo, "trainer/trapdoor_trainer/defenses/health_calibration.json"), "utf8"),
    );
    const fp = measured.outOfSample.falsePositiveRate;
    await page
      .locator(".health p.calibration", { hasText: `clean sets called poisoned ${fp.count} of ${fp.of}` })
      .waitFor();
    await page
      .locator("figure.chart", { hasText: "Over-prediction per class" })
      .locator("canvas")
      .first()
      .waitFor();
    await waitFor(
      "thumbnails decoded",
      async () => {
        const thumbs = await loaded(".health ul.thumbs img");
        return thumbs.length > 0 && thumbs.every(Boolean);
      },
      20_000,
    );
    await accessible("job");
    await shoot("job");
  });

  it("downloads the defended model from the job page", async () => {
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("link", { name: /Download model \(safetensors/ }).click(),
    ]);
    const path = join(work, "model.safetensors");
    await download.saveAs(path);
    const bytes = readFileSync(path);
    const res = await gql<{ job: { artifacts: { kind: string; sha256: string; sizeBytes: number }[] } }>(
      url,
      app.key,
      `query($id: ID!) { job(id: $id) { artifacts { kind sha256 sizeBytes } } }`,
      { id: jobId },
    );
    const model = res.data?.job.artifacts.find((a) => a.kind === "model");
    assert.equal(bytes.length, model?.sizeBytes);
    assert.equal(createHash("sha256").update(bytes).digest("hex"), model?.sha256);
  });

  it("lists the job live in the jobs view, with its ASR and CA", async () => {
    await nav("Jobs");
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.getByText("SUCCEEDED").waitFor();
    const cells = await row.locator("td").allTextContents();
    assert.equal(cells[1], "TRAP_AND_REPLACE");
    assert.match(cells[4] as string, /^\d+\.\d %$/);
    assert.match(cells[5] as string, /^\d+\.\d %$/);
    await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
    // A job launched elsewhere (the API) appears at the top without a reload.
    const launched = await gql<{ launchTraining: { id: string } }>(
      url,
      app.key,
      `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`,
      {
        input: {
          method: "NO_DEFENSE",
          trainDatasetId: trainId,
          holdoutDatasetId: await datasetOfRole("HOLDOUT"),
          testDatasetId: await datasetOfRole("TEST"),
          hyperparameters: { epochs: 1, evalEvery: 0 },
          idempotencyKey: "console-live-row",
        },
      },
    );
    const liveId = launched.data?.launchTraining.id as string;
    await page.locator(`tr[data-job="${liveId}"]`).waitFor({ timeout: 20_000 });
    await accessible("jobs");
    await shoot("jobs");
  });

  async function datasetOfRole(role: string): Promise<string> {
    const res = await gql<{ datasets: { edges: { node: { id: string } }[] } }>(
      url,
      app.key,
      `query($role: DatasetRole) { datasets(role: $role) { edges { node { id } } } }`,
      { role },
    );
    return res.data?.datasets.edges[0]?.node.id as string;
  }

  it("compares a study's methods: table and charts", async () => {
    const launched = await gql<{ launchStudy: { id: string } }>(
      url,
      app.key,
      `mutation($input: LaunchStudyInput!) { launchStudy(input: $input) { id } }`,
      {
        input: {
          methods: [
            { method: "NO_DEFENSE", hyperparameters: { epochs: 1, evalEvery: 0 } },
            { method: "FINE_PRUNING", hyperparameters: { pretrainEpochs: 1, epochs: 1, evalEvery: 0 } },
          ],
          seeds: [0],
          trainDatasetId: trainId,
          holdoutDatasetId: await datasetOfRole("HOLDOUT"),
          testDatasetId: await datasetOfRole("TEST"),
          asrTestDatasetId: await datasetOfRole("ASR_TEST"),
          target: 0,
          idempotencyKey: "console-study",
        },
      },
    );
    assert.equal(launched.errors, undefined, JSON.stringify(launched.errors));
    const studyId = launched.data?.launchStudy.id as string;
    await nav("Compare");
    await page.locator(`a[href="#/compare/${studyId}"]`).click();
    await page.locator(".view-head .status", { hasText: /SUCCEEDED|PARTIAL/ }).waitFor({ timeout: 150_000 });
    assert.equal(await page.locator("tbody tr").count(), 2);
    await page.locator("figure.chart", { hasText: "Mean CA per method" }).locator("canvas").first().waitFor();
    await page.getByRole("link", { name: /Download the study report/ }).waitFor();
    await accessible("compare");
    await shoot("compare");
  });

  it("shows queues, workers and usage against quota", async () => {
    await nav("Operations");
    const training = page.locator('tr[data-queue="cpu"]');
    await training.waitFor();
    const cells = await training.locator("td").allTextContents();
    assert.ok(Number(cells[3]) >= 1, `the in-process worker is live on the cpu queue (${cells.join(" | ")})`);
    assert.equal(await page.locator("dl.usage meter").count(), 3);
    const datasets = await page.locator("dl.usage div", { hasText: "Datasets" }).locator("dd").textContent();
    assert.match(datasets as string, /^4 of \d+$/);
    await accessible("operations");
    await shoot("operations");
  });

  it("says so when the API fails, and when it cannot be reached", async () => {
    await page.route("**/graphql", (route) =>
      route.fulfill({
        status: 500,
        contentType: "application/json",
        body: JSON.stringify({ error: { code: "INTERNAL", message: "database unavailable" } }),
      }),
    );
    await nav("Jobs");
    await page
      .getByRole("alert")
      .filter({ hasText: "The service failed (HTTP 500): database unavailable" })
      .waitFor();
    await page.unroute("**/graphql");
    await page.getByRole("button", { name: "Try again" }).click();
    await page.getByRole("alert").waitFor({ state: "detached" });
    assert.deepEqual(cspViolations, [], "no Content-Security-Policy violation on any view");
    assert.deepEqual(pageErrors, [], "no uncaught error on any view");
    assert.deepEqual(notFound, [], "nothing the page asked for was missing");
    // Sign out forgets the key.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API key").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await page.getByLabel("API key").fill(app.key);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Jobs", level: 1 }).waitFor();
    // The real service goes away: the next request says it cannot be reached.
    await app.stop();
    await nav("Operations");
    await page.getByRole("alert").filter({ hasText: "could not be reached" }).waitFor({ timeout: 20_000 });
  });
});
