"""The Triton python-backend model end to end, without Triton: a fake ``triton_python_backend_utils``
and a tiny real model. Pins the position convention: ``ATTR_POS`` indexes the caller's session."""
import importlib
import json
import re
import sys
import types

import numpy as np
import pytest
import torch

from contract.settings import PROJECT_ROOT
from serving.model.artifacts import Vocab, save_model_dir
from serving.model.attribution import rank_with_attribution
from serving.model.transformer import EVENT_TYPE_INDEX, ModelConfig, SessionTransformer
from serving.online.client import left_padded_bytes

MAX_LEN = 4
ITEMS = ["a", "b", "c", "d", "e", "f", "g", "h"]
CONFIG_PBTXT = PROJECT_ROOT / "model_repo" / "session_transformer" / "config.pbtxt"


def fake_pb_utils() -> types.ModuleType:
    """What the backend uses of Triton's module, with Triton's signatures."""

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, array

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class TritonError:
        def __init__(self, message):
            self._message = message

        def message(self):
            return self._message

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self._outputs, self._error = output_tensors, error

        def output_tensors(self):
            return self._outputs

        def has_error(self):
            return self._error is not None

        def error(self):
            return self._error

    def get_input_tensor_by_name(request, name):
        return next((t for t in request.inputs() if t.name() == name), None)

    def get_output_config_by_name(model_config, name):
        return next((o for o in model_config.get("output", []) if o["name"] == name), None)

    dtypes = {"TYPE_STRING": np.object_, "TYPE_FP32": np.float32, "TYPE_FP64": np.float64,
              "TYPE_INT32": np.int32, "TYPE_INT64": np.int64}
    module = types.ModuleType("triton_python_backend_utils")
    module.__dict__.update(Tensor=Tensor, TritonError=TritonError, InferenceResponse=InferenceResponse,
                           get_input_tensor_by_name=get_input_tensor_by_name,
                           get_output_config_by_name=get_output_config_by_name,
                           triton_string_to_numpy=dtypes.__getitem__)
    return module


class Request:
    def __init__(self, tensors):
        self._tensors = tensors

    def inputs(self):
        return self._tensors


def model_config(**params) -> dict:
    """The JSON Triton hands ``initialize``, built from the real config.pbtxt, parameters overridden."""
    text = CONFIG_PBTXT.read_text()
    outputs = re.findall(r'name: "(\w+)", data_type: (TYPE_\w+)', text.split("output [")[1])
    parameters = dict(re.findall(r'key: "(\w+)", value: \{ string_value: "([^"]*)" \}', text)) | params
    return {"name": "session_transformer",
            "output": [{"name": n, "data_type": t, "dims": [-1]} for n, t in outputs],
            "parameters": {k: {"string_value": v} for k, v in parameters.items()}}


@pytest.fixture
def pb(monkeypatch):
    module = fake_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


@pytest.fixture
def thread_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)  # leave this process's threads alone
    return calls


@pytest.fixture
def load(pb, thread_calls, tmp_path):
    """``load(config)`` -> initialized TritonPythonModel over a tiny model saved in tmp_path/1."""
    torch.manual_seed(0)
    model = SessionTransformer(ModelConfig(n_items=len(ITEMS), max_len=MAX_LEN, d_model=16, n_layers=1, n_heads=2,
                                           dropout=0.0)).eval()
    save_model_dir(tmp_path / "1", model, Vocab(ITEMS), {"data": {"format": "diginetica"}})
    sys.modules.pop("serving.online.triton_backend", None)
    backend = importlib.import_module("serving.online.triton_backend")

    def make(config=None, kind="CPU", device_id="0"):
        instance = backend.TritonPythonModel()
        instance.initialize({"model_config": json.dumps(config or model_config()),
                             "model_repository": str(tmp_path), "model_version": "1",
                             "model_instance_kind": kind, "model_instance_device_id": device_id})
        return instance

    return make


def request(pb, sessions, width):
    """A request as the client builds it: [(items, types)] left-padded with b"" to ``width``."""
    return Request([pb.Tensor("SESSION_ITEMS", left_padded_bytes([s[0] for s in sessions], width)),
                    pb.Tensor("SESSION_TYPES", left_padded_bytes([s[1] for s in sessions], width))])


def outputs(response) -> dict[str, np.ndarray]:
    assert not response.has_error(), response.error().message()
    return {t.name(): t.as_numpy() for t in response.output_tensors()}


def session(items):
    return items, [("view", "click", "add_to_cart")[n % 3] for n in range(len(items))]


# (session items, the session indices the model sees, by hand): "zz"/"yy" are not in the vocabulary.
CASES = [
    (["a", "b", "c"], [0, 1, 2]),  # padded row
    (["d", "zz", "b", "e"], [0, 2, 3]),  # unknown item in the middle
    (["a", "b", "c", "zz", "d", "e", "f"], [2, 4, 5, 6]),  # longer than max_len, and an unknown item
    (["a", "b", "a", "c", "b", "g"], [2, 3, 4, 5]),  # longer than max_len, repeated items
    ([], []),  # no interactions
    (["zz", "yy"], []),  # nothing the model knows
]


def test_attr_pos_indexes_the_callers_session(pb, load):
    backend = load()
    sessions = [session(items) for items, _ in CASES]
    responses = backend.execute([request(pb, sessions[:3], 7), request(pb, sessions[3:], 9)])
    names = ("REC_ITEMS", "REC_SCORES", "ATTR_POS", "ATTR_DROP")
    got = {n: np.concatenate([outputs(r)[n] for r in responses]) for n in names}

    # The same rows ranked directly, from model inputs built by hand.
    vocab = backend.vocab
    sources = [[-1] * (MAX_LEN - len(kept)) + kept for _, kept in CASES]
    pairs = list(zip(sessions, sources))
    model_items = torch.tensor([[vocab.encode_item(s[0][i]) if i >= 0 else 0 for i in src] for s, src in pairs])
    model_types = torch.tensor([[EVENT_TYPE_INDEX[s[1][i]] if i >= 0 else 0 for i in src] for s, src in pairs])
    ranked = rank_with_attribution(backend.model, model_items, model_types, backend.n_candidates, True, backend.window)

    assert got["REC_ITEMS"].tolist() == [[vocab.decode(i).encode() for i in row] for row in ranked.items.tolist()]
    np.testing.assert_array_equal(got["REC_SCORES"], ranked.scores.numpy())
    np.testing.assert_array_equal(got["ATTR_DROP"], ranked.attr_drop.numpy())
    expected = [[src[p] if p >= 0 else -1 for p in row] for src, row in zip(sources, ranked.attr_pos.tolist())]
    assert got["ATTR_POS"].tolist() == expected
    assert got["ATTR_POS"].dtype == np.int64 and got["REC_SCORES"].dtype == np.float32
    for (items, kept), positions in zip(CASES, got["ATTR_POS"].tolist()):
        assert set(positions) <= set(kept) if kept else set(positions) == {-1}
        assert all(items[p] in ITEMS for p in positions if p >= 0)  # an item the model knows, by the caller's index
    # every row names the catalogue the model was trained on
    assert [outputs(r)["CATALOGUE"].tolist() for r in responses] == [[[b"diginetica"]] * 3, [[b"diginetica"]] * 3]


def test_a_malformed_request_gets_an_error_and_its_neighbours_are_served(pb, load):
    backend = load()
    good = [request(pb, [session(["a", "b"]), session(["c"])], 3), request(pb, [session(["d", "e", "f"])], 5)]
    items = left_padded_bytes([["a", "b"]], 3)
    bad = [
        Request([pb.Tensor("SESSION_ITEMS", items), pb.Tensor("SESSION_TYPES", items[:, 1:])]),  # shapes differ
        Request([pb.Tensor("SESSION_ITEMS", items)]),  # SESSION_TYPES missing
        Request([pb.Tensor("SESSION_ITEMS", items[0]), pb.Tensor("SESSION_TYPES", items[0])]),  # not [batch, length]
        Request([pb.Tensor("SESSION_ITEMS", np.array([[b"\xff"]], dtype=object)),
                 pb.Tensor("SESSION_TYPES", np.array([[b"view"]], dtype=object))]),  # not UTF-8
    ]
    alone = backend.execute(good)
    mixed = backend.execute([good[0], *bad, good[1]])
    assert len(mixed) == len(bad) + 2
    for response in mixed[1:-1]:
        assert response.has_error() and response.output_tensors() == []
    assert "SESSION_TYPES [1, 2]" in mixed[1].error().message()
    for want, response in zip(alone, (mixed[0], mixed[-1])):
        for name, array in outputs(want).items():
            np.testing.assert_array_equal(outputs(response)[name], array)
    assert [len(outputs(r)["ATTR_POS"]) for r in alone] == [2, 1]


def test_parameters_and_output_types_come_from_the_model_config(pb, load, thread_calls):
    config = model_config(N_CANDIDATES="3", ATTRIBUTION="none", CPU_THREADS="2")
    next(o for o in config["output"] if o["name"] == "ATTR_POS")["data_type"] = "TYPE_INT32"
    backend = load(config)
    assert (backend.n_candidates, backend.attribute, thread_calls) == (3, False, [2])
    out = outputs(backend.execute([request(pb, [session(["a", "b", "c"])], 4)])[0])
    assert out["REC_ITEMS"].shape == (1, 3) and out["ATTR_POS"].dtype == np.int32
    assert out["ATTR_POS"].tolist() == [[-1, -1, -1]] and out["ATTR_DROP"].tolist() == [[0, 0, 0]]

    windowed = load(model_config(ATTRIBUTION_WINDOW="2"))
    assert windowed.window == 2
    out = outputs(windowed.execute([request(pb, [session(["a", "b", "zz", "c"])], 6)])[0])
    assert set(out["ATTR_POS"].flatten().tolist()) <= {1, 3}  # the two most recent known interactions


def test_finalize_releases_the_model(load):
    backend = load()
    backend.finalize()
    assert not hasattr(backend, "model") and not hasattr(backend, "vocab")


def test_the_served_precision_comes_from_the_model_config(pb, load):
    from serving.model.precision import DEFAULT_PRECISION, PRECISIONS, quantized_modules

    text = CONFIG_PBTXT.read_text()
    assert f'{{ key: "PRECISION", value: {{ string_value: "{DEFAULT_PRECISION}" }} }}' in text
    assert load().precision == DEFAULT_PRECISION
    config = model_config()
    del config["parameters"]["PRECISION"]
    assert load(config).precision == DEFAULT_PRECISION  # a config that names none

    sessions = [session(["a", "b", "c"]), session(["d", "zz", "e", "f", "g"])]
    served = {p: load(model_config(PRECISION=p)) for p in PRECISIONS}
    weights = {p: {w.dtype for w in served[p].model.parameters()} for p in PRECISIONS}
    assert weights == {"fp32": {torch.float32}, "bf16": {torch.bfloat16}, "fp16": {torch.float16},
                       "int8": {torch.float32}}
    assert quantized_modules(served["int8"].model) and not quantized_modules(served["fp32"].model)
    for precision, backend in served.items():
        out = outputs(backend.execute([request(pb, sessions, 5)])[0])
        assert out["REC_SCORES"].dtype == np.float32 and out["REC_ITEMS"].shape == (2, len(ITEMS))
        ranked = rank_with_attribution(backend.model, *backend._encode([list(zip(*s)) for s in sessions])[:2],
                                       backend.n_candidates, True, backend.window)
        np.testing.assert_array_equal(out["REC_SCORES"], ranked.scores.numpy())  # the variant is what ranks

    with pytest.raises(ValueError, match="precision must be one of"):
        load(model_config(PRECISION="int4"))


def test_int8_is_served_on_the_cpu_when_a_gpu_is_there(load, monkeypatch, thread_calls):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    backend = load(model_config(PRECISION="int8", CPU_THREADS="1"), kind="GPU")
    assert backend.device == "cpu" and thread_calls == [1]


def test_the_device_is_the_instance_kind_triton_passes(load, monkeypatch, thread_calls):
    """A KIND_CPU instance stays on the CPU on a GPU host; a KIND_GPU one goes to its own device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert load().device == "cpu"
    moved = []
    monkeypatch.setattr(SessionTransformer, "to", lambda self, device: moved.append(device) or self)
    assert load(kind="GPU", device_id="1").device == "cuda:1" and moved[-1] == "cuda:1"
    assert thread_calls == [1]  # only the CPU instance set its threads


def test_the_parameter_defaults_are_the_config_pbtxt_values(load, pb):
    """One source of truth: a config that names no parameter is served as config.pbtxt says."""
    backend_module = sys.modules["serving.online.triton_backend"]
    text = CONFIG_PBTXT.read_text()
    assert dict(re.findall(r'key: "(\w+)", value: \{ string_value: "([^"]*)" \}', text)) == backend_module.PARAMETERS
    config = model_config()
    config["parameters"] = {}
    bare, full = load(config), load()
    assert (bare.n_candidates, bare.attribute, bare.window, bare.precision) == \
        (full.n_candidates, full.attribute, full.window, full.precision) == (50, True, 10, "fp32")
