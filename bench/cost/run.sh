#!/usr/bin/env bash
# The cost curves (bench/RESULTS.md, "How cost grows"): trainer time vs dataset size, API p99 vs
# concurrency, ingest memory vs archive size, queue throughput vs workers; then the PNGs.
# About 20 minutes on 2 cores; not part of `make test`. Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${TRAPDOOR_PYTHON:-$(scripts/find-python.sh)}
OUT=bench/out/cost
mkdir -p "$OUT"
"$PYTHON" bench/cost/trainer.py --out "$OUT"
node --import tsx bench/api/latency.ts --sweep 1,2,5,10,20,50,100,200 --duration 5 --json "$OUT/api.json"
node --import tsx bench/api/ingest.ts --sizes 64,128,256,512,1024 --formats CLASS_FOLDERS,GTSRB,NPY_PAIR --json "$OUT/ingest.json"
TRAPDOOR_PYTHON="$PYTHON" node --import tsx bench/cost/queue.ts --out "$OUT"
"$PYTHON" bench/cost/plot.py --data "$OUT"
