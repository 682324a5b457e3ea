#!/usr/bin/env bash
# `make test`: every test in one pytest run, the live ones against the real stack with Feast on
# Redis. Trains a short seeded model first when model_repo serves none of the synthetic catalogue;
# stops the stack at the end.
# WORKERS=N (default 1) runs the stack with N workers in one consumer group (deploy/up.sh).
# KAFKA_BROKERS (default 3, the production shape; `make up` defaults to 1) brokers: every stack test
# runs against a replicated cluster, and tests/stack/test_faults.py kills and restarts its brokers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
export RECO_ONLINE_STORE=redis
# The tests assert "no fallback" while Kafka, Redis, Triton, the worker, pytest and (test_learning) a
# retrain share two cores; at the served 1 s a busy moment could fire Triton's timeout. 10 s cannot
# fire on this hardware, so a fallback in a test is a real failure. The Triton-outage test still
# sees fallbacks: a stopped server refuses at once.
export RECO_TRITON_TIMEOUT_S=${RECO_TRITON_TIMEOUT_S:-10}
export KAFKA_BROKERS=${KAFKA_BROKERS:-3}
load_settings  # exports RECO_KAFKA_BROKERS and, for several brokers, RECO_BOOTSTRAP_SERVERS to the tests
bash deploy/setup_k8s_tools.sh  # helm, kubeconform and schemas: only tests/deploy/test_cluster_manifests.py uses them
# Lint gate first (ruff + mypy, `make lint`): a finding fails `make test` before any service starts.
make --no-print-directory lint

# The tests replay the synthetic catalogue: a model of it must be the one served (not, say, the one
# `make demo DATA=diginetica` trained).
if ! "$PY" -m serving.online.export serves synthetic; then
    "$PY" -m serving.offline.train --format synthetic --sessions 5000 --data-seed 0 --seed 0 --epochs 3 --refit-epochs 1 --no-progress \
        --out "$RUN_DIR/test-model"
    "$PY" -m serving.online.export publish "$RUN_DIR/test-model" --repo model_repo
fi
trap 'bash deploy/down.sh' EXIT
export WORKERS=${WORKERS:-1}
bash deploy/down.sh worker  # every worker: one left by `make demo` may use the SQLite store
# `make demo` leaves one broker running: the stack of the other shape gives way (each keeps its data).
if [[ -n $(other_shape_brokers) ]]; then bash deploy/down.sh kafka; fi
bash deploy/up.sh
"$PY" -m pytest -p no:cacheprovider -ra --durations=25 "$@"
