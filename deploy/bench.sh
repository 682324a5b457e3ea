#!/usr/bin/env bash
# `make bench`: training throughput, explanation faithfulness and cost, and streaming throughput and
# latency through the real stack. Prints JSON lines and one summary line; nothing is asserted.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
load_settings
EVENTS=${BENCH_EVENTS:-3000}
RATE=${BENCH_RATE:-50}  # events/s for the latency run
MODEL_DIR=${MODEL_DIR:-$RUN_DIR/model}

"$PY" -m serving.offline.bench_train
[[ -f $MODEL_DIR/weights.pt ]] || make train
"$PY" -m serving.offline.faithfulness --model "$MODEL_DIR" --format synthetic --n 1000

bash deploy/up.sh
# replay NAME N [produce options]: N synthetic events under a fresh session prefix, then the
# summary line of their recommendations.
replay() {
    local tag=$1$(date +%s) n=$2
    shift 2
    "$PY" -m stream.produce --source synthetic --sessions 1000 --limit "$n" --session-prefix "$tag-" "$@"
    "$PY" -m stream.tail --from-beginning --session-prefix "$tag-" --show 1 --max "$n" --timeout-s 120 | tail -n 2
}
# Capacity: a burst far above it, so the worker always has a full batch waiting.
replay burst "$EVENTS" --data-seed 0
# Latency: a steady rate below capacity, so the figure is service time rather than queueing.
replay steady $((RATE * 30)) --data-seed 1 --rate "$RATE"
