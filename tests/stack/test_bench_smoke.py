"""A short run of the bench's outside client and report on the real stack: the tools work and
nothing is lost. Speed is measured by `make bench`, never asserted here."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.stack


def test_bench_client_and_report_run_end_to_end(tmp_path):
    run = subprocess.run([sys.executable, "-m", "tools.bench_client", "--rate", "100", "--seconds", "5"],
                         check=True, capture_output=True, text=True, timeout=120)
    result = json.loads(run.stdout)
    assert result["sent"] == 500 and result["lost"] == 0 and result["p50_ms"] is not None
    assert result["cpu_s"]["worker"] > 0 and result["lag_samples"], result
    echo = subprocess.run([sys.executable, "-m", "tools.bench_client", "--echo", "--rate", "100", "--seconds", "2"],
                          check=True, capture_output=True, text=True, timeout=120)
    jsonl = tmp_path / "bench.jsonl"
    jsonl.write_text(run.stdout + echo.stdout)
    report = subprocess.run([sys.executable, "deploy/bench_report.py", str(jsonl), "--png", str(tmp_path / "b.png")],
                            check=True, capture_output=True, text=True, timeout=120)
    assert "transport floor" in report.stdout and (tmp_path / "b.png").stat().st_size > 0
