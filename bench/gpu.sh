#!/usr/bin/env bash
# The one GPU check: trainer tests on torch 2.x, stage-1 throughput on CUDA, and the Fashion-MNIST
# table at full size. Results land in $OUT (default bench/out/gpu); merge them into bench/RESULTS.md.
# Fashion-MNIST comes from $FMNIST_DIR (default: the Debian package path).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
PY=$(scripts/find-python.sh) || exit 1
export PYTHONPATH="$PWD/trainer"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
# PARTS picks what runs (a device call has 10 minutes): tests, throughput, levers, fmnist, and
# efficacy (the efficacy study's full-size table: PARTS=efficacy on a call of its own).
PARTS=${PARTS:-tests,throughput,levers,fmnist}
part() { [[ ",$PARTS," == *",$1,"* ]]; }
part tests && { (cd trainer && timeout 150 "$PY" -m pytest -q -p no:cacheprovider 2>&1 | tail -15) > "$OUT/pytest.txt"; tail -3 "$OUT/pytest.txt"; }
part throughput && timeout 120 "$PY" bench/throughput/run.py --device cuda --steps 40 --json-out "$OUT/throughput.json" 2>&1 | tail -8
# The launch-bound step's levers (PyTorch 2.x): torch.compile with CUDA graphs, and a 4x batch.
# Ours only (the reference loop does not change). Compilation itself takes a minute or two.
part levers && for variant in "reduce-overhead 256" "reduce-overhead 1024" " 1024"; do
  set -- $variant
  mode=${2:+$1}; batch=${2:-$1}
  TRAPDOOR_COMPILE=$mode timeout 150 "$PY" bench/throughput/run.py --device cuda --steps 40 --batch "$batch" --no-reference --no-record \
    --json-out "$OUT/throughput-${mode:-eager}-$batch.json" 2>&1 | tail -3
done
part fmnist && timeout "${FMNIST_SECONDS:-330}" "$PY" bench/fmnist/run.py --preset gpu --data-dir "${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}" --out /tmp/fmnist 2>&1 | tail -40 > "$OUT/fmnist.txt"
part fmnist && tail -12 "$OUT/fmnist.txt"
cp /tmp/fmnist/gpu/results.json "$OUT/fmnist-results.json" 2>/dev/null
cp bench/RESULTS.md "$OUT/RESULTS.md"
# The efficacy study at full size (57 000 / 3 000 / 10 000 images): three development and two
# held-out attacks, no defense and today's default, one cell after another in bench/out (run.py
# resumes a cell from its checkpoint, so a second call on the same machine carries on where the
# time ran out). Finished cells are copied out after every attempt: commit them under
# bench/efficacy/cells/gpu/ and render with `python3 bench/efficacy/committed.py --profile gpu`.
if part efficacy; then
  timeout "${EFFICACY_SECONDS:-540}" "$PY" bench/efficacy/run.py --profile "${EFFICACY_PROFILE:-gpu}" --no-render \
    --attacks "${EFFICACY_ATTACKS:-blend,badnet_grid,sig,l2_invisible,trojan_wm}" --configs none,default \
    --data-dir "${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}" 2>&1 | grep -v '^{' | tail -20 > "$OUT/efficacy.txt"
  tail -12 "$OUT/efficacy.txt"
  mkdir -p "$OUT/efficacy-cells"
  cp bench/out/efficacy/"${EFFICACY_PROFILE:-gpu}"/cells/*.json "$OUT/efficacy-cells/" 2>/dev/null
  ls "$OUT/efficacy-cells" | wc -l
fi
