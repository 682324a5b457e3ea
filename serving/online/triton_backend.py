"""Triton python-backend model: copied as ``model.py`` into each exported version folder.

Runs in Triton's model environment (torch with numpy<2, see deploy/), not the worker's.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from serving.model.artifacts import load_model_dir
from serving.model.attribution import rank_with_attribution
from serving.model.transformer import EVENT_TYPE_INDEX


def _decode(array: np.ndarray) -> list[list[str]]:
    return [[v.decode() if isinstance(v, bytes) else str(v) for v in row] for row in array]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.n_candidates = int(params.get("N_CANDIDATES", "50"))
        self.attribute = params.get("ATTRIBUTION", "occlusion") == "occlusion"
        self.window = int(params.get("ATTRIBUTION_WINDOW", "0"))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            # Intra-op threads of these small matrices mostly spin-wait against the worker and
            # Kafka on the same cores (measured: 2 threads 4x slower than 1 on 2 busy cores);
            # scale CPU serving with instance_group count instead.
            torch.set_num_threads(int(params.get("CPU_THREADS", "1")))
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.model, self.vocab = load_model_dir(version_dir, device=self.device)
        self.model.eval()
        self.max_len = self.model.cfg.max_len

    def _encode(self, items: list[list[str]], types: list[list[str]]):
        """Vocabulary indices trimmed to the model's length (unknown items dropped), and for each
        row the caller's positions of the interactions kept, to map attributions back."""
        item_rows, type_rows, kept_positions = [], [], []
        for row_items, row_types in zip(items, types):
            kept = [(p, self.vocab.encode_item(i), EVENT_TYPE_INDEX.get(t, 0))
                    for p, (i, t) in enumerate(zip(row_items, row_types)) if i]
            kept = [k for k in kept if k[1] != 0][-self.max_len:]
            pad = [0] * (self.max_len - len(kept))
            item_rows.append(pad + [k[1] for k in kept])
            type_rows.append(pad + [k[2] for k in kept])
            kept_positions.append([k[0] for k in kept])
        to_tensor = lambda rows: torch.tensor(rows, dtype=torch.long, device=self.device)  # noqa: E731
        return to_tensor(item_rows), to_tensor(type_rows), kept_positions

    def execute(self, requests):
        items, types, sizes = [], [], []
        for request in requests:
            req_items = _decode(pb_utils.get_input_tensor_by_name(request, "SESSION_ITEMS").as_numpy())
            req_types = _decode(pb_utils.get_input_tensor_by_name(request, "SESSION_TYPES").as_numpy())
            items += req_items
            types += req_types
            sizes.append(len(req_items))

        item_tensor, type_tensor, original_positions = self._encode(items, types)
        ranked = rank_with_attribution(self.model, item_tensor, type_tensor, self.n_candidates, self.attribute,
                                       self.window)
        rec_ids = ranked.items.cpu().numpy()
        scores = ranked.scores.cpu().numpy().astype(np.float32)
        attr_pos = ranked.attr_pos.cpu().numpy()
        attr_drop = ranked.attr_drop.cpu().numpy().astype(np.float32)

        # Map model positions (in the max_len row) back to positions in the caller's row.
        caller_pos = np.full_like(attr_pos, -1)
        for b, kept in enumerate(original_positions):
            offset = self.max_len - len(kept)
            for c, p in enumerate(attr_pos[b]):
                if p >= offset:
                    caller_pos[b, c] = kept[p - offset]
        names = np.array([[self.vocab.decode(int(i)).encode() for i in row] for row in rec_ids], dtype=object)

        responses, start = [], 0
        for size in sizes:
            part = slice(start, start + size)
            start += size
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("REC_ITEMS", names[part]),
                pb_utils.Tensor("REC_SCORES", scores[part]),
                pb_utils.Tensor("ATTR_POS", caller_pos[part].astype(np.int64)),
                pb_utils.Tensor("ATTR_DROP", attr_drop[part]),
            ]))
        return responses
