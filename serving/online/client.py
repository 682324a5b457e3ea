"""Thin async Triton client: sessions in, ranked candidates with attributions out.

Positions: ``ATTR_POS`` counts the row's non-empty ``SESSION_ITEMS`` entries from the oldest, which
is the index into the session the worker holds; the Triton backend is the one place that
translates to and from model positions, so nothing here shifts indices.
"""
from __future__ import annotations

import itertools
import time
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from contract.ranking import Candidate

# What a Triton call can fail with that is not a bug in this code: serve the fallback instead.
# OSError covers ConnectionError (and CircuitOpen below) and TimeoutError.
TRITON_ERRORS: tuple[type[BaseException], ...] = (InferenceServerException, OSError)

SessionRow = tuple[Sequence[str], Sequence[str]]  # (item_ids, event_types), oldest first


def left_padded_bytes(rows: Sequence[Sequence[str]], length: int) -> np.ndarray:
    """[B, length] object array of UTF-8 bytes, each row right-aligned and padded with b""."""
    if any(len(r) > length for r in rows):
        raise ValueError(f"a session has more than {length} interactions; the worker caps them at that")
    return np.array([[b""] * (length - len(r)) + [v.encode() for v in r] for r in rows], dtype=object)


def parse_response(items: np.ndarray, scores: np.ndarray, positions: np.ndarray,
                   drops: np.ndarray) -> list[Iterator[Candidate]]:
    """Output tensors [B, C] -> per row, its candidates best first, built as they are read:
    post-processing usually stops after the first k or so of the C candidates."""
    # tolist() first: Python numbers from C in one go, not a numpy scalar per element.
    return [map(Candidate, map(bytes.decode, row_items), row_scores, row_positions, row_drops)
            for row_items, row_scores, row_positions, row_drops
            in zip(items.tolist(), scores.tolist(), positions.tolist(), drops.tolist())]


class Ranked(NamedTuple):
    """One Triton call's answer."""

    candidates: list[Iterator[Candidate]]  # per session, best first
    version: str  # "model:version" that ranked them
    catalogue: str  # the catalogue that model was trained on (its items are that catalogue's)


class CircuitOpen(ConnectionError):
    """Every Triton URL failed within its cool-down: the caller serves its fallback at once."""


class Breaker:
    """One failure opens the circuit for ``cooldown_s``; the next call after that is the trial."""

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic):
        self.cooldown_s, self.clock = cooldown_s, clock
        self.open_until = 0.0

    @property
    def closed(self) -> bool:
        return self.clock() >= self.open_until

    def record(self, ok: bool) -> None:
        self.open_until = 0.0 if ok else self.clock() + self.cooldown_s


class TritonRanker:
    """Spreads batches round-robin over the Triton servers whose circuit is closed."""

    def __init__(self, urls: Sequence[str], model_name: str, timeout_s: float, max_len: int,
                 cooldown_s: float = 2.0):
        # gRPC's reconnect backoff grows to two minutes by default: a Triton back after an outage
        # would keep failing fast long after it is ready. Cap it near the breaker's cool-down.
        reconnect = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                     ("grpc.max_reconnect_backoff_ms", int(cooldown_s * 1000)),
                     ("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]
        self.clients = [grpcclient.InferenceServerClient(url=url, channel_args=reconnect) for url in urls]
        self.breakers = [Breaker(cooldown_s) for _ in urls]
        self.turn = itertools.cycle(range(len(urls)))
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.max_len = max_len  # one fixed width lets Triton batch requests from several workers

    async def ready(self) -> bool:
        return any([await client.is_model_ready(self.model_name) for client in self.clients])

    def _next(self) -> int:
        for _ in self.clients:
            n = next(self.turn)
            if self.breakers[n].closed:
                return n
        raise CircuitOpen(f"all {len(self.clients)} Triton server(s) failed within the last "
                          f"{self.breakers[0].cooldown_s:.0f} s")

    async def rank(self, sessions: Sequence[SessionRow]) -> Ranked:
        n = self._next()
        tensors = []
        for name, column in (("SESSION_ITEMS", 0), ("SESSION_TYPES", 1)):
            array = left_padded_bytes([s[column] for s in sessions], self.max_len)
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        try:
            result = await self.clients[n].infer(self.model_name, tensors, client_timeout=self.timeout_s)
        except TRITON_ERRORS:
            self.breakers[n].record(ok=False)
            raise
        self.breakers[n].record(ok=True)
        rankings = parse_response(result.as_numpy("REC_ITEMS"), result.as_numpy("REC_SCORES"),
                                  result.as_numpy("ATTR_POS"), result.as_numpy("ATTR_DROP"))
        # None from a version exported before the backend named its catalogue: unknown, so the
        # worker treats it as another catalogue's.
        catalogue = result.as_numpy("CATALOGUE")
        return Ranked(rankings, f"{self.model_name}:{result.get_response().model_version}",
                      catalogue[0][0].decode() if catalogue is not None and len(catalogue) else "")
