"""The client's side of the Triton contract: request rows and response parsing (no server)."""
import numpy as np
import pytest

from contract.ranking import Candidate
from serving.online.client import left_padded_bytes, parse_response


def test_left_padded_bytes_right_aligns_utf8_rows():
    array = left_padded_bytes([["a", "é"], ["c"], []], 3)
    assert array.dtype == object and array.shape == (3, 3)
    assert array.tolist() == [[b"", b"a", "é".encode()], [b"", b"", b"c"], [b"", b"", b""]]


def test_left_padded_bytes_refuses_a_row_longer_than_the_width():
    with pytest.raises(ValueError, match="more than 2"):
        left_padded_bytes([["a"], ["a", "b", "c"]], 2)


def test_parse_response_keeps_attr_pos_as_the_session_index():
    items = np.array([[b"x", b"y"], [b"z", b"w"]], dtype=object)
    scores = np.array([[2.5, 1.0], [0.5, -1.0]], dtype=np.float32)
    positions = np.array([[3, -1], [0, 0]], dtype=np.int64)
    drops = np.array([[0.25, 0.0], [1.5, 0.75]], dtype=np.float32)
    assert parse_response(items, scores, positions, drops) == [
        [Candidate("x", 2.5, 3, 0.25), Candidate("y", 1.0, -1, 0.0)],
        [Candidate("z", 0.5, 0, 1.5), Candidate("w", -1.0, 0, 0.75)],
    ]
    ranked = parse_response(items, scores, positions, drops)
    assert all(type(c.attr_index) is int and type(c.score) is float for row in ranked for c in row)
