"""deploy/drain.py's pure parts: the rate over the middle 80% of the recommendations' record
timestamps, and lost/duplicated per event id; and bench_report's line for it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.drain import account, first_copies, middle_rate

ROOT = Path(__file__).resolve().parents[2]


def test_the_rate_is_over_the_middle_80_percent_only():
    # 100 records: a slow start (10 records 1 s apart), 80 at 100/s, a slow tail (10, 1 s apart).
    start = [1000 * n for n in range(10)]
    steady = [10_000 + 10 * n for n in range(80)]
    tail = [10_800 + 1000 * n for n in range(1, 11)]
    rate = middle_rate(tail + steady + start)  # any order
    # records 10..89 are the middle: 79 intervals over 790 ms
    assert rate == {"per_s": 100.0, "span_s": 0.79, "counted": 80}
    # over all of them, the start and the tail would dominate
    assert middle_rate(start + steady + tail, middle=1.0)["per_s"] < 6


def test_the_rate_of_too_few_records_or_a_zero_span_is_none():
    assert middle_rate([])["per_s"] is None
    assert middle_rate([5])["per_s"] is None
    assert middle_rate([7, 7, 7])["per_s"] is None
    assert middle_rate([0, 1000])["per_s"] == 1.0  # two records: the middle is both


def test_lost_and_duplicated_count_each_expected_event_id():
    expected = {f"t-{n}" for n in range(5)}
    seen = ["t-0", "t-1", "t-1", "t-1", "t-2", "other-9", "t-4", "t-4"]
    assert account(expected, seen) == {"received": 4, "lost": 1, "duplicated": 3}
    assert account(expected, []) == {"received": 0, "lost": 5, "duplicated": 0}


def test_a_duplicate_does_not_move_the_first_copys_time():
    assert first_copies([("a", 5), ("b", 3), ("a", 9), ("a", 4)]) == {"a": 4, "b": 3}


def test_bench_report_prints_the_drain(tmp_path):
    drain = {"mode": "drain", "client": "confluent", "events": 30000, "received": 30000, "lost": 0,
             "duplicated": 0, "fallbacks": 0, "drain_per_s": 812.5, "middle": 0.8, "middle_span_s": 29.5,
             "first_after_start_s": 1.2, "last_after_start_s": 40.0, "produce_s": 3.0,
             "sessions": "200 concurrent, real lengths (views.csv)", "cpu_s": {"worker": 21.0, "triton": 12.3}}
    jsonl = tmp_path / "bench.jsonl"
    jsonl.write_text(json.dumps(drain) + "\n")
    out = subprocess.run([sys.executable, "deploy/bench_report.py", str(jsonl)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "drain (200 concurrent, real lengths (views.csv)): 30,000 events" in out and "812/s" in out
    assert "lost 0, duplicated 0" in out and "triton 0.41, worker 0.70" in out


@pytest.mark.parametrize("args", [["deploy/drain.py", "--help"], ["-m", "tools.bench_client", "--help"]])
def test_the_scripts_parse_their_arguments(args):
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "--client" in out
