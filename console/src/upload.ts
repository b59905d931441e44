/**
 * Uploading a dataset from the browser: each file's sha256 computed here (streamed through
 * @noble/hashes, so it works on any size and outside secure contexts), then createDatasetUpload,
 * a PUT of each file to its signed URL with progress, and completeDatasetUpload.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { type Api, ApiError } from "./api.ts";
import type { DatasetFormat, DatasetRole, DatasetSplit, UploadTarget } from "./schema.ts";

export interface UploadRequest {
  name: string;
  role: DatasetRole;
  format: DatasetFormat;
  split?: DatasetSplit;
  /** Part name → file: `images`/`labels` for two-file formats, `archive` for the others. */
  files: Record<string, File>;
}

export interface UploadProgress {
  phase: "hashing" | "uploading" | "validating";
  done: number;
  total: number;
}

export const TWO_FILE_FORMATS: ReadonlySet<DatasetFormat> = new Set(["NPY_PAIR", "IDX"]);

export async function hashFile(file: File, onBytes: (n: number) => void): Promise<string> {
  const hash = sha256.create();
  const reader = file.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    hash.update(value);
    onBytes(value.length);
  }
  return bytesToHex(hash.digest());
}

/** PUT one file to its signed URL; XMLHttpRequest because fetch reports no upload progress. */
function put(
  target: Pick<UploadTarget, "url" | "method" | "headers">,
  file: File,
  onBytes: (loaded: number) => void,
) {
  return new Promise<void>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(target.method, target.url);
    for (const [name, value] of Object.entries(target.headers as Record<string, string>)) {
      // The browser sets the length itself and refuses to be told.
      if (name.toLowerCase() !== "content-length") xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (e) => onBytes(e.loaded);
    xhr.onload = () =>
      xhr.status >= 200 && xhr.status < 300
        ? resolve()
        : reject(new ApiError("server", `The object store refused ${file.name} (HTTP ${xhr.status}).`));
    xhr.onerror = () =>
      reject(new ApiError("network", `The upload of ${file.name} could not reach the object store.`));
    xhr.send(file);
  });
}

const CREATE = `mutation($input: CreateDatasetUploadInput!) {
  createDatasetUpload(input: $input) { dataset { id } uploads { part url method headers } } }`;
const COMPLETE = `mutation($id: ID!) { completeDatasetUpload(id: $id) { id status } }`;

/** Hash, create, PUT, complete; returns the new dataset's id (VALIDATING on the worker). */
export async function uploadDataset(
  api: Api,
  request: UploadRequest,
  onProgress: (p: UploadProgress) => void,
) {
  const parts = Object.entries(request.files);
  const total = parts.reduce((sum, [, f]) => sum + f.size, 0);
  let hashed = 0;
  const described = [];
  for (const [name, file] of parts) {
    const digest = await hashFile(file, (n) => {
      hashed += n;
      onProgress({ phase: "hashing", done: hashed, total });
    });
    described.push({ name, sizeBytes: file.size, sha256: digest });
  }
  const single = !TWO_FILE_FORMATS.has(request.format);
  const input = {
    name: request.name,
    role: request.role,
    format: request.format,
    ...(single ? { sizeBytes: described[0]?.sizeBytes, sha256: described[0]?.sha256 } : { parts: described }),
    ...(request.split ? { options: { split: request.split } } : {}),
  };
  const created = await api.request<{
    createDatasetUpload: {
      dataset: { id: string };
      uploads: Pick<UploadTarget, "part" | "url" | "method" | "headers">[];
    };
  }>(CREATE, { input });
  let sent = 0;
  for (const target of created.createDatasetUpload.uploads) {
    const file = single ? parts[0]?.[1] : request.files[target.part];
    if (!file)
      throw new ApiError("api", `the API asked for a part named ${target.part}, which was not chosen`);
    await put(target, file, (loaded) => onProgress({ phase: "uploading", done: sent + loaded, total }));
    sent += file.size;
  }
  onProgress({ phase: "validating", done: total, total });
  await api.request(COMPLETE, { id: created.createDatasetUpload.dataset.id });
  return created.createDatasetUpload.dataset.id;
}
