"""Triton python-backend model: copied as ``model.py`` into each exported version folder.

Runs in Triton's model environment (torch with numpy<2, see deploy/), not the worker's.

Positions: a request row is one session left-padded with b"", and ``ATTR_POS`` is the index among
the row's non-empty entries counted from the oldest (the session as the worker holds it), -1 if no
interaction supports the item. This module is the one place that translates between those indices
and the model's: it drops padding and items unknown to the vocabulary, keeps the last ``max_len``,
and maps each cited model position back to the session index of the interaction kept there.

Precision: the model config's ``PRECISION`` parameter (fp32, bf16, fp16 or int8; default
serving.model.precision.DEFAULT_PRECISION) says which variant of the version's weights is served;
the variant is built from the fp32 weights when the version loads (serving/model/precision.py).

Device: the instance's, as Triton passes it (``model_instance_kind`` GPU or CPU and
``model_instance_device_id``, from the config's instance_group); int8 always runs on the CPU.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from serving.model.artifacts import load_config, load_model_dir, trained_catalogue
from serving.model.attribution import rank_with_attribution
from serving.model.precision import DEFAULT_PRECISION, check_precision, serving_device, with_precision
from serving.model.transformer import EVENT_TYPE_INDEX

INPUTS = ("SESSION_ITEMS", "SESSION_TYPES")
# The model config's parameters when it names none: the values model_repo/session_transformer/config.pbtxt
# sets (tests/serving/online/test_triton_backend.py keeps the two equal).
PARAMETERS = {"N_CANDIDATES": "50", "ATTRIBUTION": "occlusion", "ATTRIBUTION_WINDOW": "10", "CPU_THREADS": "1",
              "PRECISION": DEFAULT_PRECISION}
OUTPUTS = ("REC_ITEMS", "REC_SCORES", "ATTR_POS", "ATTR_DROP", "CATALOGUE")


class BadRequest(ValueError):
    """Inputs that cannot be ranked: that request gets an error, the rest of its batch is served."""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = PARAMETERS | {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.n_candidates = int(params["N_CANDIDATES"])
        self.attribute = params["ATTRIBUTION"] == "occlusion"
        self.window = int(params["ATTRIBUTION_WINDOW"])
        output_type = lambda name: pb_utils.get_output_config_by_name(config, name)["data_type"]  # noqa: E731
        self.dtypes = {name: pb_utils.triton_string_to_numpy(output_type(name))
                       for name in OUTPUTS}
        # fp32 | bf16 | fp16 | int8 (serving/model/precision.py); an unknown name fails the load.
        self.precision = check_precision(params["PRECISION"])
        # The instance Triton made this one (instance_group kind and device), not what the host has.
        self.device = serving_device(self.precision, args.get("model_instance_kind", "CPU") == "GPU",
                                     int(args.get("model_instance_device_id", "0")))
        if self.device == "cpu":
            # Intra-op threads on these small matrices mostly spin-wait against the worker and Kafka
            # on the same cores; scale CPU serving with the instance_group count instead.
            torch.set_num_threads(int(params["CPU_THREADS"]))
        version_dir = Path(args["model_repository"]) / args["model_version"]
        model, self.vocab = load_model_dir(version_dir)
        # Every row says which catalogue its candidates come from: the worker keeps another
        # catalogue's items off a site (stream/catalogue.py).
        self.catalogue = trained_catalogue(load_config(version_dir)).encode()
        self.model = with_precision(model, self.precision).to(self.device)
        self.max_len = model.cfg.max_len
        # Model index -> UTF-8 item id, for decoding every candidate with one array lookup.
        self.item_names = np.array([b""] + [item.encode() for item in self.vocab.items], dtype=object)

    def execute(self, requests):
        """One response per request, in order; rows of all well-formed requests run as one batch."""
        sessions: list = []
        parts: list = []  # per request: its rows in `sessions`, or its error
        for request in requests:
            try:
                rows = self._sessions(request)
            except BadRequest as error:
                parts.append(pb_utils.TritonError(str(error)))
                continue
            parts.append(slice(len(sessions), len(sessions) + len(rows)))
            sessions += rows
        outputs = self._rank(sessions)
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, outputs[n][part]) for n in OUTPUTS])
                if isinstance(part, slice) else pb_utils.InferenceResponse(output_tensors=[], error=part)
                for part in parts]

    def finalize(self):
        """Triton unloads this version (a newer one is served): free the weights now."""
        del self.model, self.vocab, self.item_names
        if self.device != "cpu":
            torch.cuda.empty_cache()

    @staticmethod
    def _sessions(request) -> list[list[tuple[str, str]]]:
        """Each row's non-empty (item, event type) pairs, oldest first: the session in the caller's indices."""
        tensors = [pb_utils.get_input_tensor_by_name(request, name) for name in INPUTS]
        if any(t is None for t in tensors):
            raise BadRequest(f"inputs {', '.join(INPUTS)} are required")
        items, types = (t.as_numpy() for t in tensors)
        if items.ndim != 2 or items.shape != types.shape:
            raise BadRequest(f"SESSION_ITEMS {list(items.shape)} and SESSION_TYPES {list(types.shape)} "
                             "must both be [batch, length]")
        try:
            return [[(_text(i), _text(t)) for i, t in zip(row_items, row_types) if i]
                    for row_items, row_types in zip(items.tolist(), types.tolist())]
        except UnicodeDecodeError as error:
            raise BadRequest(f"inputs must be UTF-8: {error}") from None

    def _encode(self, sessions):
        """Model inputs [B, max_len] (unknown items dropped, the most recent max_len kept, left-padded)
        and, per model position, the session index of the interaction there (-1 on padding)."""
        item_rows, type_rows, source_rows = [], [], []
        for session in sessions:
            kept = [(index, self.vocab.encode_item(item), EVENT_TYPE_INDEX.get(event_type, 0))
                    for index, (item, event_type) in enumerate(session)]
            kept = [k for k in kept if k[1] != 0][-self.max_len:]
            pad = [0] * (self.max_len - len(kept))
            item_rows.append(pad + [k[1] for k in kept])
            type_rows.append(pad + [k[2] for k in kept])
            source_rows.append([-1] * len(pad) + [k[0] for k in kept])
        to_tensor = lambda rows: torch.tensor(rows, dtype=torch.long, device=self.device)  # noqa: E731
        return to_tensor(item_rows), to_tensor(type_rows), np.array(source_rows, dtype=np.int64)

    def _rank(self, sessions) -> dict[str, np.ndarray]:
        if not sessions:
            return {name: np.empty((0, 0), dtype=self.dtypes[name]) for name in OUTPUTS}
        items, types, source = self._encode(sessions)
        ranked = rank_with_attribution(self.model, items, types, self.n_candidates, self.attribute, self.window)
        model_pos = ranked.attr_pos.cpu().numpy()
        session_pos = np.where(model_pos >= 0, np.take_along_axis(source, model_pos.clip(min=0), axis=1), -1)
        names = self.item_names[ranked.items.cpu().numpy()]
        outputs = {"REC_ITEMS": names, "REC_SCORES": ranked.scores.cpu().numpy(), "ATTR_POS": session_pos,
                   "ATTR_DROP": ranked.attr_drop.cpu().numpy(), "CATALOGUE": [[self.catalogue]] * len(sessions)}
        return {name: np.asarray(value, dtype=self.dtypes[name]) for name, value in outputs.items()}
