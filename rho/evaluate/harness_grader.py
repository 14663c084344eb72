"""The paper harness's verdicts, re-implemented from its documented behaviour.

The Rho-1 paper scored every math benchmark with ZubinGou/math-evaluation-harness. This module
reproduces its verdicts (not its code) so that numbers are comparable with the paper's tables;
``tests/test_evaluate_grade.py`` replays the paper's released Rho-Math-1B completions and checks
the accuracies (36.2 GSM8K, 15.8 MATH-500) and the per-item agreement.

Behaviour reproduced (docs/evaluation.md lists where rho's ``default`` mode differs and why):

* extraction order: the Minerva line "final answer is $X$. I hope", else the content of the
  last ``boxed`` (balanced braces; everything after it when unclosed), else the text after the
  last "he answer is", else after the last "final answer is", else the last number
  (``-?\\d*\\.?\\d+`` with commas removed). The whole rest of the completion is taken, with line
  breaks removed (not only the first line).
* multiple choice (MathQA, MMLU-STEM, SAT): the text before the first "Problem:", "choice is"
  read as "answer is", then the *first* "answer is (x)" with x in a-e, any case; else no answer.
* normalisation (:func:`harness_strip`): LaTeX spacing and ``\\left``/``\\right``, ``dfrac``,
  a trailing ``\\text{unit}``, unit words (as whole words, MathQA style), degrees, dollars,
  percent, number words, ``x=``-style prefixes, trailing ``.0``, spaces, ``\\frac12`` and
  ``a/b`` forms.
* equality (:func:`harness_equal`): identical strings; numbers within a relative 1e-4, where the
  gold may also be read as a percent (``gold/100`` and ``gold*100`` are accepted too); bracket
  and brace insensitive string match; element-wise tuples, intervals and matrices; equations;
  finally symbolic equality (sympy), bounded in time.
"""

from __future__ import annotations

import math
import re

from rho.evaluate.symbolic import symbolic_equal

__all__ = [
    "HARNESS_STOPS",
    "harness_choice",
    "harness_equal",
    "harness_extract",
    "harness_grade",
    "harness_strip",
]

#: The harness's stop strings for chain-of-thought prompts.
HARNESS_STOPS = ("</s>", "\n\nQuestion:", "\n\nProblem:")

#: Unit and filler words removed as whole words (MathQA answers carry them): written for rho.
_UNIT_WORDS = sorted(
    {
        *["a", "c", "d", "g", "h", "l", "m", "o", "s", "t"],
        *[
            "cm",
            "mm",
            "km",
            "kg",
            "gm",
            "lb",
            "ft",
            "mph",
            "kmph",
            "kmh",
            "hr",
            "min",
            "sec",
            "yr",
            "deg",
            "sq",
            "cc",
            "mt",
            "mtr",
            "dm",
            "lt",
            "gal",
        ],
        *[
            "inch",
            "inches",
            "feet",
            "foot",
            "yard",
            "meter",
            "metre",
            "mile",
            "litre",
            "liter",
            "gallon",
            "acre",
            "hectare",
        ],
        *["day", "hour", "minute", "second", "month", "year", "week"],
        *[
            "degree",
            "percent",
            "rupee",
            "rs",
            "unit",
            "number",
            "cube",
            "cubic",
            "square",
            "men",
            "man",
            "women",
            "woman",
        ],
        *[
            "profit",
            "loss",
            "gain",
            "increase",
            "decrease",
            "more",
            "less",
            "per",
            "by",
            "am",
            "pm",
            "noon",
            "th",
            "st",
            "rd",
            "east",
            "west",
        ],
        *["apple", "coin", "toy", "mark", "tile", "soldier", "rounds", "ratio", "prime", "pure"],
    },
    key=len,
    reverse=True,
)
_UNIT_WORDS = _UNIT_WORDS + [w + "s" for w in _UNIT_WORDS]
_UNIT_RES = [(w, re.compile(r"(^|\W)" + re.escape(w) + r"($|\W)")) for w in _UNIT_WORDS]

_NUMBER_WORDS = {
    **{
        w: i
        for i, w in enumerate(
            [
                "zero",
                "one",
                "two",
                "three",
                "four",
                "five",
                "six",
                "seven",
                "eight",
                "nine",
                "ten",
                "eleven",
                "twelve",
                "thirteen",
                "fourteen",
                "fifteen",
                "sixteen",
                "seventeen",
                "eighteen",
                "nineteen",
            ]
        )
    },
    **{
        w: 10 * (i + 2)
        for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"])
    },
    "hundred": 100,
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
}
_DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _word_number(s: str) -> str:
    """The harness's number-word step: a digit string loses leading zeros ("05" -> "5");
    a string with number words anywhere becomes their value ("x one two" -> "3", other words
    ignored); anything else is returned unchanged."""
    t = s.replace("-", " ").lower()
    if t.isdigit():
        try:
            return str(int(t))
        except ValueError:
            return s
    words = [w for w in t.split() if w in _NUMBER_WORDS or w == "point"]
    if not words or any(words.count(w) > 1 for w in ("thousand", "million", "billion", "point")):
        return s
    decimals = ""
    if "point" in words:
        k = words.index("point")
        after, words = words[k + 1 :], words[:k]
        decimals = (
            "".join(str(_DIGIT_WORDS.index(w)) for w in after)
            if all(w in _DIGIT_WORDS for w in after)
            else ""
        )
    total = current = 0
    for w in words:
        value = _NUMBER_WORDS[w]
        if value == 100:
            current = max(current, 1) * 100
        elif value >= 1000:
            total += max(current, 1) * value
            current = 0
        else:
            current += value
    number = total + current
    return f"{number}.{decimals}" if decimals else str(number)


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{7}`` -> ``\\frac{1}{7}``."""
    head, *parts = s.split("\\frac")
    out = head
    for part in parts:
        out += "\\frac"
        if part.startswith("{"):
            out += part
            continue
        if len(part) < 2:
            return s
        a, b, rest = part[0], part[1], part[2:]
        out += "{" + a + "}" + (b + rest if b == "{" else "{" + b + "}" + rest)
    return out


def _fix_slash(s: str) -> str:
    """``3/4`` (integers or square roots) -> ``\\frac{3}{4}``."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = (p if "sqrt" in p else str(int(p)) for p in parts)
    except ValueError:
        return s
    return "\\frac{" + a + "}{" + b + "}" if f"{a}/{b}" == s else s


def harness_strip(s: object) -> str:
    """The harness's answer normalisation (see the module docstring)."""
    s = str(s).strip().replace("\n", "").rstrip(".")
    s = s.replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = s.replace("\\end{array}", "\\end{pmatrix}").replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    no_unit = re.sub(r"\\text{.*?}$", "", s).strip()
    if no_unit and no_unit != s:
        s = no_unit
    for _ in range(2):
        for word, pattern in _UNIT_RES:
            if word not in s:  # cheap pre-check: the same result, far fewer regex scans
                continue
            t = pattern.sub(r"\1\2", s)
            if t:
                s = t
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    s = _word_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    return _fix_slash(s)


def _after_boxed(text: str) -> str:
    rest = text.split("boxed")[-1]
    if not rest:
        return ""
    if rest[0] != "{":
        return rest.split("$")[0].strip()
    depth, out = 1, []
    for ch in rest[1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        out.append(ch)
    return "".join(out)


def harness_extract(completion: str) -> str:
    """The harness's answer to a free-form completion (normalised; ``""`` when none)."""
    text = completion
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        pred = _after_boxed(text)
    elif "he answer is" in text:
        pred = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        pred = text.split("final answer is")[-1].strip()
    else:
        numbers = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))
        pred = numbers[-1] if numbers else ""
    pred = re.sub(r"\n\s*", "", pred)
    if pred.startswith(":"):
        pred = pred[1:]
    if pred.endswith("."):
        pred = pred[:-1]
    if pred.endswith("/"):
        pred = pred[:-1]
    return harness_strip(harness_strip(pred))


def harness_choice(completion: str) -> str | None:
    """The harness's letter for a multiple-choice completion, or None."""
    text = completion.split("Problem:", 1)[0].replace("choice is", "answer is")
    m = re.search(r"answer is \(?([abcde])\)?", text.lower())
    return m.group(1).upper() if m else None


def _number(s: str) -> float | None:
    s = s.replace(",", "")
    try:
        return float(s)
    except ValueError:
        pass
    if s.endswith("%"):
        s = s[:-1].rstrip("\\")
        try:
            return float(s) / 100
        except ValueError:
            return None
    return None


def _close(a: float, b: float) -> bool:
    try:
        return math.isclose(b, a, rel_tol=1e-4)
    except (TypeError, OverflowError):
        return False


def _to_pmatrix(s: str) -> str:
    rows = [m.strip("{}") for m in re.findall(r"\{.*,.*\}", s.strip())]
    return ", ".join("\\begin{pmatrix}" + r.replace(",", "\\") + "\\end{pmatrix}" for r in rows)


def _is_matrix(s: str) -> bool:
    return s.startswith(("\\begin{pmatrix}", "\\begin{bmatrix}")) and s.endswith(
        ("\\end{pmatrix}", "\\end{bmatrix}")
    )


def _matrix_equal(pred: str, gold: str) -> bool:
    n0, n1 = len("\\begin{pmatrix}"), len("\\end{pmatrix}")

    def rows(s: str) -> list[str]:
        return [r.strip() for r in s[n0:-n1].split("\\\\") if r.strip()]

    p_rows, g_rows = rows(pred), rows(gold)
    if len(p_rows) != len(g_rows):
        return False
    for p_row, g_row in zip(p_rows, g_rows):
        p_cells, g_cells = p_row.split("&"), g_row.split("&")
        if len(p_cells) != len(g_cells) or not all(harness_equal(a, b) for a, b in zip(p_cells, g_cells)):
            return False
    return True


def harness_equal(pred: object, gold: object, timeout: float = 3.0) -> bool:
    """The harness's equality of a normalised prediction and a normalised gold answer."""
    if str(pred) == str(gold):
        return True
    p_num, g_num = _number(str(pred)), _number(str(gold))
    if p_num is not None and g_num is not None:
        return any(_close(p_num, g) for g in (g_num / 100, g_num, g_num * 100))
    if not pred and pred not in (0, False):
        return False
    gold_s, pred_s = str(gold).strip(), str(pred).strip()
    if "pmatrix" in pred_s and "pmatrix" not in gold_s:
        gold_s = _to_pmatrix(gold_s)
    p_flat, g_flat = pred_s, gold_s
    if (p_flat.startswith("[") and p_flat.endswith("]") and not gold_s.startswith("(")) or (
        p_flat.startswith("(") and p_flat.endswith(")") and not gold_s.startswith("[")
    ):
        p_flat, g_flat = p_flat.strip("[]()"), g_flat.strip("[]()")
    for ch in "{}()":
        p_flat, g_flat = p_flat.replace(ch, ""), g_flat.replace(ch, "")
    if p_flat.lower() == g_flat.lower():
        return True
    bracketed = r"(\(|\[).+(\)|\])"
    if re.match(bracketed, pred_s) and re.match(bracketed, gold_s):
        p_parts, g_parts = pred_s[1:-1].split(","), gold_s[1:-1].split(",")
        if len(p_parts) == len(g_parts) and all(harness_equal(a, b) for a, b in zip(p_parts, g_parts)):
            return True
    if _is_matrix(pred_s) and _is_matrix(gold_s) and _matrix_equal(pred_s, gold_s):
        return True
    if pred_s.count("=") == 1 and gold_s.count("=") == 1:
        pl, pr = (x.strip() for x in pred_s.split("="))
        gl, gr = (x.strip() for x in gold_s.split("="))
        p_expr, g_expr = f"{pl} - ({pr})", f"{gl} - ({gr})"
        if symbolic_equal(p_expr, g_expr, timeout) or symbolic_equal(f"-({p_expr})", g_expr, timeout):
            return True
    elif pred_s.count("=") == 1 and len(pred_s.split("=")[0].strip()) <= 2 and "=" not in gold_s:
        if harness_equal(pred_s.split("=")[1], gold_s, timeout):
            return True
    elif (
        gold_s.count("=") == 1
        and len(gold_s.split("=")[0].strip()) <= 2
        and "=" not in pred_s
        and harness_equal(pred_s, gold_s.split("=")[1], timeout)
    ):
        return True
    return symbolic_equal(pred_s, gold_s, timeout)


def harness_grade(completion: str, gold: str, choice: bool = False) -> bool:
    """Verdict of the harness on one completion (cut at its stop strings) against a gold answer.

    ``gold`` is the task's gold answer as the harness reads it (a letter for multiple choice);
    it is normalised here like the prediction.
    """
    text = completion
    for stop in HARNESS_STOPS:
        text = text.split(stop, 1)[0]
    text = text.strip()
    if choice:
        letter = harness_choice(text)
        return letter is not None and letter == str(gold).strip().upper()
    # the harness normalises a gold answer at least twice (when it parses the set, and again
    # after); the second pass matters: "x \\in [-2,7]" -> "x\\in[-2,7]" -> "[-2,7]"
    return harness_equal(harness_extract(text), harness_strip(harness_strip(gold)))
