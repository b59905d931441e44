"""Draw the cost curves from bench/cost's JSON files into bench/cost-curves/*.png (matplotlib:
`make deps-plots`). Each figure is skipped when its JSON is missing.

    python bench/cost/plot.py [--data bench/out/cost] [--out bench/cost-curves]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def load(data: Path, name: str):
    path = data / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def save(fig, out: Path, name: str) -> None:
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)
    plt.close(fig)
    print(f"wrote {out / name}.png")


def trainer(rows, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, label in (("NO_DEFENSE", "no defense, 1 epoch"), ("TRAP_AND_REPLACE", "T&R default, 1 + 1 epochs (isolation included)")):
        points = sorted((r["images"], r["wallSeconds"]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="training images (Fashion-MNIST)", ylabel="wall seconds per run", title="Trainer time vs dataset size (WRN-16-1, CPU)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out, "trainer-time")


def api(points, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p["connections"] for p in points]
    ax.plot(xs, [p["p99"] for p in points], marker="o", label="p99")
    ax.plot(xs, [p["p50"] for p in points], marker="o", label="p50")
    ax.set(xscale="log", xlabel="concurrent connections (closed loop)", ylabel="latency ms", title="API job(id) latency vs concurrency")
    ax.grid(True, which="both", alpha=0.3)
    twin = ax.twinx()
    twin.plot(xs, [p["rps"] for p in points], color="grey", linestyle="--", label="req/s")
    twin.set_ylabel("requests/s")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    save(fig, out, "api-latency")


def ingest(rows, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for fmt in sorted({r["format"] for r in rows}):
        points = sorted((r["inputBytes"] / 1e6, r["peakGrowthMiB"]) for r in rows if r["format"] == fmt)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=fmt)
    ax.set(xscale="log", xlabel="upload size (MB)", ylabel="peak RSS growth (MiB)", title="Ingest memory vs archive size")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out, "ingest-memory")


def queue(rows, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["workers"] for r in rows], [r["jobsPerMinute"] for r in rows], marker="o")
    ax.set(xlabel="worker processes", ylabel="tiny jobs per minute", title="Queue throughput vs workers (2 cores)")
    ax.set_xticks([r["workers"] for r in rows])
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    save(fig, out, "queue-throughput")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=REPO / "bench" / "out" / "cost")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "cost-curves")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in (("trainer", trainer), ("api", api), ("ingest", ingest), ("queue", queue)):
        rows = load(args.data, name)
        if rows:
            draw(rows, args.out)


if __name__ == "__main__":
    main()
