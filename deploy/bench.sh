#!/usr/bin/env bash
# `make bench`: training throughput, explanation faithfulness and cost, the two floors (the model
# in-process, Kafka's own round trip) and a rate sweep through the real stack, timed by an outside
# client (tools/bench_client.py). Writes reports/bench-<time>.jsonl, a table and a PNG; asserts nothing.
#
#   BENCH_RATES="100 200 500 1000 2000"  steady rates (events/s), each for BENCH_SECONDS (30)
#   BENCH_BURST=10000                     events of the burst run (capacity)
#   BENCH_STORES="redis sqlite"           Feast online stores to sweep (the worker restarts for each)
#   BENCH_QUICK=1                         skip training and faithfulness (the streaming part only)
#   BENCH_DRAIN=30000                     events of the drain run (the worker stopped, a backlog written,
#                                         the worker started: deploy/drain.py); 0 skips it
#   BENCH_CLIENT=confluent                the outside client's Kafka library: confluent (librdkafka, the
#                                         default when installed) or kafka (kafka-python, pure Python)
#   BENCH_SESSION_LENGTHS=../shared/data/diginetica/train-item-views.sample.csv
#                                         sessions as long as real shoppers' (4.1 views on average), drawn
#                                         from this views file when it exists; the drain also runs once with
#                                         sessions that last the whole run (every event at the model's max_len)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
load_settings
RATES=${BENCH_RATES:-100 200 500 1000 2000}
SECONDS_PER_RATE=${BENCH_SECONDS:-30}
BURST=${BENCH_BURST:-10000}
DRAIN=${BENCH_DRAIN:-30000}
CLIENT=${BENCH_CLIENT:-confluent}
if [[ $CLIENT == confluent ]] && ! "$PY" -c 'import confluent_kafka' 2>/dev/null; then
    log "confluent-kafka is not installed (\`make setup\` after \`make lock\` installs it): the client is kafka-python"
    CLIENT=kafka
fi
STORES=${BENCH_STORES:-redis sqlite}
SESSION_LENGTHS=${BENCH_SESSION_LENGTHS:-$ROOT/../shared/data/diginetica/train-item-views.sample.csv}
SHAPE=()
if [[ -f $SESSION_LENGTHS ]]; then
    SHAPE=(--session-lengths "$SESSION_LENGTHS")
else
    log "$SESSION_LENGTHS not found: every session lasts the whole run (long histories, more model work per event)"
fi
MODEL_DIR=${MODEL_DIR:-$RUN_DIR/model}
OUT=${BENCH_OUT:-reports/bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$(dirname "$OUT")"

if [[ -z ${BENCH_QUICK:-} ]]; then
    "$PY" -m serving.offline.bench_train
    [[ -f $MODEL_DIR/weights.pt ]] || make train
    "$PY" -m serving.offline.faithfulness --model "$MODEL_DIR" --format synthetic --n 1000
fi

bash deploy/up.sh kafka redis prometheus triton
served=$(ls -d "$MODEL_REPO/$MODEL_NAME"/[0-9]* | sort -V | tail -1)
log "compute floor: $served in-process, one thread"
"$PY" -m serving.offline.bench_compute --model "$served" --batch-sizes 8,64,256 --methods none,prefix --seconds 3 \
    "${SHAPE[@]}" | tee -a "$OUT.jsonl"
log "transport floor: Kafka round trip"
"$PY" -m tools.bench_client --client "$CLIENT" --echo --rate 200 --seconds 10 | tee -a "$OUT.jsonl"

for store in $STORES; do
    bash deploy/down.sh worker
    RECO_ONLINE_STORE=$store bash deploy/up.sh worker
    "$PY" -m tools.bench_client --client "$CLIENT" --rate 100 --seconds 5 >/dev/null  # warm the worker's state and Triton
    for rate in $RATES; do
        log "$store: $rate events/s for ${SECONDS_PER_RATE}s"
        "$PY" -m tools.bench_client --client "$CLIENT" "${SHAPE[@]}" --rate "$rate" --seconds "$SECONDS_PER_RATE" \
            | "$PY" -c "import json,sys; d=json.load(sys.stdin); d['store']='$store'; print(json.dumps(d))" \
            | tee -a "$OUT.jsonl"
    done
    log "$store: burst of $BURST events"
    "$PY" -m tools.bench_client --client "$CLIENT" "${SHAPE[@]}" --rate 0 --events "$BURST" \
        | "$PY" -c "import json,sys; d=json.load(sys.stdin); d['store']='$store'; print(json.dumps(d))" \
        | tee -a "$OUT.jsonl"
done
bash deploy/down.sh worker
bash deploy/up.sh worker  # back to the configured store
if (( DRAIN > 0 )); then
    log "drain: $DRAIN events written while the worker is stopped, then drained"
    "$PY" deploy/drain.py --client "$CLIENT" "${SHAPE[@]}" --events "$DRAIN" | tee -a "$OUT.jsonl"
    if (( ${#SHAPE[@]} )); then
        log "drain: the same with sessions that last the whole run (every event at the model's max_len)"
        "$PY" deploy/drain.py --client "$CLIENT" --events "$DRAIN" | tee -a "$OUT.jsonl"
    fi
fi
"$PY" deploy/bench_report.py "$OUT.jsonl" --png "$OUT.png" | tee "$OUT.md"
