# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1
# Subset of services for up/down, e.g. `make up SERVICES="kafka redis"`; empty = all.
SERVICES ?=

.PHONY: setup up down train demo test test-unit test-stack bench report clean

setup:            ## idempotent: apt packages, venvs, pip deps, Maven jars, Triton
	bash deploy/setup.sh

up: setup         ## start Kafka, Redis, Triton, Prometheus, the worker; wait for health
	bash deploy/up.sh $(SERVICES)

down:             ## stop everything started by `make up` (`make down WIPE=1` also deletes .run)
	bash deploy/down.sh $(SERVICES) $(if $(WIPE),--wipe)
