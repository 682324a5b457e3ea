# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup up down train demo test test-unit test-stack bench report clean

setup:            ## idempotent: apt packages, venvs, pip deps, Maven jars, Triton
	bash deploy/setup.sh

up: setup         ## start Kafka, Redis, Triton, Prometheus, the worker; wait for health
	bash deploy/up.sh

down:             ## stop everything started by `make up`
	bash deploy/down.sh
