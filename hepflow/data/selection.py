"""Row selections: small boolean expressions over per-row features, evaluated safely.

``"(mass > 100) & (mass < 250) & (abs(eta) < 2)"`` is parsed with :mod:`ast` and
evaluated with numpy; only comparisons, arithmetic, ``& | ~``, ``and or not``
(applied elementwise), ``abs``, numbers and feature names are allowed.
"""
from __future__ import annotations

import ast
import io
import operator
import tokenize
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


_CHAINS = ("or", "and", "|", "&")  # lowest precedence first
_CMP_TOKENS = {"<", ">", "==", "!=", "<=", ">="}
_MAX_INT = 2**63 - 1


def _bad(expression: str, why: str) -> DataError:
    return DataError(f"Selection {why}. Received: selection={expression!r}")


def _top_tokens(text: str, expression: str) -> list[tokenize.TokenInfo]:
    """The tokens of ``text`` outside parentheses (``(`` and ``)`` at the top included, to find matches)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as e:
        raise _bad(expression, f"is not a valid expression ({e.args[0]})") from None
    out, depth = [], 0
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT):
            continue
        if tok.string in ("(", "["):
            if depth == 0:
                out.append(tok)
            depth += 1
        elif tok.string in (")", "]"):
            depth -= 1
            if depth == 0:
                out.append(tok)
        elif depth == 0:
            out.append(tok)
    return out


def _build(text: str, expression: str, nesting: int = 0):
    """A selection as nested ``(op, [parts])`` chains of ``or and | &`` over validated ``ast`` leaves.

    Long chains (a generated list of 10,000 ``|`` terms) are split here, flat, instead of by
    Python's parser, which recurses once per term.
    """
    if nesting > 100:
        raise _bad(expression, "nests parentheses more than 100 deep")
    text = text.strip()
    toks = _top_tokens(text, expression)
    if not toks:
        raise _bad(expression, "is empty")
    if toks[0].string == "(" and len(toks) == 2 and toks[1].string == ")" and toks[1].end[1] == len(text):
        return _build(text[1:-1], expression, nesting + 1)
    names = [t.string for t in toks]
    splittable = {"or", "and"} | ({"|", "&"} if not (_CMP_TOKENS & set(names)) and names[0] != "not" else set())
    for op in _CHAINS:
        if op in splittable and op in names:
            cuts = [t.start[1] for t in toks if t.string == op]
            ends = [t.end[1] for t in toks if t.string == op]
            parts = [text[a:b] for a, b in zip([0] + ends, cuts + [len(text)])]
            return (op, [_build(part, expression, nesting) for part in parts])
    return ("ast", _parse_leaf(text, expression))


def _parse_leaf(text: str, expression: str) -> ast.Expression:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise _bad(expression, f"is not a valid expression ({e.msg})") from None
    except (RecursionError, MemoryError):
        raise _bad(expression, "nests too deeply; write it as a flat chain of & or | terms") from None
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp,
                               ast.Name, ast.Constant, ast.Load, ast.Call, ast.Invert, ast.Not,
                               ast.USub, ast.And, ast.Or)) or type(node) in _BINOPS or type(node) in _CMPOPS
        if isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords
            if ok and len(node.args) != 1:
                raise _bad(expression, f"calls {node.func.id}() with {len(node.args)} arguments; it takes exactly one")
            if ok and isinstance(node.args[0], ast.Starred):
                ok = False
        if isinstance(node, ast.Constant):
            ok = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
            if ok and isinstance(node.value, int) and abs(node.value) > _MAX_INT:
                raise _bad(expression, f"holds the integer {node.value:.3e}, beyond 64 bits")
        if not ok:
            raise _bad(expression, f"may use feature names, numbers, comparisons, arithmetic, & | ~ and "
                                   f"{sorted(_FUNCS)}; found {type(node).__name__}")
    return tree


def _parse(expression: str):
    if not isinstance(expression, str):
        raise _bad(expression, "must be a string")
    return _build(expression.replace("\n", " ").replace("\r", " "), expression)


def _leaves(node):
    stack = [node]
    while stack:
        kind, body = stack.pop()
        if kind == "ast":
            yield body
        else:
            stack.extend(body)


def selection_names(expression: str) -> set[str]:
    """Feature names referenced by a selection expression."""
    out: set[str] = set()
    for tree in _leaves(_parse(expression)):
        funcs = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
        out |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - funcs
    return out


def evaluate_selection(expression: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluates a selection over 1-D columns and returns a boolean mask.

    Numbers are 64-bit (integers beyond 64 bits are refused); powers are taken in float64,
    so ``10 ** 10 ** 8`` is ``inf`` at once, never a huge Python integer.
    """
    parsed = _parse(expression)

    def ev(node: ast.AST):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return np.int64(node.value) if isinstance(node.value, int) else np.float64(node.value)
        if isinstance(node, ast.Name):
            if node.id not in columns:
                raise DataError(
                    f"Selection refers to '{node.id}', which is not a key of the sample; "
                    f"expected one of {sorted(columns)}. Received: selection={expression!r}"
                )
            return columns[node.id]
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow):
                return np.power(np.asarray(left, np.float64), np.asarray(right, np.float64))
            return _BINOPS[type(node.op)](left, right)
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
            return _FUNCS[node.func.id](ev(node.args[0]))
        raise AssertionError(type(node))  # unreachable: _parse_leaf rejects everything else

    def ev_chain(node):
        kind, body = node
        if kind == "ast":
            try:
                return ev(body)
            except RecursionError:
                raise _bad(expression, "nests too deeply; write it as a flat chain of & or | terms") from None
        values = [ev_chain(part) for part in body]
        if kind in ("and", "or"):
            fn = np.logical_and if kind == "and" else np.logical_or
        else:
            fn = _BINOPS[ast.BitAnd if kind == "&" else ast.BitOr]
        out = values[0]
        for v in values[1:]:
            out = fn(out, v)
        return out

    n = len(next(iter(columns.values()))) if columns else 0
    with np.errstate(all="ignore"):
        mask = np.asarray(ev_chain(parsed))
    if mask.dtype != bool:
        raise DataError(f"Selection must evaluate to booleans. Received: selection={expression!r} (dtype {mask.dtype})")
    return np.broadcast_to(mask, (n,)).copy()
