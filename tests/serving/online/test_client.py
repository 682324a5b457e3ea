"""The client's side of the Triton contract: request rows and response parsing (no server)."""
import numpy as np
import pytest
from tritonclient.utils import serialize_byte_tensor

from contract.ranking import Candidate
from serving.online.client import (
    CircuitOpen,
    TritonRanker,
    left_padded_bytes,
    left_padded_wire,
    parse_response,
    request_width,
    wire_strings,
)


def test_left_padded_bytes_right_aligns_utf8_rows():
    array = left_padded_bytes([["a", "é"], ["c"], []], 3)
    assert array.dtype == object and array.shape == (3, 3)
    assert array.tolist() == [[b"", b"a", "é".encode()], [b"", b"", b"c"], [b"", b"", b""]]


def test_left_padded_bytes_refuses_a_row_longer_than_the_width():
    with pytest.raises(ValueError, match="more than 2"):
        left_padded_bytes([["a"], ["a", "b", "c"]], 2)


def test_the_wire_format_is_tritonclients_own_and_reads_back():
    rows = [["a", "é"], ["c"], [], ["x" * 300]]
    wire = left_padded_wire(rows, 3)
    assert wire == serialize_byte_tensor(left_padded_bytes(rows, 3)).item()
    assert wire_strings(wire, 12) == ["", "a", "é", "", "", "c", "", "", "", "", "", "x" * 300]
    with pytest.raises(ValueError, match="more than 2"):
        left_padded_wire([["a", "b", "c"]], 2)


def test_a_request_is_as_wide_as_the_smallest_width_that_holds_its_longest_session():
    assert request_width([["a"], []], 50) == 8
    assert request_width([["a"] * 9], 50) == 16
    assert request_width([["a"] * 33], 50) == 50
    assert request_width([["a"] * 9], 10) == 10  # never wider than the model's max_len
    assert request_width([], 50) == 8


def test_parse_response_keeps_attr_pos_as_the_session_index():
    items = ["x", "y", "z", "w"]
    scores = np.array([[2.5, 1.0], [0.5, -1.0]], dtype=np.float32)
    positions = np.array([[3, -1], [0, 0]], dtype=np.int64)
    drops = np.array([[0.25, 0.0], [1.5, 0.75]], dtype=np.float32)
    assert [list(row) for row in parse_response(items, scores, positions, drops)] == [
        [Candidate("x", 2.5, 3, 0.25), Candidate("y", 1.0, -1, 0.0)],
        [Candidate("z", 0.5, 0, 1.5), Candidate("w", -1.0, 0, 0.75)],
    ]
    ranked = parse_response(items, scores, positions, drops)
    assert all(type(c.attr_index) is int and type(c.score) is float for row in ranked for c in row)


class FakeServer:
    def __init__(self, name: str):
        self.name, self.down, self.calls = name, False, 0

    async def infer(self, model_name, tensors, client_timeout):
        self.calls += 1
        if self.down:
            raise ConnectionError(f"{self.name} is down")
        return FakeResult(self.name)


class FakeResult:
    def __init__(self, version: str):
        self.version = version

    def as_numpy(self, name):
        return {"REC_SCORES": np.array([[1.0]], dtype=np.float32),
                "ATTR_POS": np.array([[-1]]), "ATTR_DROP": np.array([[0.0]], dtype=np.float32),
                "CATALOGUE": np.array([[b"synthetic"]], dtype=object)}[name]

    def get_response(self):
        outputs = [type("Output", (), {"name": name}) for name in ("REC_SCORES", "REC_ITEMS")]
        return type("Response", (), {"model_version": self.version, "outputs": outputs,
                                     "raw_output_contents": [b"", left_padded_wire([["a"]], 1)]})()


async def test_batches_go_round_robin_and_a_failed_server_is_skipped_until_its_cool_down_ends():
    now = [0.0]
    ranker = TritonRanker(["a:1", "b:1"], "m", timeout_s=1.0, max_len=3, cooldown_s=2.0)
    ranker.clients = [FakeServer("1"), FakeServer("2")]
    for breaker in ranker.breakers:
        breaker.clock = lambda: now[0]
    answers = [await ranker.rank([(("x",), ("view",))]) for _ in range(4)]
    assert [a.version for a in answers] == ["m:1", "m:2", "m:1", "m:2"]
    assert {a.catalogue for a in answers} == {"synthetic"}

    ranker.clients[0].down = True
    with pytest.raises(ConnectionError):
        await ranker.rank([(("x",), ("view",))])
    assert [(await ranker.rank([(("x",), ("view",))]))[1] for _ in range(3)] == ["m:2"] * 3
    ranker.clients[1].down = True
    with pytest.raises(ConnectionError):
        await ranker.rank([(("x",), ("view",))])
    with pytest.raises(CircuitOpen):  # both open: no call is even tried
        await ranker.rank([(("x",), ("view",))])
    assert ranker.clients[0].calls + ranker.clients[1].calls == 9

    now[0] = 2.5  # cool-down over: the next call is the trial, and a recovered server is used again
    ranker.clients[0].down = False
    assert (await ranker.rank([(("x",), ("view",))]))[1] == "m:1"
