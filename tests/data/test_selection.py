from __future__ import annotations

import numpy as np
import pytest

from hepflow.data import DataError
from hepflow.data.selection import evaluate_selection, selection_names


def test_selection_values():
    cols = {"mass": np.array([10.0, 150.0, 200.0, 300.0]), "eta": np.array([0.5, -2.5, 1.0, 0.0])}
    mask = evaluate_selection("(mass > 100) & (mass < 250) & (abs(eta) < 2)", cols)
    np.testing.assert_array_equal(mask, [False, False, True, False])
    np.testing.assert_array_equal(evaluate_selection("100 < mass <= 300", cols), [False, True, True, True])
    np.testing.assert_array_equal(evaluate_selection("not (mass > 100) or eta == 0", cols),
                                  [True, False, False, True])
    assert selection_names("abs(eta) < 2 and mass > 1") == {"eta", "mass"}


@pytest.mark.parametrize("expr", ["__import__('os')", "mass.real > 0", "mass[0] > 1", "lambda: 1", "'a' == mass"])
def test_selection_rejects_anything_but_arithmetic(expr):
    with pytest.raises(DataError, match="Received: selection="):
        evaluate_selection(expr, {"mass": np.ones(3)})


def test_selection_errors():
    with pytest.raises(DataError, match="not a key"):
        evaluate_selection("pt > 1", {"mass": np.ones(3)})
    with pytest.raises(DataError, match="booleans"):
        evaluate_selection("mass + 1", {"mass": np.ones(3)})
    with pytest.raises(DataError, match="valid expression"):
        evaluate_selection("mass >", {"mass": np.ones(3)})
