#!/usr/bin/env bash
# The README walkthrough as one script: Fashion-MNIST in, poisoned, defended with T&R (and the
# no-defense reference), model out. Needs a running `trapdoor start` (make run) and its API key:
#   TRAPDOOR_KEY=td_... scripts/walkthrough.sh
set -euo pipefail
API=${TRAPDOOR_URL:-http://127.0.0.1:4000}
KEY=${TRAPDOOR_KEY:?set TRAPDOOR_KEY to the key \`make run\` printed}
TRAIN_IMAGES=${TRAIN_IMAGES:-12000}   # of the 60 000, to keep CPU runs short
EPOCHS=${EPOCHS:-2}
FMNIST=/usr/share/datasets/fashion-mnist
WORK=$(mktemp -d)
PY=$(scripts/find-python.sh)
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {'d': d}))" "$1"; }

gql() { # gql QUERY [VARIABLES_JSON]
  local body
  body=$("$PY" -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "variables": json.loads(sys.argv[2])}))' "$1" "${2:-{\}}")
  curl -sf "$API/graphql" -H "authorization: Bearer $KEY" -H 'content-type: application/json' --data "$body"
}

part() { # part NAME FILE -> JSON for UploadPartInput
  echo "{\"name\": \"$1\", \"sizeBytes\": $(stat -c %s "$2"), \"sha256\": \"$(sha256sum "$2" | cut -d' ' -f1)\"}"
}

upload() { # upload NAME ROLE FORMAT IMAGES LABELS -> dataset id (READY)
  local name=$1 role=$2 format=$3 images=$4 labels=$5 created id
  created=$(gql 'mutation($i: CreateDatasetUploadInput!) { createDatasetUpload(input: $i) { dataset { id } uploads { part url headers } } }' \
    "{\"i\": {\"name\": \"$name\", \"role\": \"$role\", \"format\": \"$format\", \"parts\": [$(part images "$images"), $(part labels "$labels")]}}")
  id=$(echo "$created" | json "d['data']['createDatasetUpload']['dataset']['id']")
  for p in images labels; do
    local url file
    url=$(echo "$created" | json "[u for u in d['data']['createDatasetUpload']['uploads'] if u['part'] == '$p'][0]['url']")
    file=$images; [ "$p" = labels ] && file=$labels
    curl -sf -X PUT --data-binary "@$file" -H 'content-type: application/octet-stream' "$url" > /dev/null
  done
  gql 'mutation($id: ID!) { completeDatasetUpload(id: $id) { status } }' "{\"id\": \"$id\"}" > /dev/null
  wait_dataset "$id"
  echo "$id"
}

wait_dataset() {
  local status
  while :; do
    status=$(gql 'query($id: ID!) { dataset(id: $id) { status failureReason } }' "{\"id\": \"$1\"}" | json "d['data']['dataset']['status']")
    case $status in READY) return 0 ;; FAILED) echo "dataset $1 FAILED" >&2; exit 1 ;; esac
    sleep 1
  done
}

echo "1. split the Fashion-MNIST training file: first $TRAIN_IMAGES images, last 5 % of them as the clean holdout" >&2
"$PY" - "$FMNIST" "$WORK" "$TRAIN_IMAGES" <<'PYEOF'
import sys, gzip, numpy as np
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)
x, y = idx(f"{src}/train-images-idx3-ubyte.gz")[:n], idx(f"{src}/train-labels-idx1-ubyte.gz")[:n].astype(np.int64)
k = n - n // 20
np.save(f"{out}/train_x.npy", x[:k]); np.save(f"{out}/train_y.npy", y[:k])
np.save(f"{out}/holdout_x.npy", x[k:]); np.save(f"{out}/holdout_y.npy", y[k:])
PYEOF

echo "2. upload: train and holdout as NPY pairs, the test set as the original IDX files" >&2
TRAIN=$(upload fmnist-train TRAIN NPY_PAIR "$WORK/train_x.npy" "$WORK/train_y.npy")
HOLDOUT=$(upload fmnist-holdout HOLDOUT NPY_PAIR "$WORK/holdout_x.npy" "$WORK/holdout_y.npy")
TEST=$(upload fmnist-test TEST IDX "$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz")

echo "3. poison 10 % of the training set with BadNet-Grid (target 0) and build the matching ASR test set" >&2
POISONED=$(gql 'mutation($i: PoisonDatasetInput!) { poisonDataset(input: $i) { dataset { id } asrTestDataset { id } } }' \
  "{\"i\": {\"sourceId\": \"$TRAIN\", \"testDatasetId\": \"$TEST\", \"attack\": {\"name\": \"badnet_grid\", \"target\": 0, \"ratio\": 0.1}}}")
PTRAIN=$(echo "$POISONED" | json "d['data']['poisonDataset']['dataset']['id']")
ASR=$(echo "$POISONED" | json "d['data']['poisonDataset']['asrTestDataset']['id']")
wait_dataset "$PTRAIN"; wait_dataset "$ASR"

echo "4. launch no defense and T&R ($EPOCHS epochs each; WRN-16-1)" >&2
launch() {
  gql 'mutation($i: LaunchTrainingInput!) { launchTraining(input: $i) { id status } }' \
    "{\"i\": {\"method\": \"$1\", \"trainDatasetId\": \"$PTRAIN\", \"holdoutDatasetId\": \"$HOLDOUT\", \"testDatasetId\": \"$TEST\", \"asrTestDatasetId\": \"$ASR\", \"target\": 0, \"hyperparameters\": $2, \"idempotencyKey\": \"walkthrough-$1-$(date +%s)\"}}" |
    json "d['data']['launchTraining']['id']"
}
NONE=$(launch NO_DEFENSE "{\"epochs\": $EPOCHS}")
TNR=$(launch TRAP_AND_REPLACE "{\"stage1Epochs\": $EPOCHS, \"stage2Epochs\": $EPOCHS}")

echo "5. poll until both finish" >&2
for job in "$NONE" "$TNR"; do
  while :; do
    state=$(gql 'query($id: ID!) { job(id: $id) { method status progress { stage epoch epochs fraction } metrics { asr ca mse } error { message } } }' "{\"id\": \"$job\"}")
    status=$(echo "$state" | json "d['data']['job']['status']")
    echo "   $(echo "$state" | json "d['data']['job']['method']") $status $(echo "$state" | json "d['data']['job']['progress']")" >&2
    case $status in SUCCEEDED) echo "$state" | json "d['data']['job']['metrics']"; break ;; FAILED|CANCELLED) echo "$state" >&2; exit 1 ;; esac
    sleep 10
  done
done

echo "6. download the defended model (ONNX)" >&2
URL=$(gql 'query($id: ID!) { job(id: $id) { artifacts { kind downloadUrl } } }' "{\"id\": \"$TNR\"}" | json "[a for a in d['data']['job']['artifacts'] if a['kind'] == 'onnx'][0]['downloadUrl']")
curl -sf -o defended.onnx "$URL"
echo "saved defended.onnx ($(stat -c %s defended.onnx) bytes)" >&2
rm -rf "$WORK"
