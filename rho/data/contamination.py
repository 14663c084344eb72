"""N-gram contamination check between evaluation problems and training text.

Text is normalised to lower-case words, numbers and arithmetic symbols.  An evaluation
problem is identified by its template *and numbers*, so the n-grams that identify it are the
13-word windows of its question that carry at least ``min(2, #numbers)`` of its numbers (a
question shorter than 13 words is one n-gram as a whole).  Template wording shared by
problems with other numbers is not a leak; a 13-word run with the problem's numbers is.
Windows are hashed with a 64-bit polynomial hash in numpy, so scanning millions of words
takes seconds; every hash hit is confirmed on the words themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"\d+|[a-z]+|[+\-*/=%<>×÷]")
_P = np.uint64(1_000_003)


def normalise(text: str) -> list[str]:
    """Lower-case words, digit runs and arithmetic symbols of ``text``."""
    return _WORD.findall(text.lower())


def _hashes(ids: np.ndarray, n: int) -> np.ndarray:
    m = len(ids) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _P + ids[k : k + m]
    return h


@dataclass
class NgramIndex:
    """The identifying n-grams of a set of evaluation questions."""

    n: int = 13
    vocab: dict[str, int] = field(default_factory=dict)
    grams: dict[int, dict[int, tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    _keys: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def _ids(self, words: list[str], add: bool) -> np.ndarray:
        if add:
            return np.asarray([self.vocab.setdefault(w, len(self.vocab) + 1) for w in words], dtype=np.uint64)
        return np.asarray([self.vocab.get(w, 0) for w in words], dtype=np.uint64)

    def add(self, question: str, problem_id: str) -> None:
        """Register the identifying n-grams of one evaluation question."""
        words = normalise(question)
        if not words:
            return
        is_num = np.asarray([w.isdigit() for w in words])
        need = min(2, int(is_num.sum()))
        n = min(self.n, len(words))
        ids = self._ids(words, add=True)
        counts = np.convolve(is_num.astype(int), np.ones(n, dtype=int), mode="valid")
        for start, h in enumerate(_hashes(ids, n)):
            if counts[start] >= need:
                self.grams.setdefault(n, {})[int(h)] = (tuple(words[start : start + n]), problem_id)
        self._keys.clear()

    def find(self, text: str) -> list[tuple[str, str]]:
        """``(problem_id, matched n-gram)`` for every identifying n-gram that occurs in ``text``."""
        words = normalise(text)
        ids = self._ids(words, add=False)
        hits = []
        for n, table in self.grams.items():
            h = _hashes(ids, n)
            if not len(h):
                continue
            if n not in self._keys:
                self._keys[n] = np.sort(np.fromiter(table.keys(), dtype=np.uint64, count=len(table)))
            keys = self._keys[n]
            pos_in = np.minimum(np.searchsorted(keys, h), len(keys) - 1)
            for pos in np.flatnonzero(keys[pos_in] == h):
                gram, pid = table[int(h[pos])]
                if tuple(words[pos : pos + n]) == gram:
                    hits.append((pid, " ".join(gram)))
        return hits

    def __contains__(self, text: str) -> bool:
        return bool(self.find(text))


def build_index(questions: Iterable[tuple[str, str]], n: int = 13) -> NgramIndex:
    """An index over ``(problem_id, question)`` pairs."""
    index = NgramIndex(n=n)
    for pid, q in questions:
        index.add(q, pid)
    return index
