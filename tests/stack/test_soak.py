"""The chaos soak (deploy/soak.py, `make soak`) in short: 4 minutes at 100 events/s with every
kind of fault at least once, then all of its checks."""
from __future__ import annotations

import json
import subprocess
import sys

from contract.settings import PROJECT_ROOT

FAULTS = {"worker_kill", "broker_kill", "triton_stop", "triton_slow", "redis_kill", "malformed_burst", "erasure"}


def test_a_short_chaos_soak_loses_nothing_explains_every_duplicate_and_leaves_feast_exact(tmp_path):
    run = subprocess.run([sys.executable, "deploy/soak.py", "--minutes", "4", "--rate", "100", "--mean-gap", "5",
                          "--seed", "1", "--out", str(tmp_path)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200)
    summary = json.loads(run.stdout.splitlines()[-1])
    print(json.dumps(summary, indent=1))
    assert FAULTS <= set(summary["faults"]) <= FAULTS | {"found_dead"}, summary["faults"]
    assert summary["client"]["lost"] == 0
    assert not summary["unexplained_duplicates"]
    assert summary["feast_mismatches"] == 0, summary["feast_examples"]
    assert summary["erased_sessions"] >= 1 and summary["malformed_dead_lettered_right"] == summary["malformed_sent"]
    assert not summary["fault_errors"]
    assert summary["passed"] and run.returncode == 0
    assert (tmp_path / "soak.png").stat().st_size > 0
