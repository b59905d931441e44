/**
 * A study's table and its report bundle (report.tar): README.md (the table and the per-method
 * means in Markdown), table.json, chart.png (mean ASR and CA per method), curves.json and
 * curves.png (per-epoch holdout accuracy of every job, stages in run order) and health.json (each
 * job's health verdict, where its method writes one).
 */
import { Readable } from "node:stream";
import sharp from "sharp";
import type { DataSource } from "typeorm";
import { healthOf } from "../db/job-health.ts";
import { metricSeries } from "../db/job-outputs.ts";
import type { JobRow } from "../db/jobs.ts";
import type { StoredReport, StudyRow } from "../db/studies.ts";
import { keys } from "../storage/keys.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import { tarOf } from "./tar.ts";

export interface StudyTableRow {
  job: JobRow;
  method: string;
  seed: number;
  status: string;
  asr: number | null;
  ca: number | null;
  mse: number | null;
  runtimeSeconds: number | null;
  healthVerdict: string | null;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

export async function studyTable(db: DataSource, jobs: JobRow[]): Promise<StudyTableRow[]> {
  return Promise.all(
    jobs.map(async (job) => {
      const m = job.metrics ?? {};
      const timings = (m.timings ?? {}) as Record<string, unknown>;
      const health = job.status === "SUCCEEDED" ? await healthOf(db, job.id) : null;
      return {
        job,
        method: job.method,
        seed: job.seed,
        status: job.status,
        asr: num(m.asr),
        ca: num(m.ca),
        mse: num(m.mse),
        runtimeSeconds: num(timings.totalSeconds),
        healthVerdict: health ? health.verdict.toUpperCase() : null,
      };
    }),
  );
}

interface MethodSummary {
  method: string;
  runs: number;
  succeeded: number;
  meanAsr: number | null;
  meanCa: number | null;
  minCa: number | null;
  maxAsr: number | null;
}

function summarise(rows: StudyTableRow[]): MethodSummary[] {
  const methods = [...new Set(rows.map((r) => r.method))];
  return methods.map((method) => {
    const mine = rows.filter((r) => r.method === method);
    const values = (key: "asr" | "ca") => mine.map((r) => r[key]).filter((v): v is number => v !== null);
    const mean = (v: number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : null);
    return {
      method,
      runs: mine.length,
      succeeded: mine.filter((r) => r.status === "SUCCEEDED").length,
      meanAsr: mean(values("asr")),
      meanCa: mean(values("ca")),
      minCa: values("ca").length ? Math.min(...values("ca")) : null,
      maxAsr: values("asr").length ? Math.max(...values("asr")) : null,
    };
  });
}

const pct = (v: number | null) => (v === null ? "–" : `${(100 * v).toFixed(1)} %`);
const escapeXml = (s: string) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

function markdown(study: StudyRow, status: string, rows: StudyTableRow[], summary: MethodSummary[]): string {
  const lines = [
    `# Study ${study.id}`,
    "",
    `Status: ${status}. Created ${study.created_at.toISOString()}. Datasets: train ${study.spec.trainDatasetId}, holdout ${study.spec.holdoutDatasetId}, test ${study.spec.testDatasetId}${study.spec.asrTestDatasetId ? `, ASR test ${study.spec.asrTestDatasetId}` : ""}.`,
    "",
    "| method | seed | status | ASR | CA | MSE | runtime | health verdict | job |",
    "|---|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.method} | ${r.seed} | ${r.status} | ${pct(r.asr)} | ${pct(r.ca)} | ${r.mse === null ? "–" : r.mse.toFixed(4)} | ${r.runtimeSeconds === null ? "–" : `${r.runtimeSeconds.toFixed(0)} s`} | ${r.healthVerdict ?? "–"} | ${r.job.id} |`,
    ),
    "",
    "Per method (over the seeds that succeeded):",
    "",
    "| method | succeeded | mean ASR | max ASR | mean CA | min CA |",
    "|---|---|---|---|---|---|",
    ...summary.map(
      (s) =>
        `| ${s.method} | ${s.succeeded}/${s.runs} | ${pct(s.meanAsr)} | ${pct(s.maxAsr)} | ${pct(s.meanCa)} | ${pct(s.minCa)} |`,
    ),
    "",
    "ASR is measured only where an ASR test set (or an attack to build one) was given. Files: table.json, chart.png, curves.json, curves.png, health.json.",
  ];
  return `${lines.join("\n")}\n`;
}

/** Grouped bars: mean ASR (red) and mean CA (blue) per method, 0-100 %. */
function barChartSvg(summary: MethodSummary[]): string {
  const w = Math.max(320, 80 + summary.length * 90);
  const h = 260;
  const top = 20;
  const base = 200;
  const scale = (v: number) => (base - top) * v;
  const bars = summary.flatMap((s, i) => {
    const x = 60 + i * 90;
    const out: string[] = [];
    for (const [j, value, colour] of [
      [0, s.meanAsr, "#c62828"],
      [1, s.meanCa, "#1565c0"],
    ] as const) {
      if (value === null) continue;
      out.push(
        `<rect x="${x + j * 32}" y="${base - scale(value)}" width="28" height="${scale(value)}" fill="${colour}"/>`,
      );
    }
    out.push(
      `<text x="${x + 30}" y="${base + 16}" font-size="11" text-anchor="middle">${escapeXml(s.method.slice(0, 14))}</text>`,
    );
    return out;
  });
  const grid = [0, 0.25, 0.5, 0.75, 1].map(
    (v) =>
      `<line x1="50" x2="${w - 10}" y1="${base - scale(v)}" y2="${base - scale(v)}" stroke="#ddd"/><text x="45" y="${base - scale(v) + 4}" font-size="10" text-anchor="end">${v * 100}%</text>`,
  );
  const legend = `<rect x="60" y="${h - 26}" width="12" height="12" fill="#c62828"/><text x="76" y="${h - 16}" font-size="11">ASR</text><rect x="120" y="${h - 26}" width="12" height="12" fill="#1565c0"/><text x="136" y="${h - 16}" font-size="11">CA</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><rect width="100%" height="100%" fill="white"/>${grid.join("")}${bars.join("")}${legend}</svg>`;
}

const PALETTE = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#4e342e", "#ad1457"];

/** One line per job: holdout accuracy against its epochs, stages one after another. */
function curvesSvg(curves: { label: string; points: number[] }[]): string {
  const w = 560;
  const h = 300;
  const longest = Math.max(2, ...curves.map((c) => c.points.length));
  const x = (i: number) => 50 + (i * (w - 70)) / (longest - 1);
  const y = (v: number) => 250 - 230 * v;
  const lines = curves.map((c, k) => {
    const colour = PALETTE[k % PALETTE.length];
    const d = c.points.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    return `<path d="${d}" fill="none" stroke="${colour}" stroke-width="1.5"/><text x="${w - 10}" y="${16 + 13 * k}" font-size="10" text-anchor="end" fill="${colour}">${escapeXml(c.label)}</text>`;
  });
  const grid = [0, 0.5, 1].map(
    (v) =>
      `<line x1="50" x2="${w - 20}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="45" y="${y(v) + 4}" font-size="10" text-anchor="end">${v * 100}%</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><rect width="100%" height="100%" fill="white"/>${grid.join("")}${lines.join("")}<text x="50" y="${h - 20}" font-size="11">holdout accuracy per epoch (every stage, in run order)</text></svg>`;
}

const png = (svg: string) => sharp(Buffer.from(svg)).png().toBuffer();

export async function buildStudyReport(
  db: DataSource,
  store: ObjectStore,
  study: StudyRow,
  jobs: JobRow[],
  status: string,
): Promise<StoredReport> {
  const rows = await studyTable(db, jobs);
  const summary = summarise(rows);
  const curves = await Promise.all(
    jobs.map(async (job) => ({
      jobId: job.id,
      label: `${job.method} seed ${job.seed}`,
      points: (await metricSeries(db, job.id, "holdoutAccuracy"))
        .map((p) => p.value)
        .filter((v): v is number => v !== null),
    })),
  );
  const health = await Promise.all(
    jobs.map(async (job) => {
      const h = job.status === "SUCCEEDED" ? await healthOf(db, job.id) : null;
      return {
        jobId: job.id,
        method: job.method,
        seed: job.seed,
        verdict: h?.verdict ?? null,
        likelyTarget: h?.likely_target ?? null,
      };
    }),
  );
  const table = rows.map(({ job, ...r }) => ({ jobId: job.id, ...r, error: job.error }));
  const tar = tarOf([
    { name: "README.md", data: Buffer.from(markdown(study, status, rows, summary)) },
    {
      name: "table.json",
      data: Buffer.from(
        `${JSON.stringify({ studyId: study.id, status, rows: table, methods: summary }, null, 1)}\n`,
      ),
    },
    { name: "chart.png", data: await png(barChartSvg(summary)) },
    { name: "curves.json", data: Buffer.from(`${JSON.stringify(curves, null, 1)}\n`) },
    { name: "curves.png", data: await png(curvesSvg(curves)) },
    { name: "health.json", data: Buffer.from(`${JSON.stringify(health, null, 1)}\n`) },
  ]);
  const key = keys.studyReport(study.tenant_id, study.id);
  const stored = await store.putStream(key, Readable.from([tar]), {
    contentType: "application/x-tar",
    sizeBytes: tar.length,
  });
  return { key, ...stored };
}
