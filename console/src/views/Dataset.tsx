/** One dataset: its facts, class histogram and first images. */
import { useEffect, useRef, useState } from "preact/hooks";
import { BarChart } from "../components/Chart.tsx";
import { ErrorMessage } from "../components/ErrorMessage.tsx";
import { Status } from "../components/Status.tsx";
import { bytes, when } from "../format.ts";
import { useQuery, useTitle } from "../hooks.ts";
import { type ImagesHead, paint, readFirstImages } from "../npy-preview.ts";
import { href } from "../router.ts";
import type { Dataset as DatasetType } from "../schema.ts";
import { DATASET_ROW, type DatasetRow, shape } from "./Datasets.tsx";

type Detail = DatasetRow &
  Pick<DatasetType, "classNames" | "classHistogram" | "poison" | "failureCode"> & {
    imagesUrl: string | null;
  };
const DATASET = `query Dataset($id: ID!) { dataset(id: $id) { ${DATASET_ROW} classNames classHistogram poison failureCode } }`;
const IMAGES_URL = `query Images($id: ID!) { dataset(id: $id) { imagesUrl: downloadUrl(format: NPY_PAIR, part: "images", expiresInSeconds: 600) } }`;
const SAMPLE_COUNT = 16;

export function Dataset({ id }: { id: string }) {
  useTitle("Dataset");
  const dataset = useQuery<{ dataset: Detail | null }>(DATASET, { id });
  const d = dataset.data?.dataset;
  useEffect(() => {
    if (d?.status !== "VALIDATING" && d?.status !== "AWAITING_UPLOAD") return;
    const timer = setTimeout(dataset.reload, 1500);
    return () => clearTimeout(timer);
  }, [d?.status, dataset.data]);
  if (dataset.data && !d) return <p role="alert">No dataset {id} (it may have been deleted).</p>;
  if (!d) return <ErrorMessage error={dataset.error} retry={dataset.reload} />;
  const classLabels = (d.classHistogram ?? []).map((_, i) => d.classNames?.[i] ?? String(i));
  return (
    <section aria-labelledby="dataset-title">
      <div class="view-head">
        <h1 id="dataset-title">Dataset {d.name}</h1>
        <Status value={d.status} />
      </div>
      <dl class="facts">
        <dt>Id</dt>
        <dd class="mono">{d.id}</dd>
        <dt>Role</dt>
        <dd>{d.role}</dd>
        <dt>Format</dt>
        <dd>{d.format}</dd>
        <dt>Shape (N × H × W × C)</dt>
        <dd>{shape(d)}</dd>
        <dt>Classes</dt>
        <dd>{d.numClasses ?? "—"}</dd>
        <dt>Size</dt>
        <dd>{bytes(d.sizeBytes)}</dd>
        <dt>Created</dt>
        <dd>{when(d.createdAt)}</dd>
      </dl>
      {d.failureReason ? (
        <p class="error" role="alert">
          <strong>{d.failureCode ?? "FAILED"}</strong>: {d.failureReason}
        </p>
      ) : null}
      {d.classHistogram ? (
        <BarChart
          title="Images per class"
          labels={classLabels}
          values={d.classHistogram}
          valueLabel="images"
        />
      ) : null}
      {d.status === "READY" ? <Samples id={d.id} /> : null}
      <p>
        <a href={href.datasets()}>Back to datasets</a>
      </p>
    </section>
  );
}

function Samples({ id }: { id: string }) {
  const url = useQuery<{ dataset: { imagesUrl: string } | null }>(IMAGES_URL, { id });
  const [head, setHead] = useState<ImagesHead | undefined>();
  const [failed, setFailed] = useState<string | undefined>();
  const imagesUrl = url.data?.dataset?.imagesUrl;
  useEffect(() => {
    if (!imagesUrl) return;
    readFirstImages(imagesUrl, SAMPLE_COUNT).then(setHead, (e: Error) => setFailed(e.message));
  }, [imagesUrl]);
  return (
    <section aria-labelledby="samples-title">
      <h2 id="samples-title">First images</h2>
      <ErrorMessage error={url.error} />
      {failed ? <p role="alert">The images could not be read: {failed}</p> : null}
      <ul class="thumbs">
        {head?.images.map((image, i) => (
          <li key={i}>
            <Thumb image={image} head={head} label={`image ${i}`} />
          </li>
        ))}
      </ul>
    </section>
  );
}

function Thumb({ image, head, label }: { image: Uint8Array; head: ImagesHead; label: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (canvas.current) paint(canvas.current, image, head.height, head.width, head.channels);
  }, [image, head]);
  return <canvas ref={canvas} class="thumb" role="img" aria-label={label} />;
}
