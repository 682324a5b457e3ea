"""Keeps one worker process running and brings a dead one back in about two seconds.

Most of a worker's cold start is imports (Feast, Faust, gRPC, pandas: about 5 of its 7 s on two
cores, docs/guarantees.md). The supervisor pays them once: it imports the worker's modules, then
forks the worker. A worker that dies (SIGKILL, the OOM killer, a crash) is forked again from the
already-imported parent at once, so a restart costs only Faust's start-up: the Kafka login, the
group join under the same static member id (the partitions come straight back) and the Feast
registry. SIGTERM or SIGINT to the supervisor stops the worker, then the supervisor.

    python -m stream.supervisor [--pid-file PATH] worker -l info   # the rest goes to the Faust worker
"""
from __future__ import annotations

import argparse
import ctypes
import importlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType, ModuleType
from typing import Callable

log = logging.getLogger("stream.supervisor")

# A worker that dies this soon after its start, twice in a row, is failing to start: each further
# start waits twice as long (from 1 s, at most 30 s) instead of spinning on a broken configuration.
QUICK_DEATH_S = 10.0
MAX_BACKOFF_S = 30.0
_PR_SET_PDEATHSIG = 1

WorkerLife = Callable[[int], None]  # runs the worker in the forked process; given the restarts so far


def child_exit_code(life: WorkerLife, restarts: int) -> int:
    """Runs ``life`` in the forked process, which must never return into the supervisor's loop."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # the supervisor's handlers are not the worker's
    # Dies with the supervisor even when that one is SIGKILLed: no orphan keeps consuming.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        life(restarts)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    except BaseException:
        log.exception("worker failed")
        return 1
    return 0


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with {os.waitstatus_to_exitcode(status)}"


def exit_code(status: int) -> int:
    """The worker's exit status as a shell reports it: 128 + the signal for a killed one."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def supervise(life: WorkerLife, pid_file: Path | None = None) -> int:
    """Forks the worker and forks it again whenever it dies, until told to stop; its last exit code."""
    stopping = False
    child = 0

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child:
            os.kill(child, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts = quick_deaths = 0
    while True:
        started = time.monotonic()
        child = os.fork()
        if child == 0:
            os._exit(child_exit_code(life, restarts))
        if pid_file:
            pid_file.write_text(f"{child}\n")
        _, status = os.waitpid(child, 0)  # retried through the signal handler (PEP 475)
        if stopping:
            return exit_code(status)
        quick_deaths = quick_deaths + 1 if time.monotonic() - started < QUICK_DEATH_S else 0
        backoff = min(MAX_BACKOFF_S, 2.0 ** (quick_deaths - 2)) if quick_deaths > 1 else 0.0
        log.warning("worker %d %s; starting it again%s", child, describe(status),
                    f" in {backoff:.0f} s" if backoff else "")
        resume_at = time.monotonic() + backoff
        while not stopping and time.monotonic() < resume_at:  # a SIGTERM meanwhile ends the wait
            time.sleep(0.1)
        if stopping:
            return exit_code(status)
        restarts += 1


def preload(app_module: ModuleType) -> None:
    """Imports what a worker would otherwise import on every start, lazily, after stream.app: about
    550 modules (the list below: what sys.modules gained in a worker started without it). Faust's
    app and Feast's FeatureStore (provider, offline store, registry) are built once and dropped:
    neither connects anywhere until used and no thread starts, so forking stays safe."""
    from contract.settings import get_settings
    from features.store import OnlineFeatures

    settings = get_settings()
    app_module.create_app(settings)
    OnlineFeatures(settings)
    for module in ("uvloop", "faust.cli.faust", "faust.worker", "faust.web.drivers.aiohttp",
                   "faust.web.apps.production_index", "faust.web.apps.tables", "faust.web.cache.backends.memory",
                   "faust.transport.drivers.aiokafka", "faust.assignor", "faust.tables",
                   "feast.infra.compute_engines.local.compute", "feast.infra.registry.file"):
        importlib.import_module(module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid-file", type=Path, help="where to write the current worker process's pid")
    args, worker_args = parser.parse_known_args()
    sys.argv = [sys.argv[0], *worker_args]  # what the Faust worker's command line parses
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    # The worker never uses torch, but Feast imports it whenever it can (feast.torch_wrapper): 1.6 s
    # of every cold start and a few hundred MB. Feast takes the refused import as "no torch".
    sys.modules.setdefault("torch", None)  # type: ignore[arg-type]
    import stream.app  # here, after the guard: the import the supervisor pays once for every worker
    from stream import metrics

    preload(stream.app)

    def life(restarts: int) -> None:
        metrics.WORKER_RESTARTS.set(restarts)
        stream.app.run_worker()

    sys.exit(supervise(life, args.pid_file))


if __name__ == "__main__":
    main()
