"""Bounded symbolic comparison: size caps before any parser, and a wall-clock limit.

Parsers and simplifiers (sympy, math-verify) can take seconds on pathological model output
(``\\frac{`` ten thousand times, a thousand open parentheses). :func:`too_complex` rejects such
strings before a parser ever sees them; :func:`time_limit` bounds what remains (main thread
only: it uses ``SIGALRM``; elsewhere it does not limit).
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_NESTING",
    "SymbolicTimeout",
    "symbolic_equal",
    "time_limit",
    "too_complex",
]

#: Longest answer string handed to a symbolic parser (MATH golds are < 200 characters).
MAX_ANSWER_CHARS = 600
#: Deepest bracket nesting handed to a symbolic parser.
MAX_NESTING = 24


class SymbolicTimeout(Exception):
    """A symbolic comparison ran past its time limit."""


def too_complex(s: str) -> str | None:
    """Why ``s`` must not reach a symbolic parser (too long, too deeply nested), or None."""
    if len(s) > MAX_ANSWER_CHARS:
        return f"{len(s)} characters > {MAX_ANSWER_CHARS}"
    depth = deepest = 0
    for ch in s:
        if ch in "({[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")}]":
            depth = max(0, depth - 1)
    if deepest > MAX_NESTING:
        return f"nesting depth {deepest} > {MAX_NESTING}"
    if s.count("\\frac") > MAX_NESTING:
        return f"{s.count(chr(92) + 'frac')} fractions > {MAX_NESTING}"
    return None


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`SymbolicTimeout` in the body after ``seconds`` (main thread only)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum: int, frame: object) -> None:
        raise SymbolicTimeout(f"symbolic comparison took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _top_level_prefix(s: str) -> str:
    """``s`` up to its first comma outside brackets (all of ``s`` when there is none)."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch == "," and depth == 0:
            return s[:i]
    return s


def _latex(s: str):
    """LaTeX as sympy's own LaTeX parser reads it in the harness: the longest parsable prefix
    (so ``1,-2`` reads as ``1``) and juxtaposition as a product (``1000(26)`` is 26000)."""
    from latex2sympy2_extended import latex2sympy

    s = re.sub(r"(?<=[\d)])\s*\(", "*(", _top_level_prefix(s))
    return latex2sympy(s)


def _parse(s: str):
    """A sympy object for ``s`` (LaTeX first, then a plain expression), or ``s`` itself."""
    from sympy.parsing.sympy_parser import parse_expr

    for parser in (_latex, parse_expr):
        for text in (s.replace("\\\\", "\\"), s):
            try:
                return parser(text)
            except SymbolicTimeout:
                raise
            except Exception:
                continue
    return s


def _sym_equal(a: str, b: str) -> bool:
    from sympy import N, simplify

    x, y = _parse(a), _parse(b)
    checks = (
        lambda: str(x) == str(y) or x == y,
        lambda: x.equals(y) or simplify(x - y) == 0,
        lambda: abs(x.lhs - x.rhs).equals(abs(y.lhs - y.rhs)),
        lambda: _rel_close(float(N(x)), float(N(y))),
        lambda: (
            x.shape == y.shape
            and x.applyfunc(lambda v: round(v, 3)).equals(y.applyfunc(lambda v: round(v, 3)))
        ),
    )
    for check in checks:
        try:
            if check():
                return True
        except SymbolicTimeout:
            raise
        except Exception:
            continue
    return False


def _rel_close(a: float, b: float) -> bool:
    import math

    return math.isclose(b, a, rel_tol=1e-4)


def symbolic_equal(a: str, b: str, timeout: float = 3.0) -> bool:
    """Whether sympy finds ``a`` and ``b`` equal (parsed as LaTeX or as expressions).

    Strings that :func:`too_complex` rejects are not parsed (not equal); a comparison that
    runs past ``timeout`` seconds counts as not equal.
    """
    if too_complex(a) or too_complex(b):
        return False
    try:
        with time_limit(timeout):
            return _sym_equal(a, b)
    except SymbolicTimeout:
        return False
