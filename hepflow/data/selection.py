"""Row selections: small boolean expressions over per-row features, evaluated safely.

``"(mass > 100) & (mass < 250) & (abs(eta) < 2)"`` is parsed with :mod:`ast` and
evaluated with numpy; only comparisons, arithmetic, ``& | ~``, ``and or not``
(applied elementwise), ``abs``, numbers and feature names are allowed.
"""
from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping

import numpy as np

from hepflow.errors import DataError

__all__ = ["selection_names", "evaluate_selection"]

_BINOPS: dict[type, Callable] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow, ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
_CMPOPS: dict[type, Callable] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_FUNCS: dict[str, Callable] = {"abs": np.abs, "sqrt": np.sqrt, "log": np.log}


def _parse(expression: str) -> ast.Expression:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as e:
        raise DataError(f"Selection is not a valid expression ({e.msg}). Received: selection={expression!r}") from None
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp,
                               ast.Name, ast.Constant, ast.Load, ast.Call, ast.Invert, ast.Not,
                               ast.USub, ast.And, ast.Or)) or type(node) in _BINOPS or type(node) in _CMPOPS
        if isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords
        if isinstance(node, ast.Constant):
            ok = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        if not ok:
            raise DataError(
                f"Selection may use feature names, numbers, comparisons, arithmetic, & | ~ and "
                f"{sorted(_FUNCS)}; found {type(node).__name__}. Received: selection={expression!r}"
            )
    return tree


def selection_names(expression: str) -> set[str]:
    """Feature names referenced by a selection expression."""
    tree = _parse(expression)
    funcs = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - funcs


def evaluate_selection(expression: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluates a selection over 1-D columns and returns a boolean mask."""
    tree = _parse(expression)

    def ev(node: ast.AST):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in columns:
                raise DataError(
                    f"Selection refers to '{node.id}', which is not a key of the sample; "
                    f"expected one of {sorted(columns)}. Received: selection={expression!r}"
                )
            return columns[node.id]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return np.negative(v) if isinstance(node.op, ast.USub) else np.logical_not(v)
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            fn = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = vals[0]
            for v in vals[1:]:
                out = fn(out, v)
            return out
        if isinstance(node, ast.Compare):
            left, out = ev(node.left), None
            for op, comp in zip(node.ops, node.comparators):
                right = ev(comp)
                r = _CMPOPS[type(op)](left, right)
                out = r if out is None else np.logical_and(out, r)
                left = right
            return out
        if isinstance(node, ast.Call):
            return _FUNCS[node.func.id](*[ev(a) for a in node.args])
        raise AssertionError(type(node))  # unreachable: _parse rejects everything else

    n = len(next(iter(columns.values()))) if columns else 0
    mask = np.asarray(ev(tree))
    if mask.dtype != bool:
        raise DataError(f"Selection must evaluate to booleans. Received: selection={expression!r} (dtype {mask.dtype})")
    return np.broadcast_to(mask, (n,)).copy()
