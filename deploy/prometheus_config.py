"""Render the local stack's Prometheus config and its worker targets into the run directory.

deploy/prometheus/prometheus.yml is the template. Prometheus resolves file_sd and rule file paths
against the config file's directory, and the run directory moves with RECO_RUN_DIR, so deploy/up.sh
renders a copy into <run dir>/prometheus-config/: rule files made absolute (they stay in
deploy/prometheus/), Triton's metrics port from the settings, and workers.json beside it (file_sd,
re-read by Prometheus within seconds of a change): one target per worker, labelled worker=worker-i.

    .venv/bin/python deploy/prometheus_config.py [--out DIR] [--worker worker-1=127.0.0.1:9108 ...]

Without --worker only the config is rendered and an existing workers.json is left as it is.
Both files are replaced atomically (write, then rename).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contract.settings import get_settings  # noqa: E402

TEMPLATE = Path(__file__).resolve().parent / "prometheus" / "prometheus.yml"
CONFIG_FILE = "prometheus.yml"
TARGETS_FILE = "workers.json"  # the name the template's file_sd_configs reads


def render_config(template: Path = TEMPLATE, triton_metrics_port: int | None = None) -> dict:
    """The template with its rule files made absolute and, when given, Triton's metrics port."""
    cfg = yaml.safe_load(template.read_text())
    base = template.resolve().parent
    cfg["rule_files"] = [str(base / f) for f in cfg.get("rule_files") or []]  # an absolute f stays f
    if triton_metrics_port is not None:
        for job in cfg["scrape_configs"]:
            if job["job_name"] == "triton":
                job["static_configs"] = [{"targets": [f"127.0.0.1:{triton_metrics_port}"]}]
    return cfg


def worker_targets(workers: list[tuple[str, str]]) -> list[dict]:
    """file_sd target groups: one per (worker name, host:port), the name as label `worker`."""
    return [{"targets": [address], "labels": {"worker": name}} for name, address in workers]


def parse_worker(spec: str) -> tuple[str, str]:
    name, sep, address = spec.partition("=")
    if not (sep and name and address.rpartition(":")[2].isdigit()):
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {spec!r}")
    return name, address


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # a name the file_sd pattern does not match
    tmp.write_text(text)
    os.replace(tmp, path)


def write_files(out: Path, config: dict, workers: list[tuple[str, str]] | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    header = f"# Rendered by deploy/prometheus_config.py (deploy/up.sh) from {TEMPLATE}: edit that, not this.\n"
    write_atomic(out / CONFIG_FILE, header + yaml.safe_dump(config, sort_keys=False))
    if workers is not None:
        write_atomic(out / TARGETS_FILE, json.dumps(worker_targets(workers), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: <RECO_RUN_DIR>/prometheus-config")
    parser.add_argument("--worker", type=parse_worker, action="append", metavar="NAME=HOST:PORT",
                        help="a worker target (repeat per worker); writes workers.json")
    args = parser.parse_args(argv)
    settings = get_settings()
    out = args.out or settings.run_dir / "prometheus-config"
    write_files(out, render_config(triton_metrics_port=settings.triton_metrics_port), args.worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
