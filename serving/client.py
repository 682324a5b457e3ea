"""Thin async Triton client: sessions in, ranked candidates with attributions out."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import np_to_triton_dtype


@dataclass(frozen=True)
class ModelRanking:
    items: list[str]
    scores: list[float]
    attr_index: list[int]  # index into the session's interactions, -1 if none supports the item
    attr_drop: list[float]


def pad_left(rows: list[tuple[str, ...]], length: int) -> np.ndarray:
    return np.array([[b""] * (length - len(r)) + [v.encode() for v in r[-length:]] for r in rows], dtype=object)


class TritonRanker:
    def __init__(self, url: str, model_name: str, timeout_s: float, max_len: int):
        self.client = grpcclient.InferenceServerClient(url=url)
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.max_len = max_len

    async def ready(self) -> bool:
        return await self.client.is_model_ready(self.model_name)

    async def rank(self, sessions: list[tuple[tuple[str, ...], tuple[str, ...]]]) -> tuple[list[ModelRanking], str]:
        """``sessions``: (item_ids, event_types) per request row. Returns rankings and model version."""
        length = self.max_len  # one fixed shape lets Triton batch requests from several workers
        tensors = []
        for name, array in (("SESSION_ITEMS", pad_left([s[0] for s in sessions], length)),
                            ("SESSION_TYPES", pad_left([s[1] for s in sessions], length))):
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        result = await self.client.infer(self.model_name, tensors, client_timeout=self.timeout_s)
        items, scores = result.as_numpy("REC_ITEMS"), result.as_numpy("REC_SCORES")
        positions, drops = result.as_numpy("ATTR_POS"), result.as_numpy("ATTR_DROP")
        rankings = []
        for row, (session_items, _) in enumerate(sessions):
            offset = length - min(length, len(session_items))  # padded position -> session index
            start = len(session_items) - min(length, len(session_items))
            rankings.append(ModelRanking(
                items=[v.decode() for v in items[row]],
                scores=scores[row].tolist(),
                attr_index=[int(p) - offset + start if p >= 0 else -1 for p in positions[row]],
                attr_drop=drops[row].tolist(),
            ))
        version = result.get_response().model_version
        return rankings, f"{self.model_name}:{version}"

    async def close(self) -> None:
        await self.client.close()
