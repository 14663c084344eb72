"""Math documents: noisy web pages (the OpenWebMath analog) and clean solution pages.

A page holds a few problems with worked solutions (``content``) set among blocks of web
noise (see :mod:`rho.data.miniature.noise`), each block recorded with its provenance.
Problems are written as ``Question: ...`` / ``Answer: <solution ending "The answer is X.">``,
the format the evaluation suites use for few-shot prompts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from rho.data.miniature.noise import NOISE_KINDS
from rho.data.miniature.problems import FAMILIES, TRAIN_MIX, Problem, sample_family
from rho.data.provenance import DocBuilder

Reject = Callable[[Problem], bool]

_TOPICS = [
    "Arithmetic practice",
    "Word problems",
    "Homework help",
    "Algebra basics",
    "Fractions and ratios",
    "Number theory corner",
    "Math contest prep",
    "Daily math puzzle",
    "Mental math tricks",
]


def draw_problem(
    rng: random.Random, mix: dict[str, float] = TRAIN_MIX, reject: Reject | None = None
) -> Problem:
    """Draw a problem from ``mix``; redraw (up to 1000 times) while ``reject(problem)`` is true."""
    for _ in range(1000):
        p = FAMILIES[sample_family(rng, mix)](rng)
        if reject is None or not reject(p):
            return p
    raise RuntimeError("every drawn problem was rejected: the evaluation set covers the training mix")


def render(p: Problem, style: int = 0) -> str:
    """A problem and its solution as page text."""
    if style == 1:
        return f"Problem: {p.question}\nSolution: {p.solution}"
    return f"Question: {p.question}\nAnswer: {p.solution}"


def _noise(doc: DocBuilder, rng: random.Random, kind: str, p: float) -> None:
    if rng.random() < p:
        doc.add(NOISE_KINDS[kind](rng), kind)


def noisy_page(
    rng: random.Random, noise: float = 1.0, reject: Reject | None = None
) -> tuple[str, list, dict]:
    """A web page (forum thread, worksheet or blog post) with math content and noise.

    ``noise`` scales the probability of every noise block (0 gives clean pages).
    Returns ``(text, spans, meta)``.
    """
    doc = DocBuilder()
    style = rng.choice(["forum", "worksheet", "blog"])
    n_prob = rng.randint(1, 3) if style == "forum" else rng.randint(2, 5)
    probs = [draw_problem(rng, reject=reject) for _ in range(n_prob)]
    _noise(doc, rng, "navigation", 0.8 * noise)
    _noise(doc, rng, "timestamp_url", 0.6 * noise)
    doc.add(rng.choice(_TOPICS))
    for i, p in enumerate(probs):
        if style == "forum":
            _noise(doc, rng, "forum", 0.95 * noise)
            doc.add(f"Question: {p.question}")
            _noise(doc, rng, "off_topic", 0.3 * noise)
            _noise(doc, rng, "forum", 0.95 * noise)
            doc.add(f"Answer: {p.solution}")
            _noise(doc, rng, "forum", 0.5 * noise)
        elif style == "worksheet":
            doc.add(f"{i + 1}. " + render(p, style=rng.randrange(2)))
            _noise(doc, rng, "timestamp_url", 0.15 * noise)
            _noise(doc, rng, "gibberish", 0.1 * noise)
        else:
            doc.add(render(p))
            _noise(doc, rng, "off_topic", 0.35 * noise)
            _noise(doc, rng, "forum", 0.3 * noise)
    _noise(doc, rng, "gibberish", 0.35 * noise)
    _noise(doc, rng, "off_topic", 0.4 * noise)
    _noise(doc, rng, "timestamp_url", 0.5 * noise)
    _noise(doc, rng, "navigation", 0.7 * noise)
    text, spans = doc.build()
    return (
        text,
        spans,
        {"style": style, "families": [p.family for p in probs], "templates": [p.template for p in probs]},
    )


def clean_page(rng: random.Random, reject: Reject | None = None) -> tuple[str, list, dict]:
    """A clean page of worked solutions (the curated reference corpus)."""
    doc = DocBuilder()
    probs = [draw_problem(rng, reject=reject) for _ in range(rng.randint(2, 5))]
    for p in probs:
        doc.add(render(p))
    text, spans = doc.build()
    return (
        text,
        spans,
        {"style": "clean", "families": [p.family for p in probs], "templates": [p.template for p in probs]},
    )


def lesson_page(rng: random.Random, reject: Reject | None = None) -> tuple[str, list, dict]:
    """A textbook-style lesson with worked examples and light noise (extra Proof-Pile-2 analog docs)."""
    doc = DocBuilder()
    fam = sample_family(rng)
    doc.add(f"Lesson: {fam.replace('_', ' ')}")
    doc.add("Read each worked example carefully, then try the exercises on your own.")
    probs = []
    for k in range(rng.randint(2, 4)):
        mix = {fam: 1.0} if rng.random() < 0.7 else TRAIN_MIX
        p = draw_problem(rng, mix=mix, reject=reject)
        probs.append(p)
        doc.add(f"Example {k + 1}. " + render(p, style=1))
    _noise(doc, rng, "timestamp_url", 0.3)
    _noise(doc, rng, "navigation", 0.2)
    text, spans = doc.build()
    return (
        text,
        spans,
        {"style": "lesson", "families": [p.family for p in probs], "templates": [p.template for p in probs]},
    )


def validation_item(rng: random.Random, reject: Reject | None = None) -> tuple[str, list, dict[str, Any]]:
    """One held-out problem for downstream loss: the question is ``prompt``, the solution ``content``."""
    p = draw_problem(rng, reject=reject)
    doc = DocBuilder()
    doc.add(f"Question: {p.question}\nAnswer:", "prompt", newline=False)
    doc.add(f" {p.solution}", "content")
    text, spans = doc.build()
    return text, spans, {"family": p.family, "template": p.template, "answer": p.answer}
