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


def test_long_generated_chains_evaluate():
    """Generated run lists are long: 10,000 `|` terms, and `&` / `or` chains, parse flat."""
    cols = {"run": np.arange(20_000, dtype=np.int64), "mass": np.linspace(0, 300, 20_000)}
    expr = " | ".join(f"(run == {i})" for i in range(0, 20_000, 2))
    np.testing.assert_array_equal(evaluate_selection(expr, cols), cols["run"] % 2 == 0)
    wrapped = f"(mass > 100) & ({expr})"
    np.testing.assert_array_equal(evaluate_selection(wrapped, cols), (cols["run"] % 2 == 0) & (cols["mass"] > 100))
    ands = " and ".join(f"run != {i}" for i in range(5_000))
    assert evaluate_selection(ands, cols).sum() == 15_000
    assert selection_names(expr) == {"run"}
    # precedence is Python's: | binds tighter than comparisons, `not` looser than |
    np.testing.assert_array_equal(evaluate_selection("not (run < 3) | (run > 5)", {"run": np.arange(8)}),
                                  ~((np.arange(8) < 3) | (np.arange(8) > 5)))
    np.testing.assert_array_equal(evaluate_selection("run | 1 == 3", {"run": np.arange(4)}),
                                  (np.arange(4) | 1) == 3)


def test_huge_powers_and_constants_are_bounded():
    cols = {"mass": np.array([1.0, 2.0])}
    np.testing.assert_array_equal(evaluate_selection("mass < 10 ** 10 ** 8", cols), [True, True])  # inf, at once
    with pytest.raises(DataError, match=r"beyond 64 bits.*Received: selection="):
        evaluate_selection("mass < 123456789012345678901234567890", cols)
    np.testing.assert_array_equal(evaluate_selection("mass / 0 > 1", cols), [True, True])  # inf, no warning


@pytest.mark.parametrize("expr", ["sqrt(mass, mass) > 1", "abs() > 1", "log(mass, mass, mass) > 0"])
def test_functions_take_exactly_one_argument_and_never_write_into_a_column(expr):
    mass = np.array([4.0, 9.0])
    with pytest.raises(DataError, match=r"takes exactly one.*Received: selection="):
        evaluate_selection(expr, {"mass": mass})
    np.testing.assert_array_equal(mass, [4.0, 9.0])


@pytest.mark.parametrize("expr", ["", "   ", "(" * 250 + "mass" + ")" * 250 + " > 1", "(" * 250 + "mass > 1" + ")" * 250, "mass > (1"])
def test_empty_deep_or_unbalanced_selections_are_refused(expr):
    with pytest.raises(DataError, match="Received: selection="):
        evaluate_selection(expr, {"mass": np.ones(2)})
