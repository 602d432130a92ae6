from __future__ import annotations

import numpy as np
import pytest

from hepflow.data.plan import exact_counts


@pytest.mark.parametrize("rates,batch,expected", [
    ([1, 3], 256, [64, 192]), ([1, 1], 256, [128, 128]), ([1, 1, 1], 256, [86, 85, 85]),
    ([0.2, 0.8], 10, [2, 8]), ([1], 7, [7]),
])
def test_exact_counts(rates, batch, expected):
    counts = exact_counts(rates, batch)
    assert counts.tolist() == expected
    assert counts.sum() == batch


def test_exact_counts_follow_rates_within_one_row():
    rng = np.random.default_rng(0)
    for _ in range(100):
        rates = rng.uniform(0.1, 5, rng.integers(1, 6))
        b = int(rng.integers(8, 1024))
        c = exact_counts(rates, b)
        assert c.sum() == b
        assert np.all(np.abs(c - rates / rates.sum() * b) < 1)
