"""Thin async Triton client: sessions in, ranked candidates with attributions out.

Positions: ``ATTR_POS`` counts the row's non-empty ``SESSION_ITEMS`` entries from the oldest, which
is the index into the session the worker holds; the Triton backend is the one place that
translates to and from model positions, so nothing here shifts indices.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from contract.ranking import Candidate

# What a Triton call can fail with that is not a bug in this code: serve the fallback instead.
TRITON_ERRORS: tuple[type[BaseException], ...] = (InferenceServerException, ConnectionError, TimeoutError, OSError)

SessionRow = tuple[Sequence[str], Sequence[str]]  # (item_ids, event_types), oldest first


def left_padded_bytes(rows: Sequence[Sequence[str]], length: int) -> np.ndarray:
    """[B, length] object array of UTF-8 bytes, each row right-aligned and padded with b""."""
    if any(len(r) > length for r in rows):
        raise ValueError(f"a session has more than {length} interactions; the worker caps them at that")
    return np.array([[b""] * (length - len(r)) + [v.encode() for v in r] for r in rows], dtype=object)


def parse_response(items: np.ndarray, scores: np.ndarray, positions: np.ndarray,
                   drops: np.ndarray) -> list[list[Candidate]]:
    """Output tensors [B, C] -> one ranked candidate list per row."""
    return [[Candidate(item.decode(), float(score), int(pos), float(drop))
             for item, score, pos, drop in zip(*row)]
            for row in zip(items, scores, positions, drops)]


class TritonRanker:
    def __init__(self, url: str, model_name: str, timeout_s: float, max_len: int):
        self.client = grpcclient.InferenceServerClient(url=url)
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.max_len = max_len  # one fixed width lets Triton batch requests from several workers

    async def ready(self) -> bool:
        return await self.client.is_model_ready(self.model_name)

    async def rank(self, sessions: Sequence[SessionRow]) -> tuple[list[list[Candidate]], str]:
        """Ranked candidates per session, and the model version that ranked them."""
        tensors = []
        for name, column in (("SESSION_ITEMS", 0), ("SESSION_TYPES", 1)):
            array = left_padded_bytes([s[column] for s in sessions], self.max_len)
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        result = await self.client.infer(self.model_name, tensors, client_timeout=self.timeout_s)
        rankings = parse_response(result.as_numpy("REC_ITEMS"), result.as_numpy("REC_SCORES"),
                                  result.as_numpy("ATTR_POS"), result.as_numpy("ATTR_DROP"))
        return rankings, f"{self.model_name}:{result.get_response().model_version}"

    async def close(self) -> None:
        await self.client.close()
