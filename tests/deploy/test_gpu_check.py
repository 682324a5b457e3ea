"""deploy/gpu_check.sh (`make gpu-check`) on the CPU: its own Triton on a copy of the model with
KIND_CPU instances, a few seconds at small batches, and Triton's outputs matching the in-process run."""
import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.gpu_check import compare, newest_version, rewrite_config, triton_env

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "model_repo" / "session_transformer" / "config.pbtxt").read_text()


def test_the_instance_group_becomes_the_kind_asked_for_and_the_rest_is_kept():
    gpu = rewrite_config(TEMPLATE, "gpu", 1, 2048)
    assert "instance_group [ { count: 1, kind: KIND_GPU } ]" in gpu
    assert "kind: KIND_CPU" not in gpu  # (comments may name it)
    assert "max_batch_size: 2048" in gpu
    assert 'key: "ATTRIBUTION", value: { string_value: "occlusion" }' in gpu
    cpu = rewrite_config(TEMPLATE, "cpu", 2, 64)
    assert "instance_group [ { count: 2, kind: KIND_CPU } ]" in cpu and "max_batch_size: 1024" in cpu
    assert rewrite_config(TEMPLATE.replace("instance_group", "# none"), "gpu", 1, 8).rstrip().endswith(
        "instance_group [ { count: 1, kind: KIND_GPU } ]")


def outputs(items, scores, drops=None, positions=None):
    items = np.array([[i.encode() for i in items]], dtype=object)
    scores = np.array([scores], dtype=np.float32)
    return {"REC_ITEMS": items, "REC_SCORES": scores,
            "ATTR_DROP": np.array([drops or [0.1] * scores.shape[1]], dtype=np.float32),
            "ATTR_POS": np.array([positions or [0] * scores.shape[1]], dtype=np.int64)}


def test_scores_within_tolerance_and_a_near_tie_swapped_at_the_cut_match():
    ref = outputs(["a", "b", "c"], [3.0, 2.0, 1.0])
    assert compare(outputs(["a", "b", "c"], [3.0004, 2.0, 1.0]), ref, 1e-3, 0)["match"]
    swapped = compare(outputs(["a", "b", "d"], [3.0, 2.0, 0.9996]), ref, 1e-3, 0)
    assert swapped["match"] and swapped["rows_identical_order"] == 0


def test_a_wrong_score_an_item_far_from_the_cut_or_a_wrong_drop_do_not_match():
    ref = outputs(["a", "b", "c"], [3.0, 2.0, 1.0])
    assert not compare(outputs(["a", "b", "c"], [3.0, 2.1, 1.0]), ref, 1e-3, 0)["match"]
    assert not compare(outputs(["a", "d", "c"], [3.0, 2.0, 1.0]), ref, 1e-3, 0)["match"]
    assert not compare(outputs(["a", "b", "c"], [3.0, 2.0, 1.0], drops=[0.1, 0.5, 0.1]), ref, 1e-3, 0)["match"]
    assert not compare(outputs(["a", "b"], [3.0, 2.0]), ref, 1e-3, 0)["match"]  # fewer candidates


def test_attribution_positions_are_reported_not_gated():
    ref = outputs(["a", "b"], [3.0, 2.0], positions=[1, 2])
    result = compare(outputs(["a", "b"], [3.0, 2.0], positions=[1, 3]), ref, 1e-3, 0)
    assert result["match"] and result["rows_attr_pos_agree"] == 0


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory) -> Path:
    """model_repo when it holds a version; else a small untrained model exported into a scratch
    repository (the check compares two runs of the same weights, so training adds only minutes)."""
    served = ROOT / "model_repo"
    try:
        newest_version(served / "session_transformer")
        return served
    except SystemExit:
        pass
    from serving.model.artifacts import Vocab, save_model_dir
    from serving.model.transformer import ModelConfig, SessionTransformer
    from serving.online.export import export_model

    tmp = tmp_path_factory.mktemp("gpu-check-model")
    torch.manual_seed(0)
    model = SessionTransformer(ModelConfig(n_items=300, max_len=20, d_model=32, n_layers=1, n_heads=2))
    save_model_dir(tmp / "model", model.eval(), Vocab([f"i{n}" for n in range(1, 301)]), {"epochs": 0})
    export_model(tmp / "model", tmp / "repo", retired=tmp / "retired")
    return tmp / "repo"


def test_gpu_check_with_cpu_instances_measures_both_sides_and_matches(model_repo, tmp_path):
    binary = triton_env().get("TRITONSERVER", "")
    if not Path(binary).is_file() and not os.environ.get("CI"):
        pytest.skip(f"no tritonserver ({binary or '.stack/triton.env'}): `make setup` installs it")
    out = tmp_path / "check.json"
    ports = ",".join(map(str, free_ports(3)))
    run = subprocess.run(["bash", "deploy/gpu_check.sh", "--kind", "cpu", "--repo", str(model_repo),
                          "--batches", "8,16", "--seconds", "1", "--match-rows", "32", "--ports", ports,
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["kind"] == "cpu"
    assert report["date"] and report["commit"]
    assert [b["batch_size"] for b in report["batches"]] == [8, 16]
    for batch in report["batches"]:
        assert batch["triton_seq_per_s"] > 0 and batch["in_process_seq_per_s"] > 0
    match = report["match"]
    assert match["match"] and match["rows"] == 32 and match["mismatched_rows"] == 0
    assert match["max_abs_score_diff"] <= match["atol"]
    assert json.loads(run.stdout.splitlines()[-1])["match"] is True
