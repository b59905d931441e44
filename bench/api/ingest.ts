/**
 * Ingest throughput and memory: a class-folder tar of PNGs, a GTSRB tar of PPMs and an NPY
 * pair, each generated at
 * --size-mb and at a quarter of it, each ingested through `ingest()` (the code path the
 * service runs in the background after completeDatasetUpload) in a fresh child process.
 * Prints MB/s (input bytes per second), images/s and the peak RSS growth over the child's
 * RSS just before ingest; equal growth at both sizes means memory is flat in the input size.
 * The child starts its decoding threads before the clock starts, as an ingest worker does when
 * it starts; their memory is in the "RSS before" column.
 *
 *   node --import tsx bench/api/ingest.ts [--size-mb 1024] [--image-size 64] [--dir DIR]
 *                                         [--sizes 64,256,1024] [--formats CLASS_FOLDERS,GTSRB] [--json FILE]
 *
 * Not part of `make test`. Needs about 2.5 × size-mb of free disk in --dir (default: the OS
 * temp dir); everything it writes is removed at the end.
 */

import { execFileSync, spawnSync } from "node:child_process";
import { createWriteStream, writeFileSync } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import sharp from "sharp";
import tar from "tar-stream";
import { DECODE_THREADS, warmDecodePool } from "../../src/datasets/images/decode-pool.ts";
import { type DatasetFormat, ingest } from "../../src/datasets/ingest.ts";
import { npyHeader } from "../../src/datasets/npy-write.ts";
import { pattern } from "../../tests/datasets/helpers.ts";

const CLASSES = 10;
/** Distinct PNG bodies repeated under different names: generation stays fast, decoding does not get cheaper. */
const DISTINCT_PNGS = 64;

interface Measurement {
  format: DatasetFormat;
  inputBytes: number;
  images: number;
  seconds: number;
  baselineMiB: number;
  peakGrowthMiB: number;
}

/** Deterministic bytes (the tests' generator), as a writable Buffer. */
function noise(length: number, seed: number): Buffer {
  return Buffer.from(pattern(length, seed).buffer);
}

/** A tar of PNGs in CLASSES folders, about `bytes` long; returns its size and image count. */
async function writeClassFolderTar(path: string, bytes: number, side: number) {
  const pngs: Buffer[] = [];
  for (let i = 0; i < DISTINCT_PNGS; i++) {
    // smooth gradients plus noise: compresses like a photo, not like pure noise or a flat colour
    const pixels = noise(side * side * 3, i + 1);
    for (let p = 0; p < pixels.length; p++)
      pixels[p] = ((pixels[p] as number) >> 2) + ((p * 7 + i * 13) % 192);
    pngs.push(
      await sharp(pixels, { raw: { width: side, height: side, channels: 3 } })
        .png()
        .toBuffer(),
    );
  }
  const pack = tar.pack();
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(path));
  let written = 0;
  let images = 0;
  while (written < bytes) {
    const png = pngs[images % DISTINCT_PNGS] as Buffer;
    const name = `photos/class_${images % CLASSES}/img_${String(images).padStart(8, "0")}.png`;
    await new Promise<void>((resolve, reject) =>
      pack.entry({ name, size: png.length }, png, (e) => (e ? reject(e) : resolve())),
    );
    written += 512 + Math.ceil(png.length / 512) * 512;
    images++;
  }
  pack.finalize();
  await done;
  return { bytes: (await stat(path)).size, images };
}

const GTSRB_CLASSES = 43;

/**
 * A tar in GTSRB's training layout (Final_Training/Images/<class>/*.ppm + GT-<class>.csv) of
 * about `bytes`: P6 images from 30×30 to 79×79 (GTSRB's own are mostly 30–80 px a side), each
 * resized to 32×32 by ingest, GTSRB's default.
 */
async function writeGtsrbTar(path: string, bytes: number) {
  const sides = Array.from({ length: 50 }, (_, i) => 30 + i);
  const bodies = sides.map((side, i) => {
    const header = Buffer.from(`P6\n${side} ${side}\n255\n`);
    return Buffer.concat([header, noise(side * side * 3, i + 100)]);
  });
  const averageEntry =
    bodies.reduce((sum, b) => sum + 512 + Math.ceil(b.length / 512) * 512, 0) / bodies.length;
  const count = Math.max(GTSRB_CLASSES, Math.round(bytes / averageEntry));
  const pack = tar.pack();
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(path));
  const add = (name: string, body: Buffer) =>
    new Promise<void>((resolve, reject) =>
      pack.entry({ name, size: body.length }, body, (e) => (e ? reject(e) : resolve())),
    );
  const pad = (n: number) => String(n).padStart(5, "0");
  let image = 0;
  for (let c = 0; c < GTSRB_CLASSES; c++) {
    const folder = `GTSRB/Final_Training/Images/${pad(c)}/`;
    const rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"];
    const inClass = Math.floor(count / GTSRB_CLASSES) + (c < count % GTSRB_CLASSES ? 1 : 0);
    for (let i = 0; i < inClass; i++, image++) {
      const k = image % bodies.length;
      const side = sides[k] as number;
      const name = `${pad(c)}_${pad(i)}.ppm`;
      await add(folder + name, bodies[k] as Buffer);
      rows.push(`${name};${side};${side};5;5;${side - 6};${side - 6};${c}`);
    }
    await add(`${folder}GT-${pad(c)}.csv`, Buffer.from(`${rows.join("\r\n")}\r\n`));
  }
  pack.finalize();
  await done;
  return { bytes: (await stat(path)).size, images: count };
}

/** images.npy (N×side×side×3 uint8) + labels.npy (int64) totalling about `bytes`. */
async function writeNpyPair(dir: string, bytes: number, side: number) {
  const imageBytes = side * side * 3;
  const count = Math.max(CLASSES, Math.floor(bytes / (imageBytes + 8)));
  const block = noise(imageBytes * 256, 7);
  const images = await open(join(dir, "images.npy"), "w");
  await images.write(npyHeader("|u1", [count, side, side, 3]));
  for (let done = 0; done < count; done += 256) {
    const n = Math.min(256, count - done);
    block.writeUInt32LE(done, 0); // chunks differ
    await images.write(block, 0, n * imageBytes);
  }
  await images.close();
  const labels = Buffer.alloc(count * 8);
  for (let i = 0; i < count; i++) labels.writeBigInt64LE(BigInt(i % CLASSES), i * 8);
  const labelFile = await open(join(dir, "labels.npy"), "w");
  await labelFile.write(npyHeader("<i8", [count]));
  await labelFile.write(labels);
  await labelFile.close();
  const total = (await stat(join(dir, "images.npy"))).size + (await stat(join(dir, "labels.npy"))).size;
  return { bytes: total, images: count };
}

/** Child process: ingests once, sampling RSS, and prints one JSON line. */
async function measure(format: DatasetFormat, parts: Record<string, string>, out: string): Promise<void> {
  // as a worker serving the ingest queue does when it starts (src/worker/index.ts)
  await warmDecodePool();
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 5);
  const started = performance.now();
  const manifest = await ingest({ format, parts }, out);
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  // maxRSS (KiB) also sees peaks between samples; it is a high-water mark since process start
  peak = Math.max(peak, process.memoryUsage.rss(), process.resourceUsage().maxRSS * 1024);
  console.log(
    JSON.stringify({
      images: manifest.count,
      seconds,
      baselineMiB: baseline / 2 ** 20,
      peakGrowthMiB: (peak - baseline) / 2 ** 20,
    }),
  );
}

function runChild(format: DatasetFormat, parts: Record<string, string>, out: string) {
  // The generator's gigabyte is still being written back to disk: let it land first, so ingest
  // does not compete with it for the disk.
  execFileSync("sync");
  const self = fileURLToPath(import.meta.url);
  const run = spawnSync(
    process.execPath,
    ["--import", "tsx", self, "--child", format, "--parts", JSON.stringify(parts), "--out", out],
    { encoding: "utf8", maxBuffer: 1 << 20 },
  );
  if (run.status !== 0) throw new Error(`ingest of ${format} failed:\n${run.stderr}`);
  return JSON.parse(run.stdout.trim().split("\n").at(-1) as string) as Omit<
    Measurement,
    "format" | "inputBytes"
  >;
}

type Generated = { parts: Record<string, string>; inputBytes: number };

/** Each format's input of about `bytes` in `dir`, written when its turn comes. */
const GENERATORS: Record<
  "CLASS_FOLDERS" | "GTSRB" | "NPY_PAIR",
  (dir: string, bytes: number, side: number) => Promise<Generated>
> = {
  CLASS_FOLDERS: async (dir, bytes, side) => {
    const archive = join(dir, "photos.tar");
    return { parts: { archive }, inputBytes: (await writeClassFolderTar(archive, bytes, side)).bytes };
  },
  GTSRB: async (dir, bytes) => {
    const archive = join(dir, "gtsrb.tar");
    return { parts: { archive }, inputBytes: (await writeGtsrbTar(archive, bytes)).bytes };
  },
  NPY_PAIR: async (dir, bytes, side) => {
    const npy = await writeNpyPair(dir, bytes, side);
    return {
      parts: { images: join(dir, "images.npy"), labels: join(dir, "labels.npy") },
      inputBytes: npy.bytes,
    };
  },
};

async function benchAtSize(
  root: string,
  sizeMb: number,
  side: number,
  formats: string[],
): Promise<Measurement[]> {
  const results: Measurement[] = [];
  for (const format of formats) {
    const dir = await mkdtemp(join(root, `size-${sizeMb}-`));
    try {
      const generate = GENERATORS[format as keyof typeof GENERATORS];
      if (!generate) throw new Error(`--formats: no generator for ${format}`);
      const input = await generate(dir, sizeMb * 2 ** 20, side);
      const measured = runChild(format as DatasetFormat, input.parts, join(dir, "out"));
      results.push({ format: format as DatasetFormat, inputBytes: input.inputBytes, ...measured });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return results;
}

function machine(): string {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  let disk = "";
  try {
    disk = execFileSync("df", ["-h", tmpdir()], { encoding: "utf8" }).split("\n")[1] ?? "";
  } catch {}
  return `${cpus().length} x ${cpu}; node ${process.version}; ${DECODE_THREADS} decoding threads; temp ${disk.split(/\s+/)[0] ?? "?"}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "size-mb": { type: "string", default: "1024" },
      "image-size": { type: "string", default: "64" },
      dir: { type: "string" },
      child: { type: "string" },
      parts: { type: "string" },
      out: { type: "string" },
      // e.g. --sizes 64,128,256,512,1024 (MB) in place of size-mb/4 and size-mb
      sizes: { type: "string" },
      formats: { type: "string", default: "CLASS_FOLDERS,GTSRB,NPY_PAIR" },
      json: { type: "string" },
    },
  });
  if (values.child) {
    await measure(values.child as DatasetFormat, JSON.parse(values.parts as string), values.out as string);
    return;
  }
  const sizeMb = Number(values["size-mb"]);
  const side = Number(values["image-size"]);
  if (!(sizeMb >= 4) || !Number.isInteger(side) || side < 8)
    throw new Error("--size-mb >= 4, --image-size >= 8");
  const root = await mkdtemp(join(values.dir ?? tmpdir(), "trapdoor-bench-ingest-"));
  console.log(`ingest benchmark: ${machine()}; PNG images ${side}x${side}x3`);
  try {
    const rows: Measurement[] = [];
    const sizes = values.sizes ? values.sizes.split(",").map(Number) : [Math.round(sizeMb / 4), sizeMb];
    const formats = values.formats.split(",");
    for (const size of sizes) rows.push(...(await benchAtSize(root, size, side, formats)));
    if (values.json) writeFileSync(values.json, JSON.stringify(rows, null, 1));
    console.log(
      "| format | input MB | images | seconds | MB/s | images/s | RSS before MiB | peak RSS growth MiB |",
    );
    console.log("|---|---|---|---|---|---|---|---|");
    for (const r of rows) {
      const mb = r.inputBytes / 1e6;
      console.log(
        `| ${r.format} | ${mb.toFixed(0)} | ${r.images} | ${r.seconds.toFixed(1)} | ${(mb / r.seconds).toFixed(1)} | ${(r.images / r.seconds).toFixed(0)} | ${r.baselineMiB.toFixed(0)} | ${r.peakGrowthMiB.toFixed(1)} |`,
      );
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
