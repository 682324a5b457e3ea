"""stream/supervisor.py with a stand-in worker (a sleeping child): restarts, stops, backoff."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.stack._client import wait_until


def start_supervisor(tmp_path: Path, worker_statement: str) -> tuple[subprocess.Popen, Path, Path]:
    """A supervisor whose worker appends its restart count to starts.txt, then runs the statement."""
    pid_file, starts = tmp_path / "worker.pid", tmp_path / "starts.txt"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from stream.supervisor import supervise

        def life(restarts):
            with open({str(starts)!r}, "a") as f:
                f.write(f"{{restarts}}\\n")
            {worker_statement}

        sys.exit(supervise(life, Path({str(pid_file)!r})))
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout_s=20, every_s=0.05)
    return process, pid_file, starts


def worker_pid(pid_file: Path) -> int:
    return int(pid_file.read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.fixture
def sleeping_worker(tmp_path):
    process, pid_file, starts = start_supervisor(tmp_path, "time.sleep(600)")
    yield process, pid_file, starts
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_killed_worker_is_forked_again_and_told_how_many_restarts_came_before(sleeping_worker):
    process, pid_file, starts = sleeping_worker
    first = worker_pid(pid_file)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: worker_pid(pid_file) != first, timeout_s=10, every_s=0.05)
    assert wait_until(lambda: starts.read_text().split() == ["0", "1"], timeout_s=10, every_s=0.05)
    assert process.poll() is None


def test_sigterm_stops_the_worker_then_the_supervisor_with_the_workers_status(sleeping_worker):
    process, pid_file, _ = sleeping_worker
    child = worker_pid(pid_file)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM  # the sleeping worker's default action
    assert not alive(child)


def test_a_worker_outlives_no_sigkilled_supervisor(sleeping_worker):
    process, pid_file, _ = sleeping_worker
    child = worker_pid(pid_file)
    process.kill()
    process.wait()
    assert wait_until(lambda: not alive(child), timeout_s=10, every_s=0.05)


def test_a_worker_that_keeps_failing_at_start_is_restarted_ever_more_slowly(tmp_path):
    process, _, starts = start_supervisor(tmp_path, "raise RuntimeError('bad configuration')")
    try:
        time.sleep(4)
        # Without the backoff it would start hundreds of times; with it: at once, then 1 s, 2 s, ...
        assert 2 <= len(starts.read_text().split()) <= 4
    finally:
        process.kill()
        process.wait()
