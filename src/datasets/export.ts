/**
 * Downloads of a dataset's canonical arrays: NPY_PAIR hands out the stored images.npy and
 * labels.npy themselves; NPZ is built once into an uncompressed zip (what np.savez writes) beside
 * them, streamed from the store without holding the arrays in memory, and kept with the dataset.
 */
import { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import type { DatasetRow } from "../db/datasets.ts";
import { badInput, precondition } from "../errors.ts";
import { checkExpiresIn } from "../input-limits.ts";
import { keys, OPTIONAL_CANONICAL_FILES } from "../storage/keys.ts";
import type { ObjectStore } from "../storage/object-store.ts";

export type DownloadFormat = "NPZ" | "NPY_PAIR";

const NPY_PARTS = ["images", "labels"] as const;
export const NPZ_FILE = "dataset.npz";
/** Without ZIP64 every size and offset must fit 32 bits. */
const ZIP32_LIMIT = 0xffff_ffff;
const DOS_DATE_1980 = 0x21; // 1980-01-01, the earliest date a zip can hold: members carry no time

interface ZipEntry {
  name: string;
  open(): Promise<NodeJS.ReadableStream>;
}

/**
 * A zip of `entries`, stored (no compression), each followed by a data descriptor, so every
 * byte is written once as it streams; offsets and CRCs go into the central directory at the end.
 */
export async function* storedZip(entries: ZipEntry[]): AsyncGenerator<Buffer> {
  const central: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, "utf8");
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed: 2.0
    local.writeUInt16LE(0x0808, 6); // sizes and CRC in the data descriptor; UTF-8 names
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(DOS_DATE_1980, 12);
    local.writeUInt16LE(name.length, 26);
    yield Buffer.concat([local, name]);
    const start = offset;
    offset += local.length + name.length;
    let crc = 0;
    let size = 0;
    for await (const chunk of await entry.open()) {
      const bytes = chunk as Buffer;
      crc = crc32(bytes, crc);
      size += bytes.length;
      yield bytes;
    }
    offset += size;
    if (offset > ZIP32_LIMIT) throw precondition("the dataset is over 4 GiB; download it as NPY_PAIR");
    const descriptor = Buffer.alloc(16);
    descriptor.writeUInt32LE(0x08074b50, 0);
    descriptor.writeUInt32LE(crc >>> 0, 4);
    descriptor.writeUInt32LE(size, 8);
    descriptor.writeUInt32LE(size, 12);
    yield descriptor;
    offset += descriptor.length;
    const header = Buffer.alloc(46);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt16LE(20, 4);
    header.writeUInt16LE(20, 6);
    header.writeUInt16LE(0x0808, 8);
    header.writeUInt16LE(DOS_DATE_1980, 14);
    header.writeUInt32LE(crc >>> 0, 16);
    header.writeUInt32LE(size, 20);
    header.writeUInt32LE(size, 24);
    header.writeUInt16LE(name.length, 28);
    header.writeUInt32LE(start, 42);
    central.push(header, name);
  }
  const directory = Buffer.concat(central);
  if (offset + directory.length > ZIP32_LIMIT)
    throw precondition("the dataset is over 4 GiB; download it as NPY_PAIR");
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  yield Buffer.concat([directory, end]);
}

/** A signed URL for one download of a READY dataset; NPZ is built on its first request. */
export async function datasetDownloadUrl(
  store: ObjectStore,
  dataset: DatasetRow,
  request: { format: DownloadFormat; part?: string | null; expiresInSeconds: number },
): Promise<string> {
  if (dataset.status !== "READY")
    throw precondition(`dataset is ${dataset.status}; only READY datasets download`);
  const { tenant_id: tenant, id } = dataset;
  const expiresInSeconds = checkExpiresIn(request.expiresInSeconds);
  if (request.format === "NPY_PAIR") {
    const part = request.part as (typeof NPY_PARTS)[number];
    if (!NPY_PARTS.includes(part)) throw badInput("NPY_PAIR downloads name a part: images or labels", "part");
    return store.downloadUrl(keys.datasetCanonical(tenant, id, `${part}.npy`), {
      expiresInSeconds,
      fileName: `${id}-${part}.npy`,
    });
  }
  if (request.part != null) throw badInput("an NPZ download is one file; give no part", "part");
  const key = keys.datasetExport(tenant, id, NPZ_FILE);
  if (!(await store.stat(key))) {
    const files = ["images.npy", "labels.npy"];
    for (const optional of OPTIONAL_CANONICAL_FILES)
      if (await store.stat(keys.datasetCanonical(tenant, id, optional))) files.push(optional);
    const entries = files.map((file) => ({
      name: file,
      open: () => store.getStream(keys.datasetCanonical(tenant, id, file)),
    }));
    await store.putStream(key, Readable.from(storedZip(entries)), { contentType: "application/zip" });
  }
  return store.downloadUrl(key, { expiresInSeconds, fileName: `${id}.npz` });
}
