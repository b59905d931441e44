"""trapdoor's Python client: the standard library only (urllib, json, hashlib), one file to vendor.

    from trapdoor_client import Trapdoor

    td = Trapdoor("https://trapdoor.example.com", api_key)
    train = td.upload_dataset("train", "TRAIN", "NPY_PAIR", {"images": "x.npy", "labels": "y.npy"})
    job = td.launch_training(method="TRAP_AND_REPLACE", train=train["id"], holdout=..., test=...)
    job = td.wait_for_job(job["id"])          # polls: the standard library has no WebSocket client
    td.download(job["id"], "model.onnx", format="onnx")

Every GraphQL error becomes a `TrapdoorError` with the API's `code` (`extensions.code`) and
`field`; HTTP 429 and 503 are retried after the Retry-After the API sends (reads and keyed
launches only: a retried launch carries its idempotency key, so it cannot run twice).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Mapping, Optional, Union

__all__ = ["Trapdoor", "TrapdoorError", "TERMINAL"]

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
PathLike = Union[str, "os.PathLike[str]"]

_JOB_FIELDS = """id method architecture status attempt labels externalId
  progress { stage epoch epochs fraction imagesPerSecond }
  metrics { asr ca mse stage1Asr stage1Ca all }
  error { code message }
  artifacts { kind format sizeBytes sha256 }"""
_DATASET_FIELDS = "id name role format status failureCode failureReason count height width channels numClasses"
_MODEL_FIELDS = "id name architecture status failureCode failureReason tensors parameters dtype"


class TrapdoorError(Exception):
    """An error the API answered with (or a transfer that failed): `code` is machine-readable."""

    def __init__(self, message: str, code: str = "ERROR", field: Optional[str] = None, status: Optional[int] = None):
        super().__init__(message)
        self.code = code
        self.field = field
        self.status = status


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Trapdoor:
    def __init__(self, endpoint: str, api_key: str, timeout: float = 60.0, retries: int = 5):
        self.endpoint = endpoint.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries

    # -- transport ---------------------------------------------------------------------------

    def graphql(self, query: str, variables: Optional[Mapping[str, Any]] = None, retry: bool = True) -> dict:
        """POST one operation; returns `data`, raises TrapdoorError on any error."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                f"{self.endpoint}/graphql",
                data=body,
                method="POST",
                headers={"content-type": "application/json", "authorization": f"Bearer {self.api_key}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read())
            except urllib.error.HTTPError as e:
                if retry and e.code in (429, 503) and attempt < self.retries:
                    time.sleep(float(e.headers.get("retry-after") or 1))
                    continue
                payload = self._error_payload(e)
            errors = payload.get("errors")
            if errors:
                first = errors[0]
                extensions = first.get("extensions") or {}
                raise TrapdoorError(first.get("message", "error"), extensions.get("code", "ERROR"), extensions.get("field"))
            return payload["data"]
        raise TrapdoorError("retries exhausted", "UNAVAILABLE")

    @staticmethod
    def _error_payload(error: urllib.error.HTTPError) -> dict:
        try:
            payload = json.loads(error.read())
        except ValueError:
            raise TrapdoorError(f"HTTP {error.code} from the API", "HTTP_ERROR", status=error.code) from None
        if not payload.get("errors"):
            raise TrapdoorError(f"HTTP {error.code} from the API", "HTTP_ERROR", status=error.code)
        return payload

    # -- datasets ------------------------------------------------------------------------------

    def upload_dataset(
        self,
        name: str,
        role: str,
        format: str,
        parts: Mapping[str, PathLike],
        options: Optional[Mapping[str, Any]] = None,
        class_names: Optional[list[str]] = None,
        wait: bool = True,
        timeout: Optional[float] = None,
    ) -> dict:
        """Upload files as one dataset (`parts`: part name → path, e.g. {"images": ..., "labels": ...}
        for NPY_PAIR, {"archive": ...} for the single-file formats) and, with `wait`, return it once
        READY (TrapdoorError with its failure code when it FAILED)."""
        files = {part: Path(path) for part, path in parts.items()}
        declared = [{"name": part, "sizeBytes": path.stat().st_size, "sha256": _sha256(path)} for part, path in files.items()]
        spec: dict[str, Any] = {"name": name, "role": role, "format": format, "parts": declared}
        if options is not None:
            spec["options"] = dict(options)
        if class_names is not None:
            spec["classNames"] = list(class_names)
        created = self.graphql(
            f"mutation($input: CreateDatasetUploadInput!) {{ createDatasetUpload(input: $input) {{ dataset {{ id }} uploads {{ part url method headers }} }} }}",
            {"input": spec},
            retry=False,
        )["createDatasetUpload"]
        for target in created["uploads"]:
            self._put(target, files[target["part"]])
        dataset_id = created["dataset"]["id"]
        self.graphql("mutation($id: ID!) { completeDatasetUpload(id: $id) { id } }", {"id": dataset_id})
        return self.wait_for_dataset(dataset_id, timeout=timeout) if wait else self.dataset(dataset_id)

    def _put(self, target: Mapping[str, Any], path: Path) -> None:
        headers = {**target["headers"], "content-length": str(path.stat().st_size)}
        with open(path, "rb") as f:
            request = urllib.request.Request(target["url"], data=f, method=target["method"], headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
            except urllib.error.HTTPError as e:
                raise TrapdoorError(f"upload of part {target['part']}: HTTP {e.code} {e.read()[:300]!r}", "UPLOAD_FAILED", status=e.code) from None

    def dataset(self, dataset_id: str) -> Optional[dict]:
        return self.graphql(f"query($id: ID!) {{ dataset(id: $id) {{ {_DATASET_FIELDS} }} }}", {"id": dataset_id})["dataset"]

    def wait_for_dataset(self, dataset_id: str, poll_seconds: float = 1.0, timeout: Optional[float] = None) -> dict:
        return self._wait_ready("dataset", self.dataset, dataset_id, poll_seconds, timeout)

    @staticmethod
    def _wait_ready(what: str, read, item_id: str, poll_seconds: float, timeout: Optional[float]) -> dict:
        """Poll `read(item_id)` until READY (returned) or FAILED (TrapdoorError with its failure code)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            item = read(item_id)
            if item is None:
                raise TrapdoorError(f"{what} {item_id} does not exist", "NOT_FOUND")
            if item["status"] == "READY":
                return item
            if item["status"] == "FAILED":
                raise TrapdoorError(item.get("failureReason") or f"the {what} FAILED", item.get("failureCode") or "FAILED")
            if deadline is not None and time.monotonic() > deadline:
                raise TrapdoorError(f"{what} {item_id} is still {item['status']}", "TIMEOUT")
            time.sleep(poll_seconds)

    # -- jobs ------------------------------------------------------------------------------------

    def launch_training(
        self,
        method: str,
        train: str,
        holdout: str,
        test: str,
        asr_test: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        **fields: Any,
    ) -> dict:
        """launchTraining. `fields` are the other LaunchTrainingInput fields as the API names them
        (architecture, target, hyperparameters, seed, resources, labels, externalId, attack). Without
        an idempotency key a fresh one is made, so a retried call cannot launch twice."""
        spec = {
            "method": method,
            "trainDatasetId": train,
            "holdoutDatasetId": holdout,
            "testDatasetId": test,
            "idempotencyKey": idempotency_key or str(uuid.uuid4()),
            **fields,
        }
        if asr_test is not None:
            spec["asrTestDatasetId"] = asr_test
        query = f"mutation($input: LaunchTrainingInput!) {{ launchTraining(input: $input) {{ {_JOB_FIELDS} }} }}"
        return self.graphql(query, {"input": spec})["launchTraining"]

    def job(self, job_id: str) -> Optional[dict]:
        return self.graphql(f"query($id: ID!) {{ job(id: $id) {{ {_JOB_FIELDS} }} }}", {"id": job_id})["job"]

    def jobs(self, labels: Optional[Mapping[str, str]] = None, external_id: Optional[str] = None, first: int = 50) -> list[dict]:
        """The newest jobs, those with every given label and/or the given external id."""
        flt: dict[str, Any] = {}
        if labels:
            flt["labels"] = dict(labels)
        if external_id is not None:
            flt["externalId"] = external_id
        query = f"query($first: Int, $filter: JobFilter) {{ jobs(first: $first, filter: $filter) {{ edges {{ node {{ {_JOB_FIELDS} }} }} }} }}"
        return [edge["node"] for edge in self.graphql(query, {"first": first, "filter": flt or None})["jobs"]["edges"]]

    def wait_for_job(self, job_id: str, poll_seconds: float = 2.0, timeout: Optional[float] = None) -> dict:
        """Poll until the job is SUCCEEDED, FAILED or CANCELLED and return it (never raises for a job
        that failed: look at `status` and `error`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job is None:
                raise TrapdoorError(f"job {job_id} does not exist", "NOT_FOUND")
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TrapdoorError(f"job {job_id} is still {job['status']}", "TIMEOUT")
            time.sleep(poll_seconds)

    def download(self, job_id: str, path: PathLike, format: str = "onnx", kind: Optional[str] = None) -> Path:
        """Download a job's artifact (by format: onnx, safetensors, tar, npy; or by kind) to `path`
        and check its sha256."""
        job = self.graphql(
            "query($id: ID!) { job(id: $id) { status artifacts { kind format sha256 downloadUrl } } }", {"id": job_id}
        )["job"]
        if job is None:
            raise TrapdoorError(f"job {job_id} does not exist", "NOT_FOUND")
        found = [a for a in job["artifacts"] if (a["kind"] == kind if kind else a["format"] == format)]
        if not found:
            raise TrapdoorError(f"job {job_id} is {job['status']} and has no {kind or format} artifact", "FAILED_PRECONDITION")
        return self._fetch(found[0]["downloadUrl"], Path(path), found[0]["sha256"])

    def _fetch(self, url: str, out: Path, sha256: Optional[str] = None) -> Path:
        """GET `url` into `out` (through a .part file), checking `sha256` when given."""
        partial = out.with_name(out.name + ".part")
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=self.timeout) as response, open(partial, "wb") as f:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                f.write(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            partial.unlink()
            raise TrapdoorError(f"{out.name}: sha256 mismatch after download", "CORRUPT_DOWNLOAD")
        partial.replace(out)
        return out

    # -- models brought by their users ---------------------------------------------------------

    def upload_model(
        self,
        path: PathLike,
        name: str,
        architecture: str,
        input_shape: tuple,
        num_classes: int,
        dtype: str = "FLOAT32",
        preprocessing: Optional[Mapping[str, list]] = None,
        wait: bool = True,
        **fields: Any,
    ) -> dict:
        """Upload a safetensors file of a catalog architecture (`input_shape` = (height, width,
        channels); `preprocessing` = {"mean": [...], "std": [...]} when it was trained on normalised
        input). With `wait`, returned READY once a worker has checked it (TrapdoorError with its
        failure code, e.g. MODEL_MISMATCH naming the tensors, when it FAILED)."""
        file = Path(path)
        height, width, channels = input_shape
        spec: dict[str, Any] = {
            "name": name, "architecture": architecture, "inputShape": {"height": height, "width": width, "channels": channels},
            "numClasses": num_classes, "dtype": dtype, "sizeBytes": file.stat().st_size, "sha256": _sha256(file), **fields,
        }
        if preprocessing is not None:
            spec["preprocessing"] = dict(preprocessing)
        created = self.graphql(
            "mutation($input: CreateModelUploadInput!) { createModelUpload(input: $input) { model { id } upload { part url method headers } } }",
            {"input": spec},
            retry=False,
        )["createModelUpload"]
        self._put(created["upload"], file)
        model_id = created["model"]["id"]
        self.graphql("mutation($id: ID!) { completeModelUpload(id: $id) { id } }", {"id": model_id})
        return self.wait_for_model(model_id) if wait else self.model(model_id)

    def model(self, model_id: str) -> Optional[dict]:
        return self.graphql(f"query($id: ID!) {{ model(id: $id) {{ {_MODEL_FIELDS} }} }}", {"id": model_id})["model"]

    def wait_for_model(self, model_id: str, poll_seconds: float = 1.0, timeout: Optional[float] = None) -> dict:
        return self._wait_ready("model", self.model, model_id, poll_seconds, timeout)

    def evaluate_model(self, test: str, model: Optional[str] = None, init_job: Optional[str] = None, asr_test: Optional[str] = None,
                       target: Optional[int] = None, idempotency_key: Optional[str] = None, **fields: Any) -> dict:
        """evaluateModel: an EVALUATE job of an uploaded model (or an earlier job's, `init_job`) on a
        TEST set; its metrics hold ca, asr and all.perClassAccuracy once it SUCCEEDED."""
        spec = {"testDatasetId": test, "idempotencyKey": idempotency_key or str(uuid.uuid4()), **fields}
        for key, value in (("modelId", model), ("initJobId", init_job), ("asrTestDatasetId", asr_test), ("target", target)):
            if value is not None:
                spec[key] = value
        query = f"mutation($input: EvaluateModelInput!) {{ evaluateModel(input: $input) {{ {_JOB_FIELDS} }} }}"
        return self.graphql(query, {"input": spec})["evaluateModel"]

    # -- health, scans and sanitized datasets -----------------------------------------------------

    def scan_dataset(self, dataset: str, holdout: str, budget: str = "FAST", idempotency_key: Optional[str] = None, **fields: Any) -> dict:
        """scanDataset: a SCAN job (the health report without a defended model). `fields` are the
        other ScanDatasetInput fields (architecture, hyperparameters, seed, resources, labels,
        externalId). Wait for it with wait_for_job, read it with health."""
        spec = {"datasetId": dataset, "holdoutDatasetId": holdout, "budget": budget, "idempotencyKey": idempotency_key or str(uuid.uuid4()), **fields}
        query = f"mutation($input: ScanDatasetInput!) {{ scanDataset(input: $input) {{ {_JOB_FIELDS} }} }}"
        return self.graphql(query, {"input": spec})["scanDataset"]

    def health(self, job_id: str, suspicious: int = 20) -> Optional[dict]:
        """A job's health report (None when it has none): verdict, likelyTarget, evidence,
        sampleCount, calibration (the verdict's error rates out of sample; None where not measured)
        and the `suspicious` most suspicious samples (rank, index, score, label, thumbnailUrl),
        read page by page."""
        rate = "{ rate count of }"
        rates = f"{{ cells falsePositiveRate {rate} cleanCalledClean {rate} falseNegativeRate {rate} poisonedCalledClean {rate} likelyTargetAccuracy {rate} }}"
        calibration = f"calibration {{ dataset appliesTo thresholds fitOn fitErrors source outOfSample {rates} outOfSampleAtLeast5Percent {rates} groups {{ name rates {rates} }} }}"
        query = """query($id: ID!, $first: Int, $after: String) { job(id: $id) { health { verdict likelyTarget evidence sampleCount CALIBRATION
          suspicious(first: $first, after: $after) { edges { node { rank index score label thumbnailUrl } } pageInfo { hasNextPage endCursor } } } } }""".replace(
            "CALIBRATION", calibration
        )
        report, samples, after = None, [], None
        while True:
            job = self.graphql(query, {"id": job_id, "first": min(100, max(1, suspicious - len(samples))), "after": after})["job"]
            if job is None:
                raise TrapdoorError(f"job {job_id} does not exist", "NOT_FOUND")
            if job["health"] is None:
                return None
            report, page = job["health"], job["health"]["suspicious"]
            samples += [edge["node"] for edge in page["edges"]]
            if len(samples) >= suspicious or not page["pageInfo"]["hasNextPage"]:
                return {**report, "suspicious": samples[:suspicious]}
            after = page["pageInfo"]["endCursor"]

    def sanitize_dataset(self, from_job: str, name: Optional[str] = None, wait: bool = True, **policy: Any) -> dict:
        """sanitizeDataset: a new TRAIN dataset without the samples the job's health report flags.
        `policy`: exactly one of dropTopFraction=, minScore=, indices=. With `wait`, returned READY."""
        spec: dict[str, Any] = {"fromJobId": from_job, "policy": policy}
        if name is not None:
            spec["name"] = name
        created = self.graphql("mutation($input: SanitizeDatasetInput!) { sanitizeDataset(input: $input) { id } }", {"input": spec}, retry=False)
        dataset_id = created["sanitizeDataset"]["id"]
        return self.wait_for_dataset(dataset_id) if wait else self.dataset(dataset_id)

    def download_dataset(self, dataset_id: str, path: PathLike, format: str = "NPZ", part: Optional[str] = None) -> Path:
        """Download a READY dataset's arrays: NPZ (one file) or NPY_PAIR with part images or labels."""
        query = "query($id: ID!, $format: DatasetDownloadFormat!, $part: String) { dataset(id: $id) { downloadUrl(format: $format, part: $part) } }"
        dataset = self.graphql(query, {"id": dataset_id, "format": format, "part": part})["dataset"]
        if dataset is None:
            raise TrapdoorError(f"dataset {dataset_id} does not exist", "NOT_FOUND")
        return self._fetch(dataset["downloadUrl"], Path(path))
