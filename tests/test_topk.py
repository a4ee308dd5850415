"""TopK breaks ties deterministically, lowest index first, exactly as np.argmax does.

Quantized (INT8) outputs tie often; an arbitrary pick changed the INT8 demo's
measured accuracy (issue 13, "Measurement honesty").
"""

from __future__ import annotations

import numpy as np
import pytest

from edgerun.pipeline import TopK

# Ties at the top, in the middle and at every k boundary; long enough that
# argpartition's introselect does not just happen to return index order.
TIED = np.array([3, 7, 1, 7, 7, 2, 3, 7, 0, 3, 1, 7, 2, 2, 7, 3, 0, 1, 7, 3, 5, 5, 7, 1, 0, 7, 3, 2], dtype=np.float32)


def _expected(row: np.ndarray, k: int) -> list[int]:
    """The reference order: value descending, then index ascending."""
    return sorted(range(row.size), key=lambda i: (-float(row[i]), i))[:k]


@pytest.mark.parametrize("k", range(1, TIED.size + 1))
def test_ties_go_to_the_lowest_index_for_every_k(k: int) -> None:
    top = TopK(k, ()).select(TIED)
    assert [p.index for p in top] == _expected(TIED, k)
    assert top[0].index == int(np.argmax(TIED))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8, np.int32])
@pytest.mark.parametrize("seed", range(20))
def test_top1_is_argmax_on_quantized_rows(dtype: type, seed: int) -> None:
    # Few distinct levels, like an INT8 softmax output: ties at the top are the common case.
    rng = np.random.default_rng(seed)
    row = rng.integers(0, 4, size=(1, 10)).astype(dtype)
    if dtype in (np.uint8,):
        row[0, rng.integers(10)] = 250  # large unsigned values: negating them would wrap
    for k in (1, 3, 10):
        indices = [p.index for p in TopK(k, ()).select(row)]
        assert indices == _expected(row[0], k)
        assert indices[0] == int(np.argmax(row[0]))


def test_all_equal_row_is_index_order() -> None:
    row = np.full(64, 0.5, dtype=np.float32)
    assert [p.index for p in TopK(5, ()).select(row)] == [0, 1, 2, 3, 4]
    assert TopK(1, ()).select(row)[0].index == 0


class _StubRuntime:
    """Returns scripted post-processed outputs through the real TopK, as a Runtime would."""

    def __init__(self, rows: list[list[float]]) -> None:
        self._rows = iter(np.asarray(r, dtype=np.float32).reshape(1, -1) for r in rows)

    def run(self, _x: object) -> object:
        from types import SimpleNamespace

        row = next(self._rows)
        return SimpleNamespace(outputs={"probs": row}, top=TopK(1, ()).select(row))


def test_the_accuracy_measurement_counts_top1_ties() -> None:
    from edgerun.compress.gate import _correct_and_ties

    rows = [[0.1, 0.9, 0.9], [0.5, 0.2, 0.3], [0.4, 0.4, 0.2], [0.3, 0.3, 0.3], [0.2, 0.2, 0.6]]
    labels = np.array([2, 0, 0, 1, 2])  # row 0: tie -> index 1, wrong; row 2: tie -> index 0, right
    correct, ties = _correct_and_ties(_StubRuntime(rows), np.zeros((5, 1)), labels)
    assert (correct, ties) == (3, 3)  # ties in rows 0, 2, 3; a tie below the top (row 4) is not one
