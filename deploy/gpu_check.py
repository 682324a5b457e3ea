"""One short check of serving on an accelerator (`make gpu-check`, deploy/gpu_check.sh): Triton on a
copy of the served model, the model in-process beside it, and a comparison with a CPU run.

1. Copies the newest version of ``<repo>/session_transformer`` and its config.pbtxt into a scratch
   repository, with the instance group rewritten to ``KIND_GPU`` (``--kind gpu``) or ``KIND_CPU``.
2. Starts its own tritonserver there on its own ports (default 18000/18001/18002; the stack's Triton
   is not touched), the way deploy/up.sh starts the stack's (.stack/triton.env: the binary, the
   backend dir, the model env first on PATH, the interpreter's lib dir on LD_LIBRARY_PATH).
3. Per batch size: sequences/s through Triton's gRPC client with attribution on (as the served
   config asks: ATTRIBUTION, ATTRIBUTION_WINDOW, N_CANDIDATES), ``--concurrency`` requests in flight,
   and the in-process floor (serving.offline.bench_compute.time_methods, same window, same
   candidates, on the device Triton uses).
4. Sends one batch to Triton and runs the same rows through the same model.py in this process on
   the CPU (Triton's python-backend module replaced by a small stand-in), and compares them:
   scores, ranked items and attribution drops within ``atol + rtol * |reference|``; an item in one
   list only must be a near-tie at the cut (its score within the tolerance of the list's last
   score). Exits 1 when they do not match, 2 when Triton does not come up.

Writes one JSON file (device, date, commit, per batch: seq/s via Triton and in-process, the match).

    .venv/bin/python deploy/gpu_check.py --kind gpu --out reports/gpu-check.json
    .venv/bin/python deploy/gpu_check.py --kind cpu --batches 8,16 --seconds 2   # what the test runs
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = "session_transformer"
OUTPUTS = ("REC_ITEMS", "REC_SCORES", "ATTR_POS", "ATTR_DROP", "CATALOGUE")
# Per precision: (atol, rtol) on scores and drops, Triton against a CPU fp32-kernel run of the same
# weights. fp32 on a GPU differs from the CPU by float rounding only (~1e-6 on these logits);
# bf16/fp16 by their 8-/11-bit mantissas.
TOLERANCE = {"fp32": (1e-3, 1e-3), "int8": (1e-3, 1e-3), "fp16": (5e-2, 2e-2), "bf16": (1e-1, 5e-2)}


# --------------------------------------------------------------------------------------------------
# The scratch repository
# --------------------------------------------------------------------------------------------------

def newest_version(model_dir: Path) -> Path:
    held = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)) \
        if model_dir.is_dir() else []
    if not held:
        raise SystemExit(f"no model version in {model_dir} (expected {model_dir}/<n>/model.py): "
                         "`make train` exports one")
    return held[-1]


def rewrite_config(text: str, kind: str, instances: int, max_batch: int) -> str:
    """config.pbtxt with its instance group set to ``instances`` of KIND_GPU/KIND_CPU and
    max_batch_size at least ``max_batch``; everything else (parameters, batching) kept."""
    group = f"instance_group [ {{ count: {instances}, kind: KIND_{kind.upper()} }} ]"
    # instance_group [ ... ] holds { } only, never [ ]: up to the first closing bracket.
    text, n = re.subn(r"(?m)^\s*instance_group\s*\[[^\]]*\]", group, text)
    if n == 0:
        text = text.rstrip("\n") + "\n" + group + "\n"
    found = re.search(r"(?m)^max_batch_size:\s*(\d+)", text)
    if found and int(found.group(1)) < max_batch:
        text = text[:found.start(1)] + str(max_batch) + text[found.end(1):]
    return text


def config_parameters(text: str) -> dict[str, str]:
    return dict(re.findall(r'key:\s*"([^"]+)",\s*value:\s*\{\s*string_value:\s*"([^"]*)"', text))


def scratch_repo(version_dir: Path, dest: Path, kind: str, instances: int, max_batch: int) -> Path:
    """``dest/session_transformer/{config.pbtxt, <version>/}``: a copy, so the served repository and
    the stack's Triton are never touched."""
    model_dir = dest / MODEL
    model_dir.mkdir(parents=True)
    shutil.copytree(version_dir, model_dir / version_dir.name)
    text = (version_dir.parent / "config.pbtxt").read_text()
    (model_dir / "config.pbtxt").write_text(rewrite_config(text, kind, instances, max_batch))
    return dest


# --------------------------------------------------------------------------------------------------
# Triton
# --------------------------------------------------------------------------------------------------

def triton_env() -> dict[str, str]:
    """TRITONSERVER, TRITON_BACKEND_DIR, ... from the environment (gpu_check.sh sources
    .stack/triton.env) or else from that file."""
    keys = ("TRITONSERVER", "TRITON_BACKEND_DIR", "TRITON_CACHE_DIR", "TRITON_MODEL_ENV", "TRITON_PYLIBDIR")
    found = {k: os.environ[k] for k in keys if os.environ.get(k)}
    env_file = Path(os.environ.get("RECO_STACK_DIR", ROOT / ".stack")) / "triton.env"
    if len(found) < len(keys) and env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in keys and key not in found:
                found[key] = value.strip().strip("'\"")
    return found


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@contextmanager
def tritonserver(repo: Path, ports: tuple[int, int, int], log_path: Path, timeout_s: float) -> Iterator[None]:
    """A tritonserver of its own on ``repo``, in its own process group (the python stubs are its
    children), stopped on the way out."""
    env = triton_env()
    binary = env.get("TRITONSERVER", "")
    if not Path(binary).is_file():
        raise SystemExit(f"no tritonserver ({binary or 'TRITONSERVER unset'}; .stack/triton.env): run `make setup`")
    for port in ports:
        if not port_free(port):
            raise SystemExit(f"port {port} is in use: pick others with --ports")
    http, grpc, metrics = ports
    child_env = dict(os.environ)
    # As deploy/up.sh: the stub takes its prefix from the first python3 on PATH (the model env) and
    # links the interpreter's libpython.
    child_env["PATH"] = f"{env['TRITON_MODEL_ENV']}/bin:{child_env.get('PATH', '')}"
    child_env["LD_LIBRARY_PATH"] = ":".join(filter(None, [env.get("TRITON_PYLIBDIR"),
                                                          child_env.get("LD_LIBRARY_PATH")]))
    cmd = [binary, f"--model-repository={repo}", f"--backend-directory={env['TRITON_BACKEND_DIR']}",
           "--http-address=127.0.0.1", f"--http-port={http}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
           "--metrics-address=127.0.0.1", f"--metrics-port={metrics}", "--model-control-mode=none",
           "--exit-timeout-secs=5", "--log-verbose=0"]
    if env.get("TRITON_CACHE_DIR"):
        cmd.insert(3, f"--cache-directory={env['TRITON_CACHE_DIR']}")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready"
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise TritonDown(f"tritonserver exited ({proc.returncode}) before {MODEL} was ready; "
                                 f"see {log_path}:\n{tail(log_path)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TritonDown(f"{MODEL} not ready on Triton after {timeout_s:.0f} s; see {log_path}:\n"
                                 f"{tail(log_path)}")
            time.sleep(0.5)
        yield
    finally:
        stop(proc)


class TritonDown(RuntimeError):
    pass


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(proc: subprocess.Popen) -> None:
    """TERM the server's process group, KILL after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            # the stubs may outlive the server by a moment: the group goes too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


def model_config(http_port: int) -> dict:
    """The model's config as Triton serves it: the same JSON the backend gets as args["model_config"]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/{MODEL}/config", timeout=10) as response:
        return json.load(response)


def as_request(items: np.ndarray, types_: np.ndarray):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, array in (("SESSION_ITEMS", items), ("SESSION_TYPES", types_)):
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


GRPC_OPTIONS = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]


def triton_outputs(grpc_port: int, items: np.ndarray, types_: np.ndarray) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}", channel_args=GRPC_OPTIONS)
    try:
        result = client.infer(MODEL, as_request(items, types_), client_timeout=300)
        return {name: result.as_numpy(name) for name in OUTPUTS}
    finally:
        client.close()


async def _triton_rate(grpc_port: int, batches: list[tuple[np.ndarray, np.ndarray]], seconds: float,
                       concurrency: int) -> dict:
    import tritonclient.grpc.aio as aioclient

    client = aioclient.InferenceServerClient(f"127.0.0.1:{grpc_port}", channel_args=GRPC_OPTIONS)
    requests = [as_request(items, types_) for items, types_ in batches]
    await client.infer(MODEL, requests[0], client_timeout=300)  # warm-up
    done, latencies = [0], []
    start = time.perf_counter()
    stop_at = start + seconds

    async def loop(offset: int) -> None:
        n = offset
        while time.perf_counter() < stop_at or n == offset:  # at least one request each
            t0 = time.perf_counter()
            await client.infer(MODEL, requests[n % len(requests)], client_timeout=300)
            latencies.append(time.perf_counter() - t0)
            done[0] += batches[n % len(batches)][0].shape[0]
            n += concurrency

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    await client.close()
    return {"seq_per_s": round(done[0] / elapsed, 1), "requests": len(latencies),
            "ms_per_request_p50": round(1000 * float(np.median(latencies)), 2)}


def triton_rate(grpc_port: int, batches: list[tuple[np.ndarray, np.ndarray]], seconds: float,
                concurrency: int) -> dict:
    return asyncio.run(_triton_rate(grpc_port, batches, seconds, concurrency))


# --------------------------------------------------------------------------------------------------
# Inputs and the in-process reference
# --------------------------------------------------------------------------------------------------

def model_inputs(model, vocab, n: int, seed: int):
    """``n`` serving inputs [n, max_len] (model indices): prefixes of synthetic sessions as
    bench_compute draws them, or, for a model of another catalogue, random sessions of its items."""
    import torch

    from serving.model.transformer import EVENT_TYPE_INDEX
    from serving.offline.bench_compute import event_prefixes
    from serving.offline.data import generate_synthetic

    max_len = model.cfg.max_len
    try:
        items, types_ = event_prefixes(generate_synthetic(2000, seed=0), vocab, max_len, n=n, seed=seed)
        if float((items != 0).sum(1).float().mean()) >= 2:
            return items, types_
    except ValueError:
        pass
    rng = np.random.default_rng(seed)
    items = torch.zeros((n, max_len), dtype=torch.long)
    types_ = torch.zeros((n, max_len), dtype=torch.long)
    for row in range(n):
        length = int(rng.integers(1, max_len + 1))
        items[row, max_len - length:] = torch.from_numpy(rng.integers(1, vocab.n_items + 1, length))
        types_[row, max_len - length:] = torch.from_numpy(rng.integers(1, len(EVENT_TYPE_INDEX) + 1, length))
    return items, types_


def as_strings(items, types_, vocab) -> tuple[np.ndarray, np.ndarray]:
    """Model-index rows -> the request the worker sends: item ids and event types as UTF-8 bytes,
    left-padded with b"" (serving.online.client.left_padded_bytes)."""
    from serving.model.transformer import EVENT_TYPE_INDEX

    type_names = {index: name.encode() for name, index in EVENT_TYPE_INDEX.items()}
    item_names = [b""] + [item.encode() for item in vocab.items]
    items_np, types_np = items.numpy(), types_.numpy()
    out_items = np.array([[item_names[i] for i in row] for row in items_np], dtype=object)
    out_types = np.array([[type_names[t] if i else b"" for i, t in zip(ri, rt)] for ri, rt in zip(items_np, types_np)],
                         dtype=object)
    return out_items, out_types


TRITON_NUMPY = {"TYPE_BOOL": np.bool_, "TYPE_INT8": np.int8, "TYPE_INT16": np.int16, "TYPE_INT32": np.int32,
                "TYPE_INT64": np.int64, "TYPE_UINT8": np.uint8, "TYPE_FP16": np.float16, "TYPE_FP32": np.float32,
                "TYPE_FP64": np.float64, "TYPE_STRING": np.object_, "TYPE_BYTES": np.object_}


def stand_in_pb_utils() -> types.ModuleType:
    """The few calls of Triton's triton_python_backend_utils that model.py makes, for running it in
    this process."""
    pb = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name: str, array):
            self._name, self._array = name, np.asarray(array)

        def name(self) -> str:
            return self._name

        def as_numpy(self):
            return self._array

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    class TritonError(Exception):
        pass

    pb.Tensor = Tensor  # type: ignore[attr-defined]
    pb.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    pb.TritonError = TritonError  # type: ignore[attr-defined]
    pb.get_input_tensor_by_name = lambda request, name: request.get(name)  # type: ignore[attr-defined]
    pb.get_output_config_by_name = (  # type: ignore[attr-defined]
        lambda config, name: next((o for o in config.get("output", []) if o["name"] == name), None))
    pb.triton_string_to_numpy = lambda name: TRITON_NUMPY[name]  # type: ignore[attr-defined]
    return pb


def reference_outputs(version_dir: Path, config: dict, items: np.ndarray, types_: np.ndarray) -> dict[str, np.ndarray]:
    """The version's own model.py run in this process on the CPU, on the rows sent to Triton."""
    import importlib.util

    import torch

    sys.modules["triton_python_backend_utils"] = stand_in_pb_utils()
    spec = importlib.util.spec_from_file_location("gpu_check_model", version_dir / "model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    instance = module.TritonPythonModel()
    args = {"model_config": json.dumps(config), "model_repository": str(version_dir.parent),
            "model_version": version_dir.name, "model_name": MODEL, "model_instance_kind": "CPU",
            "model_instance_name": f"{MODEL}_0_0", "model_instance_device_id": "0"}
    # The CPU however the backend picks its device (torch.cuda.is_available() or the instance kind).
    available = torch.cuda.is_available
    torch.cuda.is_available = lambda: False  # type: ignore[assignment]
    try:
        instance.initialize(args)
        [response] = instance.execute([{"SESSION_ITEMS": module.pb_utils.Tensor("SESSION_ITEMS", items),
                                        "SESSION_TYPES": module.pb_utils.Tensor("SESSION_TYPES", types_)}])
    finally:
        torch.cuda.is_available = available  # type: ignore[assignment]
    if response.error is not None:
        raise RuntimeError(f"the in-process run refused the rows: {response.error}")
    return {t.name(): t.as_numpy() for t in response.output_tensors}


# --------------------------------------------------------------------------------------------------
# The comparison (pure: tests/deploy/test_gpu_check.py)
# --------------------------------------------------------------------------------------------------

def close(a, b, atol: float, rtol: float) -> bool:
    return abs(float(a) - float(b)) <= atol + rtol * abs(float(b))


def compare(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], atol: float, rtol: float) -> dict:
    """Triton's outputs against the reference's, row by row. A row matches when its scores, sorted,
    agree within ``atol + rtol * |ref|``; every item in both lists has matching scores and drops;
    and an item in one list only is a near-tie at the cut (within the tolerance of that list's
    last score). ATTR_POS is reported (rows where every position agrees), not gated: it is an
    argmax and may flip between near-equal drops."""
    def decode(v) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    rows = len(ref["REC_SCORES"])
    bad_rows: list[dict] = []
    identical = positions_agree = 0
    max_score_diff = max_drop_diff = 0.0
    if got["REC_SCORES"].shape != ref["REC_SCORES"].shape:
        return {"match": False, "rows": rows, "reason": f"shape {list(got['REC_SCORES'].shape)} != "
                                                        f"{list(ref['REC_SCORES'].shape)}"}
    for r in range(rows):
        g_items = [decode(v) for v in got["REC_ITEMS"][r]]
        r_items = [decode(v) for v in ref["REC_ITEMS"][r]]
        g = {item: (float(s), float(d), int(p)) for item, s, d, p in
             zip(g_items, got["REC_SCORES"][r], got["ATTR_DROP"][r], got["ATTR_POS"][r])}
        f = {item: (float(s), float(d), int(p)) for item, s, d, p in
             zip(r_items, ref["REC_SCORES"][r], ref["ATTR_DROP"][r], ref["ATTR_POS"][r])}
        problems = []
        for a, b in zip(sorted(got["REC_SCORES"][r], reverse=True), sorted(ref["REC_SCORES"][r], reverse=True)):
            max_score_diff = max(max_score_diff, abs(float(a) - float(b)))
            if not close(a, b, atol, rtol):
                problems.append(f"sorted scores differ: {float(a):.6g} vs {float(b):.6g}")
                break
        for item in g.keys() & f.keys():
            max_score_diff = max(max_score_diff, abs(g[item][0] - f[item][0]))
            max_drop_diff = max(max_drop_diff, abs(g[item][1] - f[item][1]))
            if not close(g[item][0], f[item][0], atol, rtol):
                problems.append(f"{item}: score {g[item][0]:.6g} vs {f[item][0]:.6g}")
            if not close(g[item][1], f[item][1], atol, rtol):
                problems.append(f"{item}: attribution drop {g[item][1]:.6g} vs {f[item][1]:.6g}")
        for only, cut in ((g.keys() - f.keys(), min(s for s, _, _ in g.values()) if g else 0.0),
                          (f.keys() - g.keys(), min(s for s, _, _ in f.values()) if f else 0.0)):
            for item in only:
                score = (g.get(item) or f[item])[0]
                if not close(score, cut, 2 * atol, 2 * rtol):
                    problems.append(f"{item} ranked by one side only, score {score:.6g}, cut {cut:.6g}")
        identical += g_items == r_items
        positions_agree += all(g[item][2] == f[item][2] for item in g.keys() & f.keys())
        if problems:
            bad_rows.append({"row": r, "problems": problems[:5]})
    return {"match": not bad_rows, "rows": rows, "atol": atol, "rtol": rtol,
            "rows_identical_order": identical, "rows_attr_pos_agree": positions_agree,
            "max_abs_score_diff": max_score_diff, "max_abs_drop_diff": max_drop_diff,
            "mismatched_rows": len(bad_rows), "examples": bad_rows[:3]}


# --------------------------------------------------------------------------------------------------

def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["gpu", "cpu"], default="gpu", help="Triton instance kind")
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repo", help="model repository to copy")
    parser.add_argument("--batches", default="64,128,256,512,1024", help="comma-separated batch sizes")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per batch size, each side")
    parser.add_argument("--concurrency", type=int, default=2, help="Triton requests in flight (the worker keeps 2)")
    parser.add_argument("--instances", type=int, default=1, help="instance group count")
    parser.add_argument("--match-rows", type=int, default=256, help="rows compared with the CPU run")
    parser.add_argument("--atol", type=float, help="default: by the config's PRECISION (TOLERANCE)")
    parser.add_argument("--rtol", type=float)
    parser.add_argument("--ports", default="18000,18001,18002", help="Triton's http,grpc,metrics ports")
    parser.add_argument("--ready-timeout", type=float, default=180)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default reports/gpu-check-<time>.json)")
    args = parser.parse_args(argv)

    import torch

    from serving.model.artifacts import load_model_dir
    from serving.model.precision import serving_device, with_precision
    from serving.offline.bench_compute import time_methods

    sizes = [int(b) for b in args.batches.split(",") if b.strip()]
    ports = tuple(int(p) for p in args.ports.split(","))
    if len(ports) != 3:
        parser.error("--ports takes three ports: http,grpc,metrics")
    cuda = torch.cuda.is_available()
    if args.kind == "gpu" and not cuda:
        raise SystemExit("--kind gpu: torch sees no CUDA device here (use --kind cpu)")
    version_dir = newest_version(args.repo / MODEL)
    config_text = (version_dir.parent / "config.pbtxt").read_text()
    params = config_parameters(config_text)
    precision = params.get("PRECISION", "fp32")
    atol = args.atol if args.atol is not None else TOLERANCE.get(precision, TOLERANCE["fp32"])[0]
    rtol = args.rtol if args.rtol is not None else TOLERANCE.get(precision, TOLERANCE["fp32"])[1]
    n_candidates = int(params.get("N_CANDIDATES", "50"))
    attribute = params.get("ATTRIBUTION", "occlusion") == "occlusion"
    window = int(params.get("ATTRIBUTION_WINDOW", "0"))
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or ROOT / "reports" / f"gpu-check-{stamp:%Y%m%d-%H%M%S}.json"

    torch.manual_seed(args.seed)
    fp32, vocab = load_model_dir(version_dir)
    device = serving_device(precision, cuda) if args.kind == "gpu" else "cpu"
    n_rows = max(max(sizes) * 4, args.match_rows)
    items, types_ = model_inputs(fp32, vocab, n_rows, args.seed)
    str_items, str_types = as_strings(items, types_, vocab)

    # In-process floor: the served precision on the device Triton's instance uses, one torch
    # thread on the CPU as CPU_THREADS=1 (bench_compute does the same).
    floor_model = with_precision(fp32, precision).to(device)
    if device == "cpu":
        torch.set_num_threads(int(params.get("CPU_THREADS", "1")))
    method = "prefix" if attribute else "none"
    floor: dict[int, dict] = {}
    with torch.inference_mode():
        for size in sizes:
            [row] = time_methods(floor_model, items.to(device), types_.to(device), size, n_candidates, window,
                                 [method], args.seconds)
            if device == "cuda":
                torch.cuda.synchronize()
            floor[size] = row
    del floor_model
    if device == "cuda":
        torch.cuda.empty_cache()  # the GPU's memory to Triton

    report: dict = {
        "device": torch.cuda.get_device_name(0) if args.kind == "gpu" else "cpu", "kind": args.kind,
        "date": stamp.isoformat(timespec="seconds"), "commit": git_commit(),
        "model": {"version_dir": str(version_dir), "precision": precision, "n_candidates": n_candidates,
                  "attribution": attribute, "window": window, "max_len": fp32.cfg.max_len},
        "mean_length": round(float((items != 0).sum(1).float().mean()), 2),
        "concurrency": args.concurrency, "instances": args.instances, "seconds": args.seconds, "batches": []}
    code = 0
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        repo = scratch_repo(version_dir, Path(scratch) / "repo", args.kind, args.instances, max(sizes))
        log_path = out.with_suffix(".triton.log")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tritonserver(repo, ports, log_path, args.ready_timeout):  # type: ignore[arg-type]
                config = model_config(ports[0])
                rows = slice(0, args.match_rows)
                got = triton_outputs(ports[1], str_items[rows], str_types[rows])
                ref = reference_outputs(version_dir, config, str_items[rows], str_types[rows])
                report["match"] = compare(got, ref, atol, rtol)
                for size in sizes:
                    batches = [(str_items[i:i + size], str_types[i:i + size])
                               for i in range(0, n_rows - size + 1, size)][:4]
                    rate = triton_rate(ports[1], batches, args.seconds, args.concurrency)
                    report["batches"].append({
                        "batch_size": size, "triton_seq_per_s": rate["seq_per_s"],
                        "triton_ms_per_request_p50": rate["ms_per_request_p50"], "triton_requests": rate["requests"],
                        "in_process_seq_per_s": floor[size]["events_per_s"],
                        "in_process_ms_per_batch": floor[size]["ms_per_batch"],
                        "triton_over_in_process": round(rate["seq_per_s"] / floor[size]["events_per_s"], 3)})
                    print(json.dumps(report["batches"][-1]), file=sys.stderr, flush=True)
        except TritonDown as error:
            report["error"] = str(error)
            code = 2
    if code == 0 and not report["match"]["match"]:
        code = 1
    out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: report.get(k) for k in ("device", "commit")} | {
        "match": report.get("match", {}).get("match"), "out": str(out),
        "seq_per_s": {b["batch_size"]: [b["triton_seq_per_s"], b["in_process_seq_per_s"]] for b in report["batches"]}}
    print(json.dumps(summary), flush=True)
    if code == 1:
        print(f"MISMATCH: Triton's outputs differ from the CPU run: {json.dumps(report['match']['examples'])}",
              file=sys.stderr)
    elif code == 2:
        print(report["error"], file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
