import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ScaledJob, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { Job } from "kubernetes-models/batch/v1";
import { Ingress, NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from "kubernetes-models/v1";
import { parseAllDocuments } from "yaml";
import type { TrainingQueue } from "../../src/config.ts";
import { createDataSource, migrate } from "../../src/db/data-source.ts";
import { startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { JobQueue } from "../../src/queue/job-queue.ts";
import { removeDataDir } from "../helpers/app.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));
// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are walked field by field
type Manifest = any;

const KUBECTL = process.env.KUBECTL ?? "/usr/bin/kubectl";
const OVERLAYS = [
  "base",
  "overlays/dev",
  "overlays/production",
  "overlays/production-multi-gpu",
  "overlays/kueue",
  "overlays/monitoring",
];

type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
};
type Container = {
  name: string;
  image: string;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  readinessProbe?: { httpGet?: { path: string } };
  livenessProbe?: { httpGet?: { path: string } };
};
type PodSpec = {
  securityContext?: { runAsNonRoot?: boolean };
  containers: Container[];
  initContainers?: Container[];
};

/** Model classes (kubernetes-models) by apiVersion/kind: each validates against its schema. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "v1/Namespace": Namespace,
  "apps/v1/Deployment": Deployment,
  "apps/v1/StatefulSet": StatefulSet,
  "batch/v1/Job": Job,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "networking.k8s.io/v1/Ingress": Ingress,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "keda.sh/v1alpha1/ScaledJob": ScaledJob,
  "keda.sh/v1alpha1/TriggerAuthentication": TriggerAuthentication,
};
/** Kueue and the Prometheus Operator publish no model package: their fields are checked by hand. */
const HAND_CHECKED_KINDS = ["ResourceFlavor", "ClusterQueue", "LocalQueue", "ServiceMonitor", "PodMonitor"];

function kubectlVersion(): string {
  const out = spawnSync(KUBECTL, ["version", "--client", "-o", "json"], { encoding: "utf8" });
  if (out.status !== 0)
    throw new Error(
      `kubectl is needed at ${KUBECTL} (or $KUBECTL), version 1.27 or later (kustomize v5); ` +
        "Debian's kubernetes-client (1.20) is too old",
    );
  const { clientVersion } = JSON.parse(out.stdout) as { clientVersion: { major: string; minor: string } };
  const minor = Number.parseInt(clientVersion.minor, 10);
  if (clientVersion.major !== "1" || minor < 27)
    throw new Error(
      `kubectl ${clientVersion.major}.${clientVersion.minor} is too old: kustomize v5 needs 1.27+`,
    );
  return `${clientVersion.major}.${minor}`;
}

function render(overlay: string): K8sObject[] {
  const out = spawnSync(KUBECTL, ["kustomize", join(repo, "infra", overlay)], { encoding: "utf8" });
  assert.equal(out.status, 0, out.stderr);
  return parseAllDocuments(out.stdout).map((doc) => doc.toJSON() as K8sObject);
}

/** Every pod spec an object runs: workloads' templates and the ScaledJob's job template. */
function podSpecs(object: K8sObject): PodSpec[] {
  const spec = object.spec as Manifest | undefined;
  if (!spec) return [];
  if (object.kind === "ScaledJob") return [spec.jobTargetRef.template.spec];
  if (["Deployment", "StatefulSet", "Job"].includes(object.kind)) return [spec.template.spec];
  return [];
}

describe("infra/ (kustomize): every overlay renders, validates and keeps the invariants", () => {
  const rendered = new Map<string, K8sObject[]>();

  before(() => {
    kubectlVersion();
    for (const overlay of OVERLAYS) rendered.set(overlay, render(overlay));
  });

  it("renders every overlay with objects that validate against the Kubernetes and KEDA schemas", () => {
    for (const [overlay, objects] of rendered) {
      assert.ok(objects.length >= 14, `${overlay} renders ${objects.length} objects`);
      for (const object of objects) {
        const key = `${object.apiVersion}/${object.kind}`;
        if (HAND_CHECKED_KINDS.includes(object.kind)) continue;
        const Model = MODELS[key];
        assert.ok(Model, `${overlay}: no schema known for ${key}`);
        assert.doesNotThrow(
          () => new Model(object as never).validate(),
          `${overlay}: ${key} ${object.metadata.name}`,
        );
      }
    }
  });

  it("runs every pod as non-root with limits, pinned images and probes on routes the API serves", () => {
    for (const [overlay, objects] of rendered) {
      for (const object of objects) {
        for (const pod of podSpecs(object)) {
          const where = `${overlay}: ${object.kind} ${object.metadata.name}`;
          assert.equal(pod.securityContext?.runAsNonRoot, true, `${where} runs as non-root`);
          for (const container of [...pod.containers, ...(pod.initContainers ?? [])]) {
            assert.ok(
              container.resources?.limits?.cpu && container.resources.limits.memory,
              `${where}/${container.name} limits`,
            );
            assert.match(container.image, /^[\w./-]+:[\w.-]+$/, `${where}/${container.name} image has a tag`);
            assert.doesNotMatch(
              container.image,
              /:latest$/,
              `${where}/${container.name} image is not latest`,
            );
            if (!container.image.includes("trapdoor")) continue; // the dev overlay's PostgreSQL and MinIO
            for (const probe of [container.readinessProbe, container.livenessProbe])
              if (probe?.httpGet)
                assert.ok(["/healthz", "/readyz"].includes(probe.httpGet.path), `${where} probe path`);
          }
        }
      }
    }
  });

  it("GPU pods request a GPU, tolerate the GPU taint and run one job each; the API has replicas, probes, PDB and HPA", () => {
    for (const [overlay, objects] of rendered) {
      const scaledJobs = objects.filter((o) => o.kind === "ScaledJob");
      const config = objects.find((o) => o.kind === "ConfigMap") as unknown as {
        data: Record<string, string>;
      };
      const offered = config.data.TRAPDOOR_GPU_COUNTS?.split(",").map(Number) ?? [];
      // One queue and one ScaledJob per GPU count offered.
      assert.deepEqual(
        scaledJobs.map((s) => Number(/gpu-(\d+)$/.exec(s.metadata.name)?.[1])).sort(),
        offered.sort(),
        `${overlay}: a GPU pool per count in TRAPDOOR_GPU_COUNTS`,
      );
      for (const scaled of scaledJobs) {
        const gpus = Number(/gpu-(\d+)$/.exec(scaled.metadata.name)?.[1]);
        const queue = gpus === 1 ? "gpu" : `gpu-${gpus}`;
        const spec = scaled.spec as Manifest;
        assert.equal(spec.scalingStrategy.strategy, "accurate");
        assert.equal(spec.triggers[0].type, "postgresql");
        assert.ok(spec.triggers[0].authenticationRef.name);
        const [pod] = podSpecs(scaled) as [PodSpec & { tolerations?: { key: string }[] }];
        const [worker] = pod.containers as [Container & { args: string[] }];
        assert.equal(worker.resources?.limits?.["nvidia.com/gpu"], String(gpus));
        assert.ok(pod.tolerations?.some((t) => t.key === "nvidia.com/gpu"));
        assert.deepEqual(worker.args, ["worker", "--once", "--queue", queue]);
        assert.match(spec.triggers[0].metadata.query, new RegExp(`queue = '${queue}'`));
      }
      const api = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "trapdoor-api");
      assert.ok(api, `${overlay} has the API Deployment`);
      assert.ok(((api.spec as { replicas?: number }).replicas ?? 0) >= 2, `${overlay}: API replicas`);
      const [apiPod] = podSpecs(api) as [PodSpec];
      assert.equal(apiPod.containers[0]?.readinessProbe?.httpGet?.path, "/readyz");
      assert.equal(apiPod.containers[0]?.livenessProbe?.httpGet?.path, "/healthz");
      for (const kind of [
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "Job",
      ])
        assert.ok(
          objects.some((o) => o.kind === kind),
          `${overlay} has a ${kind}`,
        );
      assert.equal(config.data.TRAPDOOR_AUTO_MIGRATE, "false", `${overlay}: replicas never migrate`);
    }
  });

  it("the kueue overlay sends GPU Jobs to a LocalQueue of a ClusterQueue with a GPU quota", () => {
    const objects = rendered.get("overlays/kueue") as K8sObject[];
    const scaled = objects.find((o) => o.kind === "ScaledJob") as K8sObject;
    const labels = (scaled.spec as Manifest).jobTargetRef.template.metadata.labels as Record<string, string>;
    const local = objects.find((o) => o.kind === "LocalQueue") as Manifest;
    const cluster = objects.find((o) => o.kind === "ClusterQueue") as Manifest;
    const flavor = objects.find((o) => o.kind === "ResourceFlavor") as Manifest;
    assert.equal(labels["kueue.x-k8s.io/queue-name"], local.metadata.name);
    assert.equal(local.spec.clusterQueue, cluster.metadata.name);
    assert.equal(local.metadata.namespace, scaled.metadata.namespace);
    for (const scoped of [cluster, flavor]) assert.equal(scoped.metadata.namespace, undefined);
    const group = cluster.spec.resourceGroups[0];
    assert.ok(group.coveredResources.includes("nvidia.com/gpu"));
    assert.equal(group.flavors[0].name, flavor.metadata.name);
    const gpu = group.flavors[0].resources.find((r: { name: string }) => r.name === "nvidia.com/gpu");
    assert.ok(gpu.nominalQuota > 0);
  });

  it("the monitoring overlay scrapes the API's /metrics through its Service and every worker pod's", () => {
    const objects = rendered.get("overlays/monitoring") as K8sObject[];
    const service = objects.find(
      (o) => o.kind === "Service" && o.metadata.name === "trapdoor-api",
    ) as Manifest;
    const serviceMonitor = objects.find((o) => o.kind === "ServiceMonitor") as Manifest;
    for (const [label, value] of Object.entries(serviceMonitor.spec.selector.matchLabels))
      assert.equal(
        service.metadata.labels[label],
        value,
        `the ServiceMonitor selects the API Service by ${label}`,
      );
    const endpoint = serviceMonitor.spec.endpoints[0];
    assert.ok(service.spec.ports.some((p: { name: string }) => p.name === endpoint.port));
    assert.equal(endpoint.path, "/metrics");
    const podMonitor = objects.find((o) => o.kind === "PodMonitor") as Manifest;
    const workers = objects.filter(
      (o) => podSpecs(o).length && o.metadata.name.startsWith("trapdoor-worker"),
    );
    assert.equal(workers.length, 2, "the CPU Deployment and the GPU ScaledJob");
    for (const worker of workers) {
      const labels =
        worker.kind === "ScaledJob"
          ? (worker.spec as Manifest).jobTargetRef.template.metadata.labels
          : (worker.spec as Manifest).template.metadata.labels;
      for (const [label, value] of Object.entries(podMonitor.spec.selector.matchLabels))
        assert.equal(labels[label], value, `${worker.metadata.name} is selected`);
      const [pod] = podSpecs(worker) as [PodSpec];
      const [container] = pod.containers as [Manifest];
      const port = container.ports.find(
        (p: { name: string }) => p.name === podMonitor.spec.podMetricsEndpoints[0].port,
      );
      const env = Object.fromEntries(
        container.env.map((e: { name: string; value: string }) => [e.name, e.value]),
      );
      assert.equal(
        String(port.containerPort),
        env.TRAPDOOR_METRICS_PORT,
        `${worker.metadata.name} serves /metrics on its metrics port`,
      );
    }
  });

  describe("the GPU ScaledJob's query, run against PostgreSQL", () => {
    const dir = mkdtempSync(join(tmpdir(), "trapdoor-keda-"));
    let pg: Awaited<ReturnType<typeof startEmbeddedPostgres>>;
    after(async () => {
      await pg?.stop();
      removeDataDir(dir);
    });

    it("each pool's query counts exactly its queued jobs: not running, cancelled (message left behind), CPU or other counts", async () => {
      pg = await startEmbeddedPostgres(dir);
      const db = createDataSource(pg.url);
      await db.initialize();
      try {
        await migrate(db);
        const [tenant] = await db.query("INSERT INTO tenants (name) VALUES ('t') RETURNING id");
        const [dataset] = await db.query(
          `INSERT INTO datasets (tenant_id, name, role, format, status, parts, size_bytes) VALUES ($1, 'd', 'TRAIN', 'NPZ', 'READY', '[]', 0) RETURNING id`,
          [tenant.id],
        );
        const jobs: [string, TrainingQueue, number | null][] = [
          ["QUEUED", "gpu", 1],
          ["QUEUED", "gpu", 1],
          ["QUEUED", "gpu", null], // launched before GPU counts existed: one GPU
          ["QUEUED", "gpu-4", 4],
          ["RUNNING", "gpu-4", 4],
          ["QUEUED", "cpu", null],
          ["RUNNING", "gpu", 1],
          ["STARTING", "gpu", 1],
          ["CANCELLED", "gpu", 1],
          ["FAILED", "gpu", 1],
          ["SUCCEEDED", "gpu", 1],
          ["VALIDATING", "gpu", 1],
        ];
        let n = 0;
        for (const [status, queue, gpus] of jobs) {
          await db.query(
            `INSERT INTO training_jobs (tenant_id, idempotency_key, input_hash, method, architecture, status, train_dataset_id,
               holdout_dataset_id, test_dataset_id, seed, hyperparameters, queue, gpus)
             VALUES ($1, $2, 'h', 'NO_DEFENSE', 'wrn16-1', $3, $4, $4, $4, 0, '{}', $5, $6)`,
            [tenant.id, `k${n++}`, status, dataset.id, queue, gpus],
          );
        }
        // The cancelled job's pg-boss message is still there: the query must not count messages.
        const [cancelled] = await db.query("SELECT id FROM training_jobs WHERE status = 'CANCELLED'");
        const queue = new JobQueue(pg.url);
        await queue.start();
        await queue.enqueue("gpu", { jobId: cancelled.id, attempt: 1 });
        await queue.stop();
        const [{ waiting }] = await db.query("SELECT count(*) AS waiting FROM pgboss.job WHERE name = 'gpu'");
        assert.equal(Number(waiting), 1);
        const counts: Record<string, number> = {};
        for (const scaled of (rendered.get("overlays/production-multi-gpu") as K8sObject[]).filter(
          (o) => o.kind === "ScaledJob",
        )) {
          const [{ count }] = await db.query((scaled.spec as Manifest).triggers[0].metadata.query);
          counts[scaled.metadata.name] = Number(count);
        }
        assert.deepEqual(counts, { "trapdoor-worker-gpu-1": 3, "trapdoor-worker-gpu-4": 1 });
      } finally {
        await db.destroy();
      }
    });
  });
});
