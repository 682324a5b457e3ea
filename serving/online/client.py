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
from tritonclient.utils import InferenceServerException

from contract.ranking import Candidate

# What a Triton call can fail with that is not a bug in this code: serve the fallback instead.
# OSError covers ConnectionError (and CircuitOpen below) and TimeoutError.
TRITON_ERRORS: tuple[type[BaseException], ...] = (InferenceServerException, OSError)

SessionRow = tuple[Sequence[str], Sequence[str]]  # (item_ids, event_types), oldest first


# Request widths: the smallest that holds a batch's longest session. Padding every row to max_len
# cost more than the model on real sessions (4 interactions on average) in serialising and parsing
# the b"" entries on both sides; a few fixed widths still let Triton batch requests of the same one.
WIDTHS = (8, 16, 32)
EMPTY_ENTRY = (0).to_bytes(4, "little")  # b"" in Triton's BYTES wire format


def _check_width(rows: Sequence[Sequence[str]], length: int) -> None:
    if any(len(r) > length for r in rows):
        raise ValueError(f"a session has more than {length} interactions; the worker caps them at that")


def left_padded_bytes(rows: Sequence[Sequence[str]], length: int) -> np.ndarray:
    """[B, length] object array of UTF-8 bytes, each row right-aligned and padded with b""."""
    _check_width(rows, length)
    return np.array([[b""] * (length - len(r)) + [v.encode() for v in r] for r in rows], dtype=object)


def left_padded_wire(rows: Sequence[Sequence[str]], length: int) -> bytes:
    """``left_padded_bytes(rows, length)`` in Triton's BYTES wire format (each entry its 4-byte
    little-endian length, then its bytes), built directly: tritonclient's serializer visits every
    padding entry through numpy, 20 times slower."""
    _check_width(rows, length)
    parts = []
    for row in rows:
        parts.append(EMPTY_ENTRY * (length - len(row)))
        for value in row:
            encoded = value.encode()
            parts += (len(encoded).to_bytes(4, "little"), encoded)
    return b"".join(parts)


def request_width(rows: Sequence[Sequence[str]], max_len: int) -> int:
    longest = max((len(r) for r in rows), default=0)
    return next((w for w in WIDTHS if longest <= w < max_len), max_len)


class WireInput(grpcclient.InferInput):
    """A BYTES input whose wire content is given as is (``left_padded_wire``)."""

    def __init__(self, name: str, shape: list[int], wire: bytes):
        super().__init__(name, shape, "BYTES")
        self._raw_content = wire  # what set_data_from_numpy stores after serialising


def wire_strings(wire: bytes, count: int) -> list[str]:
    """The first ``count`` entries of a BYTES tensor in wire format, decoded from UTF-8."""
    out, offset, from_bytes = [], 0, int.from_bytes
    for _ in range(count):
        size = from_bytes(wire[offset:offset + 4], "little")
        offset += 4
        out.append(wire[offset:offset + size].decode())
        offset += size
    return out


def raw_output(response, name: str) -> bytes:
    """An output's wire content in a ModelInferResponse (raw_output_contents follow ``outputs``)."""
    index = next(i for i, output in enumerate(response.outputs) if output.name == name)
    return response.raw_output_contents[index]


def parse_response(items: Sequence[str], scores: np.ndarray, positions: np.ndarray,
                   drops: np.ndarray) -> list[Iterator[Candidate]]:
    """Output tensors [B, C] (``items`` flat, row after row) -> per row, its candidates best
    first, built as they are read: post-processing usually stops after the first k or so of the C."""
    width = scores.shape[1] if scores.ndim == 2 else 0
    # tolist() first: Python numbers from C in one go, not a numpy scalar per element.
    return [map(Candidate, items[row * width:(row + 1) * width], row_scores, row_positions, row_drops)
            for row, (row_scores, row_positions, row_drops)
            in enumerate(zip(scores.tolist(), positions.tolist(), drops.tolist()))]


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
        width = request_width([s[0] for s in sessions], self.max_len)
        tensors = [WireInput(name, [len(sessions), width], left_padded_wire([s[column] for s in sessions], width))
                   for name, column in (("SESSION_ITEMS", 0), ("SESSION_TYPES", 1))]
        try:
            result = await self.clients[n].infer(self.model_name, tensors, client_timeout=self.timeout_s)
        except TRITON_ERRORS:
            self.breakers[n].record(ok=False)
            raise
        self.breakers[n].record(ok=True)
        scores = result.as_numpy("REC_SCORES")
        rankings = parse_response(wire_strings(raw_output(result.get_response(), "REC_ITEMS"), scores.size),
                                  scores, result.as_numpy("ATTR_POS"), result.as_numpy("ATTR_DROP"))
        # None from a version exported before the backend named its catalogue: unknown, so the
        # worker treats it as another catalogue's.
        catalogue = result.as_numpy("CATALOGUE")
        return Ranked(rankings, f"{self.model_name}:{result.get_response().model_version}",
                      catalogue[0][0].decode() if catalogue is not None and len(catalogue) else "")
