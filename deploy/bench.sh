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

"$PY" -m serving.bench_train
[[ -f $MODEL_DIR/weights.pt ]] || make train
"$PY" -m serving.faithfulness --model "$MODEL_DIR" --format synthetic --n 1000

bash deploy/up.sh
# Capacity: a burst far above it, so the worker always has a full batch waiting.
tag=burst$(date +%s)
"$PY" -m stream.produce --source synthetic --sessions 1000 --data-seed 0 --limit "$EVENTS" --session-prefix "$tag-"
"$PY" -m stream.tail --from-beginning --session-prefix "$tag-" --show 1 --max "$EVENTS" --timeout-s 120 | tail -n 2
# Latency: a steady rate below capacity, so the figure is service time rather than queueing.
tag=steady$(date +%s)
"$PY" -m stream.produce --source synthetic --sessions 1000 --data-seed 1 --limit $((RATE * 30)) --rate "$RATE" \
    --session-prefix "$tag-"
"$PY" -m stream.tail --from-beginning --session-prefix "$tag-" --show 1 --max $((RATE * 30)) --timeout-s 120 | tail -n 2
