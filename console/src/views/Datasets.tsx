/** Datasets: the list (polled while any is validating), and an upload form with progress. */
import { useEffect, useState } from "preact/hooks";
import { ApiError } from "../api.ts";
import { ErrorMessage } from "../components/ErrorMessage.tsx";
import { Pager, usePages } from "../components/Pager.tsx";
import { ProgressBar, Status } from "../components/Status.tsx";
import { bytes, shortId, when } from "../format.ts";
import { useApi, useQuery, useTitle } from "../hooks.ts";
import { href } from "../router.ts";
import type { Dataset, DatasetFormat, DatasetRole, DatasetSplit, PageInfo } from "../schema.ts";
import { TWO_FILE_FORMATS, type UploadProgress, uploadDataset } from "../upload.ts";

export type DatasetRow = Pick<
  Dataset,
  | "id"
  | "name"
  | "role"
  | "format"
  | "status"
  | "failureReason"
  | "sizeBytes"
  | "count"
  | "height"
  | "width"
  | "channels"
  | "numClasses"
  | "createdAt"
>;
export const DATASET_ROW =
  "id name role format status failureReason sizeBytes count height width channels numClasses createdAt";
const DATASETS = `query Datasets($after: String) { datasets(first: 50, after: $after) { edges { node { ${DATASET_ROW} } } pageInfo { hasNextPage endCursor } } }`;

const ROLES: DatasetRole[] = ["TRAIN", "HOLDOUT", "TEST", "ASR_TEST"];
const FORMATS: DatasetFormat[] = ["NPY_PAIR", "NPZ", "IDX", "CIFAR10_BINARY", "CLASS_FOLDERS", "GTSRB"];
const SPLIT_FORMATS: ReadonlySet<DatasetFormat> = new Set(["CIFAR10_BINARY", "GTSRB"]);

export const shape = (d: Pick<Dataset, "count" | "height" | "width" | "channels">) =>
  d.count === null || d.count === undefined ? "—" : `${d.count} × ${d.height} × ${d.width} × ${d.channels}`;

export function Datasets() {
  useTitle("Datasets");
  const pages = usePages();
  const list = useQuery<{ datasets: { edges: { node: DatasetRow }[]; pageInfo: PageInfo } }>(DATASETS, {
    after: pages.after,
  });
  const edges = list.data?.datasets.edges ?? [];
  const pending = edges.some((e) => e.node.status === "VALIDATING" || e.node.status === "AWAITING_UPLOAD");
  useEffect(() => {
    if (!pending) return;
    const timer = setTimeout(list.reload, 1500);
    return () => clearTimeout(timer);
  }, [pending, list.data]);

  return (
    <section aria-labelledby="datasets-title">
      <div class="view-head">
        <h1 id="datasets-title">Datasets</h1>
      </div>
      <UploadForm onUploaded={() => (pages.page === 1 ? list.reload() : pages.first())} />
      <ErrorMessage error={list.error} retry={list.reload} />
      <table class="data">
        <caption class="visually-hidden">Datasets, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Role</th>
            <th scope="col">Format</th>
            <th scope="col">Status</th>
            <th scope="col">Shape</th>
            <th scope="col">Size</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {edges.map(({ node: d }) => (
            <tr key={d.id} data-dataset={d.id}>
              <td>
                <a href={href.dataset(d.id)}>{d.name}</a> <span class="mono dim">{shortId(d.id)}</span>
              </td>
              <td>{d.role}</td>
              <td>{d.format}</td>
              <td>
                <Status value={d.status} />
                {d.failureReason ? <div class="dim">{d.failureReason}</div> : null}
              </td>
              <td>{shape(d)}</td>
              <td class="num">{bytes(d.sizeBytes)}</td>
              <td>{when(d.createdAt)}</td>
            </tr>
          ))}
          {edges.length === 0 && !list.loading ? (
            <tr>
              <td colSpan={7}>No datasets yet: upload one above.</td>
            </tr>
          ) : null}
        </tbody>
      </table>
      <Pager label="Pages of datasets" pages={pages} pageInfo={list.data?.datasets.pageInfo} />
    </section>
  );
}

function UploadForm({ onUploaded }: { onUploaded: () => void }) {
  const api = useApi();
  const [name, setName] = useState("");
  const [role, setRole] = useState<DatasetRole>("TRAIN");
  const [format, setFormat] = useState<DatasetFormat>("NPY_PAIR");
  const [split, setSplit] = useState<DatasetSplit>("TRAIN");
  const [files, setFiles] = useState<Record<string, File>>({});
  const [progress, setProgress] = useState<UploadProgress | undefined>();
  const [error, setError] = useState<ApiError | undefined>();
  const [done, setDone] = useState<string | undefined>();
  const partNames = TWO_FILE_FORMATS.has(format) ? ["images", "labels"] : ["archive"];

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setDone(undefined);
    const chosen = Object.fromEntries(partNames.filter((p) => files[p]).map((p) => [p, files[p] as File]));
    if (Object.keys(chosen).length !== partNames.length) {
      setError(
        new ApiError(
          "api",
          `choose a file for each part: ${partNames.join(", ")}`,
          "BAD_USER_INPUT",
          "files",
        ),
      );
      return;
    }
    try {
      const id = await uploadDataset(
        api,
        {
          name: name.trim() || (Object.values(chosen)[0] as File).name,
          role,
          format,
          split: SPLIT_FORMATS.has(format) ? split : undefined,
          files: chosen,
        },
        setProgress,
      );
      setDone(id);
      onUploaded();
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError("server", String(err)));
    } finally {
      setProgress(undefined);
    }
  };

  return (
    <form class="card upload" onSubmit={submit} aria-labelledby="upload-title">
      <h2 id="upload-title">Upload a dataset</h2>
      <div class="fields">
        <label>
          Name
          <input
            value={name}
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
            placeholder="the file's name"
          />
        </label>
        <label>
          Role
          <select
            value={role}
            onChange={(e) => setRole((e.target as HTMLSelectElement).value as DatasetRole)}
          >
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Format
          <select
            value={format}
            onChange={(e) => {
              setFormat((e.target as HTMLSelectElement).value as DatasetFormat);
              setFiles({});
            }}
          >
            {FORMATS.map((f) => (
              <option key={f}>{f}</option>
            ))}
          </select>
        </label>
        {SPLIT_FORMATS.has(format) ? (
          <label>
            Split
            <select
              value={split}
              onChange={(e) => setSplit((e.target as HTMLSelectElement).value as DatasetSplit)}
            >
              <option>TRAIN</option>
              <option>TEST</option>
            </select>
          </label>
        ) : null}
        {partNames.map((part) => (
          <label key={`${format}.${part}`}>
            {part === "archive" ? "File" : `${part[0]?.toUpperCase()}${part.slice(1)} file`}
            <input
              type="file"
              name={part}
              onChange={(e) => {
                const file = (e.target as HTMLInputElement).files?.[0];
                setFiles((f) => (file ? { ...f, [part]: file } : f));
              }}
            />
          </label>
        ))}
      </div>
      <button type="submit" disabled={progress !== undefined}>
        Upload
      </button>
      {progress ? (
        <div class="upload-progress">
          <span>
            {progress.phase === "hashing"
              ? "Computing sha256"
              : progress.phase === "uploading"
                ? "Uploading"
                : "Handing over for validation"}
          </span>
          <ProgressBar
            fraction={progress.total ? progress.done / progress.total : 1}
            label={`${progress.phase} progress`}
          />
        </div>
      ) : null}
      {done ? (
        <p role="status">
          Uploaded: <a href={href.dataset(done)}>dataset {shortId(done)}</a> is being validated.
        </p>
      ) : null}
      <ErrorMessage error={error} />
    </form>
  );
}
