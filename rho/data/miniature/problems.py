"""Math problem families with worked solutions ending "The answer is X.".

Every family is a function ``(rng) -> Problem``.  The easy families (small-number arithmetic,
one-step word problems, linear equations, ...) keep accuracies of tiny models off the floor;
``gsm`` wraps the 100 GSM8K-derived templates of ``reasoning_gym``'s ``gsm_symbolic`` (a fixed
subset of its templates is held out of every training corpus, see :data:`GSM_HELDOUT`).
A problem is identified by its family, template and numbers (:attr:`Problem.key`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
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
    """Identity of a problem: family, template and the numbers of its question."""
    return (family, template, " ".join(re.findall(r"\d+(?:\.\d+)?", question)))


def _fmt(x: float | int | Fraction) -> str:
    if isinstance(x, Fraction):
        return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _done(family: str, template: str, question: str, steps: list[str], answer) -> Problem:
    ans = _fmt(answer)
    return Problem(family, template, question, " ".join(steps + [f"The answer is {ans}."]), ans)


# ---------------------------------------------------------------- easy arithmetic
def arithmetic(rng: random.Random) -> Problem:
    """Small-number +, -, *, / with a one-line solution."""
    op = rng.choice("+-*/")
    if op == "+":
        a, b = rng.randint(1, 60), rng.randint(1, 60)
        c = a + b
    elif op == "-":
        a, b = sorted((rng.randint(1, 80), rng.randint(1, 80)), reverse=True)
        c = a - b
    elif op == "*":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        c = a * b
    else:
        b, c = rng.randint(2, 12), rng.randint(1, 12)
        a = b * c
    form = rng.randrange(3)
    q = [f"What is {a} {op} {b}?", f"Compute {a} {op} {b}.", f"Calculate {a} {op} {b}."][form]
    return _done("arithmetic", f"arith{op}{form}", q, [f"{a} {op} {b} = {c}."], c)


def chain_sum(rng: random.Random) -> Problem:
    """A chain of 3-4 small additions/subtractions, solved left to right."""
    n = rng.randint(3, 4)
    nums = [rng.randint(1, 30) for _ in range(n)]
    ops, acc = [], nums[0]
    for x in nums[1:]:  # keep every partial sum non-negative
        ops.append("-" if acc >= x and rng.random() < 0.5 else "+")
        acc = acc - x if ops[-1] == "-" else acc + x
    expr = str(nums[0]) + "".join(f" {o} {x}" for o, x in zip(ops, nums[1:]))
    acc, steps = nums[0], []
    for o, x in zip(ops, nums[1:]):
        new = acc + x if o == "+" else acc - x
        steps.append(f"{acc} {o} {x} = {new}.")
        acc = new
    return _done("chain_sum", f"chain{n}", f"What is {expr}?", steps, acc)


# ---------------------------------------------------------------- word problems
def word_one_step(rng: random.Random) -> Problem:
    """One-step word problems (MAWPS-like): join, separate, groups, sharing."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    t = rng.randrange(6)
    if t == 0:
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        q = f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?"
        return _done("word_one_step", "join", q, [f"{name} has {a} + {b} = {a + b} {item}."], a + b)
    if t == 1:
        a = rng.randint(10, 60)
        b = rng.randint(1, a - 1)
        q = f"{name} had {a} {item} and gave {b} of them away. How many {item} are left?"
        return _done("word_one_step", "separate", q, [f"{a} - {b} = {a - b} {item} are left."], a - b)
    if t == 2:
        a, b = rng.randint(2, 9), rng.randint(2, 12)
        box = rng.choice(CONTAINERS)
        q = f"There are {a} {box} with {b} {item} in each. How many {item} are there in total?"
        return _done("word_one_step", "groups", q, [f"{a} * {b} = {a * b} {item}."], a * b)
    if t == 3:
        b, c = rng.randint(2, 9), rng.randint(2, 12)
        a = b * c
        q = f"{name} shares {a} {item} equally among {b} friends. How many {item} does each friend get?"
        return _done("word_one_step", "share", q, [f"{a} / {b} = {c} {item} each."], c)
    if t == 4:
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        other = rng.choice([n for n in NAMES if n != name])
        q = f"{name} has {a} {item} and {other} has {b} {item}. How many {item} do they have together?"
        return _done("word_one_step", "combine", q, [f"{a} + {b} = {a + b} {item}."], a + b)
    a, b = sorted((rng.randint(2, 60), rng.randint(2, 60)), reverse=True)
    a += 1
    other = rng.choice([n for n in NAMES if n != name])
    q = f"{name} has {a} {item}. {other} has {b} {item}. How many more {item} does {name} have than {other}?"
    return _done("word_one_step", "compare", q, [f"{a} - {b} = {a - b} more {item}."], a - b)


def word_two_step(rng: random.Random) -> Problem:
    """Two-step word problems (ASDiv-like)."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    t = rng.randrange(4)
    if t == 0:
        a, b, c = rng.randint(10, 50), rng.randint(2, 30), rng.randint(1, 9)
        q = f"{name} has {a} {item}, buys {b} more and then loses {c}. How many {item} does {name} have?"
        s = [
            f"After buying, {name} has {a} + {b} = {a + b}.",
            f"After losing {c}, {a + b} - {c} = {a + b - c}.",
        ]
        return _done("word_two_step", "buy_lose", q, s, a + b - c)
    if t == 1:
        a, b, c = rng.randint(2, 8), rng.randint(2, 10), rng.randint(1, 20)
        box = rng.choice(CONTAINERS)
        q = f"{name} has {a} {box} of {b} {item} and {c} loose {item}. How many {item} does {name} have?"
        s = [f"The {box} hold {a} * {b} = {a * b} {item}.", f"{a * b} + {c} = {a * b + c}."]
        return _done("word_two_step", "boxes_plus", q, s, a * b + c)
    if t == 2:
        p, n, m = rng.randint(2, 9), rng.randint(2, 9), rng.randint(p_min := 1, 5)
        del p_min
        q = f"Each of the {item} costs {p} dollars. {name} buys {n} of them and pays with {p * n + m * 5} dollars. How much change does {name} get?"
        s = [
            f"The cost is {n} * {p} = {n * p} dollars.",
            f"The change is {p * n + m * 5} - {n * p} = {m * 5} dollars.",
        ]
        return _done("word_two_step", "change", q, s, m * 5)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    d = rng.randint(2, 6)
    q = f"{name} reads {a} pages on Monday and {b} pages on Tuesday, and does the same every week. How many pages does {name} read in {d} weeks?"
    s = [
        f"Each week {name} reads {a} + {b} = {a + b} pages.",
        f"In {d} weeks that is {a + b} * {d} = {(a + b) * d} pages.",
    ]
    return _done("word_two_step", "weekly", q, s, (a + b) * d)


def word_distractor(rng: random.Random) -> Problem:
    """A one-step word problem with an irrelevant sentence (SVAMP-style variation)."""
    p = word_one_step(rng)
    name = next((n for n in NAMES if p.question.startswith(n)), rng.choice(NAMES))
    extra = f"{name} also has {rng.randint(2, 30)} {rng.choice(ITEMS)} at home."
    sentences = p.question.split(". ")
    sentences.insert(1, extra.rstrip("."))
    return Problem("word_distractor", p.template, ". ".join(sentences), p.solution, p.answer)


# ---------------------------------------------------------------- algebra and number theory
def linear_equation(rng: random.Random) -> Problem:
    """Solve a*x + b = c (or a*x - b = c) for an integer x."""
    var = rng.choice("xyznk")
    a, x, b = rng.randint(2, 9), rng.randint(1, 12), rng.randint(1, 20)
    if rng.random() < 0.5:
        c = a * x + b
        q = f"Solve for {var}: {a}{var} + {b} = {c}."
        s = [f"Subtract {b} from both sides: {a}{var} = {c - b}.", f"Divide both sides by {a}: {var} = {x}."]
        return _done("linear_equation", "plus", q, s, x)
    c = a * x - b
    q = f"Solve for {var}: {a}{var} - {b} = {c}."
    s = [f"Add {b} to both sides: {a}{var} = {c + b}.", f"Divide both sides by {a}: {var} = {x}."]
    return _done("linear_equation", "minus", q, s, x)


def fraction_simplify(rng: random.Random) -> Problem:
    """Simplify a fraction to lowest terms."""
    n, d = rng.randint(1, 9), rng.randint(2, 12)
    while math.gcd(n, d) != 1 or n >= d:
        n, d = rng.randint(1, 9), rng.randint(2, 12)
    k = rng.randint(2, 9)
    q = f"Simplify the fraction {n * k}/{d * k}."
    s = [
        f"The greatest common divisor of {n * k} and {d * k} is {k}.",
        f"{n * k} / {k} = {n} and {d * k} / {k} = {d}.",
    ]
    return _done("fraction", "simplify", q, s, Fraction(n, d))


def gcd_lcm(rng: random.Random) -> Problem:
    """Greatest common divisor or least common multiple of two small numbers."""
    g = rng.randint(2, 9)
    a, b = g * rng.randint(1, 9), g * rng.randint(1, 9)
    if rng.random() < 0.5:
        x, y, steps = max(a, b), min(a, b), []
        while y:
            steps.append(f"{x} = {x // y} * {y} + {x % y}.")
            x, y = y, x % y
        return _done("gcd_lcm", "gcd", f"What is the greatest common divisor of {a} and {b}?", steps, x)
    gg = math.gcd(a, b)
    lcm = a * b // gg
    s = [
        f"The greatest common divisor of {a} and {b} is {gg}.",
        f"The least common multiple is {a} * {b} / {gg} = {lcm}.",
    ]
    return _done("gcd_lcm", "lcm", f"What is the least common multiple of {a} and {b}?", s, lcm)


def percent(rng: random.Random) -> Problem:
    """p percent of n, with an integer result."""
    p = rng.choice([10, 20, 25, 50, 75, 5, 40, 60])
    n = rng.randint(1, 20) * (100 // math.gcd(p, 100))
    r = p * n // 100
    q = f"What is {p}% of {n}?"
    s = [f"{p}% of {n} is {n} * {p} / 100 = {r}."]
    return _done("percent", "percent_of", q, s, r)


def table_problem(rng: random.Random) -> Problem:
    """A question over a small text table (TabMWP-like)."""
    item = rng.choice(ITEMS)
    names = rng.sample(NAMES, rng.randint(3, 5))
    vals = [rng.randint(1, 30) for _ in names]
    table = f"Name | {item.capitalize()}\n" + "\n".join(f"{n} | {v}" for n, v in zip(names, vals))
    t = rng.randrange(3)
    if t == 0:
        q = f"{table}\nHow many {item} do they have in total?"
        s = [" + ".join(map(str, vals)) + f" = {sum(vals)}."]
        return _done("table", "total", q, s, sum(vals))
    if t == 1:
        i = max(range(len(vals)), key=lambda k: (vals[k], -k))
        q = f"{table}\nWhat is the largest number of {item} in the table?"
        s = [f"The numbers are {', '.join(map(str, vals))}.", f"The largest is {vals[i]}."]
        return _done("table", "max", q, s, vals[i])
    i, j = rng.sample(range(len(names)), 2)
    q = f"{table}\nHow many {item} do {names[i]} and {names[j]} have together?"
    s = [
        f"{names[i]} has {vals[i]} and {names[j]} has {vals[j]}.",
        f"{vals[i]} + {vals[j]} = {vals[i] + vals[j]}.",
    ]
    return _done("table", "pair", q, s, vals[i] + vals[j])


# ---------------------------------------------------------------- gsm_symbolic (reasoning_gym)
_GSM_GENERATORS: dict[int, Callable] | None = None
#: Templates of gsm_symbolic held out of every training corpus (generalisation to unseen templates).
GSM_HELDOUT: frozenset[int] = frozenset(random.Random("rho-gsm-heldout").sample(range(100), 20))
GSM_TRAIN: tuple[int, ...] = tuple(i for i in range(100) if i not in GSM_HELDOUT)


def _gsm_generators() -> dict[int, Callable]:
    global _GSM_GENERATORS
    if _GSM_GENERATORS is None:
        from reasoning_gym.arithmetic.gsm_symbolic import GSMSymbolicDataset, GSMSymbolicDatasetConfig

        _GSM_GENERATORS = dict(GSMSymbolicDataset(GSMSymbolicDatasetConfig(size=1, seed=0)).generators)
    return _GSM_GENERATORS


def gsm_problem(rng: random.Random, templates: tuple[int, ...] = GSM_TRAIN) -> Problem:
    """A GSM8K-style problem from one of ``templates`` (gsm_symbolic ids 0-99)."""
    tid = rng.choice(templates)
    for _ in range(100):  # a few templates occasionally fail to find valid numbers: draw again
        try:
            ex = _gsm_generators()[tid](rng, 1.0)
            break
        except ValueError:
            continue
    else:
        raise RuntimeError(f"gsm_symbolic template {tid} found no valid numbers in 100 draws")
    cot = ex["metadata"]["answer_cot"].strip()
    cot = re.sub(r"\n?####.*$", "", cot).strip()
    cot = re.sub(r"[ \t]*\n+[ \t]*", " ", cot)
    ans = str(ex["answer"]).strip()
    return Problem("gsm", f"gsm{tid}", ex["question"].strip(), f"{cot} The answer is {ans}.", ans)


def gsm_heldout(rng: random.Random) -> Problem:
    """A problem from a held-out gsm_symbolic template (never in training corpora)."""
    p = gsm_problem(rng, tuple(sorted(GSM_HELDOUT)))
    return Problem("gsm_heldout", p.template, p.question, p.solution, p.answer)


FAMILIES: dict[str, Callable[[random.Random], Problem]] = {
    "arithmetic": arithmetic,
    "chain_sum": chain_sum,
    "word_one_step": word_one_step,
    "word_two_step": word_two_step,
    "word_distractor": word_distractor,
    "linear_equation": linear_equation,
    "fraction": fraction_simplify,
    "gcd_lcm": gcd_lcm,
    "percent": percent,
    "table": table_problem,
    "gsm": gsm_problem,
    "gsm_heldout": gsm_heldout,
}

#: Mix of families in the training corpora (weights); ``gsm_heldout`` is never trained on.
TRAIN_MIX: dict[str, float] = {
    "arithmetic": 0.16,
    "chain_sum": 0.08,
    "word_one_step": 0.14,
    "word_two_step": 0.1,
    "word_distractor": 0.05,
    "linear_equation": 0.1,
    "fraction": 0.06,
    "gcd_lcm": 0.06,
    "percent": 0.05,
    "table": 0.06,
    "gsm": 0.14,
}


def sample_family(rng: random.Random, mix: dict[str, float] = TRAIN_MIX) -> str:
    """Draw a family name according to ``mix``."""
    names = list(mix)
    return rng.choices(names, weights=[mix[n] for n in names])[0]


def multiple_choice(p: Problem, rng: random.Random, n_choices: int) -> tuple[list[str], int]:
    """Choices for ``p``: the gold answer and ``n_choices - 1`` distinct wrong ones, shuffled."""
    gold = p.answer
    wrong: set[str] = set()
    try:
        g = Fraction(gold)
    except (ValueError, ZeroDivisionError):
        g = None
    tries = 0
    while len(wrong) < n_choices - 1:
        tries += 1
        if g is not None:
            delta = rng.choice([-3, -2, -1, 1, 2, 3, 5, 10]) * (1 if tries < 50 else tries)
            cand = (
                _fmt(g + delta) if g.denominator == 1 else _fmt(Fraction(g.numerator + delta, g.denominator))
            )
        else:
            cand = f"{gold} ({tries})"
        if cand != gold and not cand.startswith("-"):
            wrong.add(cand)
    choices = sorted(wrong) + [gold]
    rng.shuffle(choices)
    return choices, choices.index(gold)
