"""Answer extraction from model completions and equivalence checking.

``extract_answer`` turns a free-form chain-of-thought completion into a short answer string,
following the conventions of few-shot CoT math evaluation (Wei et al. 2022; Minerva):

1. cut the completion at the start of the next few-shot item (the model often keeps writing
   new "Question:" / "Problem:" blocks after its answer);
2. prefer an explicit answer: the last ``\\boxed{...}``, "The final answer is ...", or
   "The answer is ...";
3. otherwise fall back to the last number in the text.

``is_equiv`` compares a prediction with a gold answer: cheap normalisation first (thousands
separators, currency, percent, units, trailing ``.0``), exact rational comparison of plain
numbers and fractions, and finally symbolic comparison with ``math-verify`` for LaTeX. It
never raises: malformed input and math-verify failures count as "not equal".
"""

from __future__ import annotations

import functools
import logging
import re
from fractions import Fraction

from rho.evaluate.symbolic import too_complex

__all__ = ["ANSWER_TYPES", "cut_at_stop", "extract_answer", "is_equiv", "normalize_answer"]

ANSWER_TYPES = ("number", "math", "choice", "auto")

#: Markers that start a new few-shot item: text after them is not part of the answer.
DEFAULT_STOPS = ("\n\nQuestion:", "\nQuestion:", "\n\nProblem:", "\nProblem:", "\n\nQ:", "\nQ:")

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|-?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_THOUSANDS_RE = re.compile(r"(?<![\d.])(-?\d{1,3}(?:,\d{3})+)(?![\d,]*\d)")
#: Explicit answer statements, most specific first; the last match of the first pattern that
#: matches anywhere wins.
_ANSWER_PATTERNS = (
    re.compile(r"final answer is\s*:?\s*([^\n]+)", re.IGNORECASE),
    re.compile(r"answer is\s*:?\s*([^\n]+)", re.IGNORECASE),
    re.compile(r"answer\s*:\s*([^\n]+)", re.IGNORECASE),
)
_CHOICE_RE = re.compile(r"(?:^|[\s(\[{:*])\(?([A-E])\)?(?=$|[\s.,)\]}:*])")
_UNIT_WORDS = (
    "dollars|dollar|cents|cent|percent|units|unit|meters|meter|metres|cm|km|kg|grams|gram|g|"
    "hours|hour|minutes|minute|seconds|second|days|day|weeks|week|years|year|miles|mile|mph|"
    "feet|foot|ft|inches|inch|pounds|pound|lbs|degrees|degree|liters|liter|ml|apples|people|"
    "students|points|pages|cookies|marbles|toys|cars|trees"
)
_TRAILING_UNIT_RE = re.compile(
    rf"^(.*?\d)\s*(?:\\(?:text|mbox|mathrm)\{{\s*)?(?:{_UNIT_WORDS})\b.*$", re.IGNORECASE
)


def cut_at_stop(text: str, stops: tuple[str, ...] | list[str] = DEFAULT_STOPS) -> str:
    """Return ``text`` up to the earliest occurrence of any stop sequence."""
    cut = len(text)
    for stop in stops:
        if stop:
            i = text.find(stop)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, or None."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start == -1:
        return None
    i = text.find("{", start)
    if i == -1:
        # "\boxed 5" form
        m = re.match(r"\\boxed\s+([^\s$]+)", text[start:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None  # unbalanced: malformed


def _strip_wrapping(ans: str) -> str:
    """Remove sentence punctuation, ``$`` math delimiters and "I hope it is correct"."""
    ans = re.split(r"\.\s+I hope it is correct|\n", ans, maxsplit=1)[0]
    ans = ans.strip()
    ans = ans.rstrip(".").strip()
    if ans.startswith("$") and ans.endswith("$") and len(ans) >= 2:
        ans = ans.strip("$").strip()
    return ans.rstrip(".").strip()


def _first_number(text: str) -> str | None:
    m = _NUMBER_RE.search(text.replace("$", " "))
    return m.group(0).rstrip(".") if m else None


def _last_number(text: str) -> str | None:
    found = _NUMBER_RE.findall(text)
    return found[-1].rstrip(".") if found else None


def _answer_statement(text: str) -> str | None:
    """The text after the last explicit "(final) answer is" / "answer:" statement, or None."""
    for pattern in _ANSWER_PATTERNS:
        matches = list(pattern.finditer(text))
        if matches:
            return matches[-1].group(1)
    return None


_CHOICE_STATEMENT_RE = re.compile(
    r"(?:answer|option|choice)\s+is\s*:?\s*(?:option\s+|choice\s+)?\(?([A-Ea-e])\)?(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_PAREN_LETTER_RE = re.compile(r"\(([A-E])\)")


def _extract_choice(text: str) -> str | None:
    """The chosen letter: the last "answer/option/choice is (x)" (any case), else the letter of
    the last ``\\boxed{}``, else the last parenthesised capital "(X)"; never a bare capital
    word ("A car is red." is no answer)."""
    stated = _CHOICE_STATEMENT_RE.findall(text)
    if stated:
        return stated[-1].upper()
    boxed = last_boxed(text)
    if boxed:
        cm = _CHOICE_RE.search(" " + boxed)
        if cm:
            return cm.group(1)
    found = _PAREN_LETTER_RE.findall(text)
    return found[-1] if found else None


def extract_answer(completion: str | None, task: object = "auto") -> str | None:
    """Extract the final answer from a model completion.

    Args:
        completion: the generated text after the prompt (may contain further few-shot items).
        task: a task name, a :class:`~rho.evaluate.tasks.TaskSpec`, or an answer type
            (``"number"``, ``"math"``, ``"choice"``, ``"auto"``). Task names are resolved to
            their spec's ``answer_type`` and stop sequences; unknown names mean ``"auto"``.

    Returns:
        The answer as a short string (numbers normalised: no thousands separators, currency
        or units), a choice letter for multiple-choice tasks, or ``None`` if nothing answer-like
        is found.
    """
    if not completion or not completion.strip():
        return None
    answer_type, stops = _resolve_task(task)
    text = cut_at_stop(completion, tuple(stops) + DEFAULT_STOPS)
    if answer_type == "choice":
        return _extract_choice(text)

    candidate: str | None = last_boxed(text)
    if candidate is not None and _minus_before_box(text) and not candidate.startswith("-"):
        candidate = "-" + candidate
    if candidate is None:
        stated = _answer_statement(text)
        if stated is not None:
            candidate = _strip_wrapping(stated)
            if "\\boxed" in candidate:
                candidate = last_boxed(candidate)  # None if the box is never closed (malformed)
                if candidate is None:
                    return None
    if candidate:
        # a stated answer without a number ("The answer is unclear.") is no number answer
        return (
            _first_number(_normalize_number_text(candidate, spaced=True))
            if answer_type == "number"
            else normalize_answer(candidate)
        )
    return _last_number(_normalize_number_text(text))


def _minus_before_box(text: str) -> bool:
    """Whether the last ``\\boxed`` is negated from outside: ``-\\boxed{256}``."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    return start > 0 and re.search(r"(?:^|[\s$=(])-\s*$", text[:start]) is not None


def _resolve_task(task: object) -> tuple[str, list[str]]:
    """``(answer_type, stops)`` of a TaskSpec-like object or an answer type.

    Task *names* are resolved by :func:`rho.evaluate.extract_answer` (in :mod:`rho.evaluate.grade`),
    so this module does not import the task registry; any other string means ``"auto"``.
    """
    if hasattr(task, "answer_type"):
        return str(task.answer_type), list(getattr(task, "stop", []) or [])
    if isinstance(task, str):
        return (task, []) if task in ANSWER_TYPES else ("auto", [])
    raise TypeError(f"task must be a task name, an answer type or a TaskSpec, got {type(task).__name__}")


#: Thousands written with spaces or LaTeX thin spaces: "9 500", "1\\,000", "12{,}000".
_SPACED_THOUSANDS_RE = re.compile(r"(?<![\d.,])(-?\d{1,3}(?:(?: |\\,|\\ |\{,\})\d{3})+)(?![\d.]|,\d)")


def _normalize_number_text(text: str, spaced: bool = False) -> str:
    """Remove thousands separators and currency so numbers are found whole (with ``spaced``,
    also space-separated groups, used on a stated answer only: "The answer is 9 500.")."""
    if spaced:
        text = _SPACED_THOUSANDS_RE.sub(lambda m: re.sub(r" |\\,|\\ |\{,\}", "", m.group(1)), text)
    text = _THOUSANDS_RE.sub(lambda m: m.group(1).replace(",", ""), text)
    return text.replace("\\$", " ").replace("$", " ")


def normalize_answer(ans: str) -> str:
    """Canonical string form of an answer for cheap comparison.

    Strips ``$``, ``\\$``, ``\\%``/``%``, thousands separators, trailing units words,
    ``\\text{}`` wrappers, ``\\left``/``\\right``, spaces, a trailing period and a trailing
    ``.0``/``.00``; ``\\boxed{x}`` becomes ``x``.
    """
    s = ans.strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "")
    s = re.sub(r"(?<!\\)\\ ", "", s)  # "\\ " is a space, but "\\\\ " ends a matrix row
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "")
    s = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", r"\1", s)
    s = _THOUSANDS_RE.sub(lambda m: m.group(1).replace(",", ""), s)
    m = _TRAILING_UNIT_RE.match(s)
    if m:
        s = m.group(1)
    s = s.strip().rstrip(".").strip()
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"^(-?\d+)\.0+$", r"\1", s)
    s = re.sub(r"^\\[dt]?frac(\d)(\d)$", r"\\frac{\1}{\2}", s)
    return s


def _as_fraction(s: str) -> Fraction | None:
    """Exact value of a plain number, ``a/b`` or ``\\frac{a}{b}`` string, else None."""
    m = re.fullmatch(r"\\[dt]?frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", s)
    if m:
        s = f"{m.group(1)}/{m.group(2)}"
    m = re.fullmatch(r"-\\[dt]?frac\{([\d.]+)\}\{([\d.]+)\}", s)
    if m:
        s = f"-{m.group(1)}/{m.group(2)}"
    try:
        if re.fullmatch(r"-?\d+(?:\.\d+)?(?:/-?\d+(?:\.\d+)?)?|-?\.\d+", s):
            if "/" in s:
                a, b = s.split("/")
                den = Fraction(b)
                return None if den == 0 else Fraction(a) / den
            return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def is_equiv(prediction: str | None, gold: str | None) -> bool:
    """Whether ``prediction`` and ``gold`` denote the same answer.

    Handles thousands separators ("1,000" == "1000"), percent and currency ("50%" == "50",
    "$5" == "5"), fractions and decimals ("\\frac{1}{2}" == "1/2" == "0.5"), ``\\boxed{}``,
    integer vs float ("3" == "3.0") and general LaTeX via ``math-verify``. Numbers compare
    exactly up to a relative 1e-4 (the paper harness's tolerance), so "12" != "1.2". Answers
    that :func:`rho.evaluate.symbolic.too_complex` rejects (very long, deeply nested) never
    reach math-verify (they are not equal unless the cheap checks match). Never raises.

    math-verify bounds its own run time with ``signal.alarm``, which only works in the main
    thread; called from another thread the symbolic step is skipped (counts as not equal),
    while the numeric comparisons above still apply.
    """
    if prediction is None or gold is None:
        return False
    try:
        p, g = normalize_answer(str(prediction)), normalize_answer(str(gold))
    except Exception:  # pragma: no cover - normalisation is regex only
        return False
    if not p or not g:
        return False
    if p == g or (len(p) == 1 and p.lower() == g.lower()):  # choice letters ignore case
        return True
    fp, fg = _as_fraction(p), _as_fraction(g)
    if fp is not None and fg is not None:
        if fp == fg:
            return True
        return abs(fp - fg) <= Fraction(1, 10**4) * max(abs(fg), Fraction(1))
    if too_complex(p) or too_complex(g):
        _log.debug("not handed to math-verify (too complex): %r vs %r", p[:80], g[:80])
        return False
    return _math_verify_equiv(p, g)


_log = logging.getLogger(__name__)


@functools.cache
def _mv_config() -> tuple:
    """math-verify extraction settings: its defaults minus the deprecated ``equations`` flag."""
    from latex2sympy2_extended.math_normalization import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    norm = NormalizationConfig(basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="all")
    return (LatexExtractionConfig(normalization_config=norm), ExprExtractionConfig())


def _math_verify_equiv(pred: str, gold: str) -> bool:
    """Symbolic equivalence with math-verify; any failure (parse error, timeout) is False."""
    try:
        from math_verify import parse, verify

        g = parse(f"${gold}$", extraction_config=_mv_config())
        q = parse(f"${pred}$", extraction_config=_mv_config())
        if not g or not q:
            return False
        return bool(verify(g, q))
    except Exception as exc:  # math-verify raises on malformed LaTeX and on its own timeouts
        _log.debug("math-verify failed on %r vs %r: %s", pred, gold, exc)
        return False
