"""Math problem families with short worked solutions ending "The answer is X.".

Every family is a function ``(rng) -> Problem``.  The families are sized for models of about a
million parameters (calibrated in ``docs/calibration.md``): one or two operations on small
numbers that the question states, so a model that copies the question's numbers and does the
arithmetic digit by digit (the tokenizer splits digits) answers right.  MATH-role families
(equations, percentages, expressions) end with a boxed answer, ``The answer is \\boxed{X}.``.
Two of the two-step word-problem templates (:data:`HELDOUT_TEMPLATES`) never appear in any
training corpus: the ``gsm_unseen`` task measures generalisation to unseen problem templates.
A problem is identified by its family, template and question (:attr:`Problem.key`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from fractions import Fraction

NAMES = [
    "Ava",
    "Ben",
    "Carla",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Iris",
    "Jamal",
    "Kim",
    "Leo",
    "Maya",
    "Nina",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
]
ITEMS = [
    "apples",
    "pencils",
    "stickers",
    "marbles",
    "books",
    "cookies",
    "stamps",
    "shells",
    "cards",
    "balloons",
    "coins",
    "oranges",
    "flowers",
    "toy cars",
    "beads",
    "eggs",
]
CONTAINERS = ["boxes", "bags", "baskets", "jars", "shelves", "trays", "packs", "rows"]


@dataclass(frozen=True)
class Problem:
    """One math problem with a worked chain-of-thought solution."""

    family: str
    template: str
    question: str
    solution: str
    answer: str

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the problem: family, template and the question's numbers."""
        return problem_key(self.family, self.template, self.question)


def problem_key(family: str, template: str, question: str) -> tuple[str, str, str]:
    """Identity of a problem: family, template and its question (words and numbers, normalised).

    With numbers this small, the same computation recurs under other names and items (as arithmetic
    facts recur in real corpora); a problem is the same only if its question is.
    """
    return (family, template, " ".join(re.findall(r"\w+", question.lower())))


def _fmt(x: float | int | Fraction) -> str:
    if isinstance(x, Fraction):
        return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _done(
    family: str, template: str, question: str, steps: list[str], answer, boxed: bool = False
) -> Problem:
    ans = _fmt(answer)
    final = f"The answer is \\boxed{{{ans}}}." if boxed else f"The answer is {ans}."
    return Problem(family, template, question, " ".join(steps + [final]), ans)


# ---------------------------------------------------------------- arithmetic
def arithmetic(rng: random.Random) -> Problem:
    """One operation on small numbers (+, - with one one-digit operand; *, / within the 9 x 9 table)."""
    op = rng.choice("+-*/")
    if op == "+":
        a, b = rng.randint(1, 20), rng.randint(1, 9)
        if rng.random() < 0.5:
            a, b = b, a
        c = a + b
    elif op == "-":
        a = rng.randint(2, 20)
        b = rng.randint(1, min(9, a - 1))
        c = a - b
    elif op == "*":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        c = a * b
    else:
        b, c = rng.randint(2, 9), rng.randint(1, 9)
        a = b * c
    form = rng.randrange(3)
    q = [f"What is {a} {op} {b}?", f"Compute {a} {op} {b}.", f"Calculate {a} {op} {b}."][form]
    return _done("arithmetic", f"arith{op}{form}", q, [f"{a} {op} {b} = {c}."], c)


def chain_sum(rng: random.Random) -> Problem:
    """Three small numbers added or subtracted left to right (every partial result >= 0)."""
    nums = [rng.randint(1, 9) for _ in range(3)]
    ops, acc = [], nums[0]
    for x in nums[1:]:
        ops.append("-" if acc >= x and rng.random() < 0.5 else "+")
        acc = acc - x if ops[-1] == "-" else acc + x
    expr = str(nums[0]) + "".join(f" {o} {x}" for o, x in zip(ops, nums[1:]))
    acc, steps = nums[0], []
    for o, x in zip(ops, nums[1:]):
        new = acc + x if o == "+" else acc - x
        steps.append(f"{acc} {o} {x} = {new}.")
        acc = new
    form = rng.randrange(2)
    q = [f"What is {expr}?", f"Work out {expr}."][form]
    return _done("chain_sum", f"chain{form}", q, steps, acc)


# ---------------------------------------------------------------- word problems
def word_one_step(rng: random.Random) -> Problem:
    """One-step word problems (MAWPS-like): join, separate, groups, sharing, combine, compare."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    other = rng.choice([n for n in NAMES if n != name])
    t = rng.randrange(6)
    if t == 0:
        a, b = rng.randint(2, 20), rng.randint(1, 9)
        q = f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?"
        return _done("word_one_step", "join", q, [f"{a} + {b} = {a + b}."], a + b)
    if t == 1:
        a = rng.randint(5, 20)
        b = rng.randint(1, min(9, a - 1))
        q = f"{name} had {a} {item} and gave {b} of them away. How many {item} are left?"
        return _done("word_one_step", "separate", q, [f"{a} - {b} = {a - b}."], a - b)
    if t == 2:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        box = rng.choice(CONTAINERS)
        q = f"There are {a} {box} with {b} {item} in each. How many {item} are there in total?"
        return _done("word_one_step", "groups", q, [f"{a} * {b} = {a * b}."], a * b)
    if t == 3:
        b, c = rng.randint(2, 9), rng.randint(2, 9)
        q = f"{name} shares {b * c} {item} equally among {b} friends. How many {item} does each friend get?"
        return _done("word_one_step", "share", q, [f"{b * c} / {b} = {c}."], c)
    if t == 4:
        a, b = rng.randint(2, 20), rng.randint(1, 9)
        q = f"{name} has {a} {item} and {other} has {b} {item}. How many {item} do they have together?"
        return _done("word_one_step", "combine", q, [f"{a} + {b} = {a + b}."], a + b)
    b = rng.randint(1, 9)
    a = b + rng.randint(1, 9)
    q = f"{name} has {a} {item}. {other} has {b} {item}. How many more {item} does {name} have than {other}?"
    return _done("word_one_step", "compare", q, [f"{a} - {b} = {a - b}."], a - b)


def _two_step(rng: random.Random, template: str) -> tuple[str, list[str], int]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if template == "buy_lose":
        a, b = rng.randint(2, 15), rng.randint(1, 9)
        c = rng.randint(1, min(9, a + b - 1))
        q = f"{name} has {a} {item}, buys {b} more and then loses {c}. How many {item} does {name} have?"
        return q, [f"{a} + {b} = {a + b}.", f"{a + b} - {c} = {a + b - c}."], a + b - c
    if template == "boxes_plus":
        a, b, c = rng.randint(2, 5), rng.randint(2, 5), rng.randint(1, 9)
        box = rng.choice(CONTAINERS)
        q = f"{name} has {a} {box} of {b} {item} and {c} loose {item}. How many {item} does {name} have?"
        return q, [f"{a} * {b} = {a * b}.", f"{a * b} + {c} = {a * b + c}."], a * b + c
    if template == "give_get":
        a, b = rng.randint(10, 20), rng.randint(1, 9)
        c = rng.randint(1, 9)
        q = f"{name} had {a} {item}, gave {b} to a friend and then found {c} more. How many {item} does {name} have now?"
        return q, [f"{a} - {b} = {a - b}.", f"{a - b} + {c} = {a - b + c}."], a - b + c
    if template == "two_friends":
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
        other, third = rng.sample([n for n in NAMES if n != name], 2)
        q = f"{name} has {a} {item}, {other} has {b} and {third} has {c}. How many {item} do they have in all?"
        return q, [f"{a} + {b} = {a + b}.", f"{a + b} + {c} = {a + b + c}."], a + b + c
    if template == "weekly":  # held out
        a, b, d = rng.randint(1, 5), rng.randint(1, 5), rng.randint(2, 3)
        q = f"{name} reads {a} pages on Monday and {b} pages on Tuesday every week. How many pages does {name} read in {d} weeks?"
        return q, [f"{a} + {b} = {a + b}.", f"{a + b} * {d} = {(a + b) * d}."], (a + b) * d
    if template == "change":  # held out
        p, n = rng.randint(2, 5), rng.randint(2, 3)
        paid = p * n + rng.randint(1, 9)
        q = f"Each of the {item} costs {p} dollars. {name} buys {n} of them and pays {paid} dollars. How much change does {name} get?"
        return q, [f"{n} * {p} = {n * p}.", f"{paid} - {n * p} = {paid - n * p}."], paid - n * p
    raise ValueError(f"unknown two-step template {template!r}")


#: Two-step templates that no training corpus contains (the ``gsm_unseen`` task).
HELDOUT_TEMPLATES: frozenset[str] = frozenset({"weekly", "change"})
TWO_STEP_TRAIN: tuple[str, ...] = ("buy_lose", "boxes_plus", "give_get", "two_friends")


def word_two_step(rng: random.Random, templates: Collection[str] = TWO_STEP_TRAIN) -> Problem:
    """Two-step word problems (GSM8K/ASDiv-like), from the training templates by default."""
    template = rng.choice(sorted(templates))
    q, steps, ans = _two_step(rng, template)
    return _done("word_two_step", template, q, steps, ans)


def word_two_step_heldout(rng: random.Random) -> Problem:
    """A two-step problem from a held-out template (never in any training corpus)."""
    p = word_two_step(rng, HELDOUT_TEMPLATES)
    return Problem("word_two_step_heldout", p.template, p.question, p.solution, p.answer)


def word_distractor(rng: random.Random) -> Problem:
    """A one-step word problem with an irrelevant sentence (SVAMP-style variation)."""
    p = word_one_step(rng)
    name = next((n for n in NAMES if p.question.startswith(n)), rng.choice(NAMES))
    extra = f"{name} also has {rng.randint(2, 30)} {rng.choice(ITEMS)} at home"
    sentences = p.question.split(". ")
    sentences.insert(1, extra)
    return Problem("word_distractor", p.template, ". ".join(sentences), p.solution, p.answer)


# ---------------------------------------------------------------- MATH-role families (boxed answers)
def linear_equation(rng: random.Random) -> Problem:
    """Solve a*x + b = c (or a*x - b = c) for a small positive integer x."""
    var = rng.choice("xyzn")
    a, x, b = rng.randint(2, 5), rng.randint(1, 9), rng.randint(1, 9)
    if rng.random() < 0.5 or a * x - b < 0:
        c = a * x + b
        q = f"Solve for {var}: {a}{var} + {b} = {c}."
        s = [f"{c} - {b} = {c - b}, so {a}{var} = {c - b}.", f"{c - b} / {a} = {x}, so {var} = {x}."]
        return _done("linear_equation", f"plus_{var}", q, s, x, boxed=True)
    c = a * x - b
    q = f"Solve for {var}: {a}{var} - {b} = {c}."
    s = [f"{c} + {b} = {c + b}, so {a}{var} = {c + b}.", f"{c + b} / {a} = {x}, so {var} = {x}."]
    return _done("linear_equation", f"minus_{var}", q, s, x, boxed=True)


def percent(rng: random.Random) -> Problem:
    """p percent of n, with an integer result below 100."""
    p = rng.choice([10, 20, 25, 50])
    unit = 100 // p
    r = rng.randint(1, 40)
    n = unit * r
    form = rng.randrange(2)
    q = [f"What is {p}% of {n}?", f"Find {p} percent of {n}."][form]
    s = [f"{p}% is 1/{unit}.", f"{n} / {unit} = {r}."]
    return _done("percent", f"percent{form}", q, s, r, boxed=True)


def expression(rng: random.Random) -> Problem:
    """Evaluate a * b + c or a * b - c (small numbers), multiplication first."""
    a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 9)
    if rng.random() < 0.5 or a * b - c < 0:
        op, r = "+", a * b + c
    else:
        op, r = "-", a * b - c
    form = rng.randrange(2)
    q = [f"Evaluate {a} * {b} {op} {c}.", f"What is the value of {a} * {b} {op} {c}?"][form]
    s = [f"{a} * {b} = {a * b}.", f"{a * b} {op} {c} = {r}."]
    return _done("expression", f"expr{op}{form}", q, s, r, boxed=True)


# ---------------------------------------------------------------- tables (TabMWP role)
def table_problem(rng: random.Random) -> Problem:
    """A question over a three-row text table (TabMWP-like)."""
    item = rng.choice(ITEMS)
    names = rng.sample(NAMES, 3)
    vals = [rng.randint(1, 9) for _ in names]
    table = f"Name | {item.capitalize()}\n" + "\n".join(f"{n} | {v}" for n, v in zip(names, vals))
    t = rng.randrange(3)
    if t == 0:
        q = f"{table}\nHow many {item} do they have in total?"
        s = [
            f"{vals[0]} + {vals[1]} = {vals[0] + vals[1]}.",
            f"{vals[0] + vals[1]} + {vals[2]} = {sum(vals)}.",
        ]
        return _done("table", "total", q, s, sum(vals))
    i, j = rng.sample(range(3), 2)
    if t == 1:
        q = f"{table}\nHow many {item} do {names[i]} and {names[j]} have together?"
        s = [
            f"{names[i]} has {vals[i]} and {names[j]} has {vals[j]}.",
            f"{vals[i]} + {vals[j]} = {vals[i] + vals[j]}.",
        ]
        return _done("table", "pair", q, s, vals[i] + vals[j])
    hi, lo = (i, j) if vals[i] >= vals[j] else (j, i)
    q = f"{table}\nHow many more {item} does {names[hi]} have than {names[lo]}?"
    s = [
        f"{names[hi]} has {vals[hi]} and {names[lo]} has {vals[lo]}.",
        f"{vals[hi]} - {vals[lo]} = {vals[hi] - vals[lo]}.",
    ]
    return _done("table", "difference", q, s, vals[hi] - vals[lo])


FAMILIES: dict[str, Callable[[random.Random], Problem]] = {
    "arithmetic": arithmetic,
    "chain_sum": chain_sum,
    "word_one_step": word_one_step,
    "word_two_step": word_two_step,
    "word_two_step_heldout": word_two_step_heldout,
    "word_distractor": word_distractor,
    "linear_equation": linear_equation,
    "percent": percent,
    "expression": expression,
    "table": table_problem,
}

#: Mix of families in the training corpora (weights); ``word_two_step_heldout`` is never trained on.
TRAIN_MIX: dict[str, float] = {
    "arithmetic": 0.14,
    "chain_sum": 0.06,
    "word_one_step": 0.16,
    "word_two_step": 0.14,
    "word_distractor": 0.08,
    "linear_equation": 0.1,
    "percent": 0.08,
    "expression": 0.1,
    "table": 0.14,
}


def sample_family(rng: random.Random, mix: dict[str, float] = TRAIN_MIX) -> str:
    """Draw a family name according to ``mix``."""
    names = list(mix)
    return rng.choices(names, weights=[mix[n] for n in names])[0]


def with_answer(p: Problem, answer: str) -> str:
    """``p``'s solution with its final result replaced by ``answer`` (a wrong option's text).

    The last occurrence of the gold answer before the closing sentence (the result of the last
    computation) and the closing sentence both change, so the option reads as a worked solution
    whose last step is wrong.
    """
    sol, gold = p.solution, p.answer
    for closing in (f"The answer is \\boxed{{{gold}}}.", f"The answer is {gold}."):
        if sol.endswith(closing):
            body = sol[: -len(closing)]
            new_closing = closing.replace(gold, answer)
            break
    else:
        raise ValueError(f"solution of {p.key} does not end with its answer: {sol!r}")
    k = body.rfind(f"= {gold}")
    if k >= 0:
        body = body[:k] + f"= {answer}" + body[k + len(f"= {gold}") :]
    return body + new_closing


def multiple_choice(p: Problem, rng: random.Random, n_choices: int) -> tuple[list[str], int]:
    """Options for ``p``: its worked solution and ``n_choices - 1`` solutions ending in distinct
    wrong numbers (near the gold answer, non-negative), shuffled; returns (options, gold index).

    Scored by likelihood, an option is right when its last computation is right: the answer
    follows from a short computation that the model must carry out.
    """
    gold = int(p.answer)
    wrong: set[int] = set()
    tries = 0
    while len(wrong) < n_choices - 1:
        tries += 1
        delta = rng.choice([-10, -3, -2, -1, 1, 2, 3, 10]) * (1 if tries < 50 else tries)
        if gold + delta >= 0 and gold + delta != gold:
            wrong.add(gold + delta)
    answers = sorted(wrong) + [gold]
    rng.shuffle(answers)
    return [with_answer(p, str(a)) for a in answers], answers.index(gold)
