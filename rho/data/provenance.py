"""Provenance labels: which part of a document each character (and token) came from.

A labelled document is its text plus a list of contiguous character spans
``[[start, end, label_name], ...]`` that cover the text.  Tokenization turns the
character labels into one uint8 label per token (see :func:`token_labels`), stored beside
the tokens in a shard (``labels.bin``; label 0 = content).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Label names of the miniature world, index = stored uint8 label value.
LABEL_NAMES: list[str] = ["content", "forum", "navigation", "timestamp_url", "gibberish", "off_topic"]
#: Labels of the math validation shard: solution tokens are content, question tokens are the prompt.
VAL_LABEL_NAMES: list[str] = ["content", "prompt"]


class ProvenanceError(ValueError):
    """Spans that do not describe the text they belong to."""


@dataclass
class DocBuilder:
    """Assemble a document piece by piece, recording the provenance of every piece.

    Every piece is made to end with a newline so that no token of a byte-level BPE can cross
    the boundary between two labels (pre-tokenization splits letters, digits, punctuation and
    whitespace apart).
    """

    parts: list[str] = field(default_factory=list)
    spans: list[list] = field(default_factory=list)
    _len: int = 0

    def add(self, text: str, label: str = "content", newline: bool = True) -> None:
        """Append ``text`` with provenance ``label`` (and a newline unless ``newline`` is false)."""
        if not text:
            return
        if newline and not text.endswith("\n"):
            text += "\n"
        if self.spans and self.spans[-1][2] == label:
            self.spans[-1][1] += len(text)
        else:
            self.spans.append([self._len, self._len + len(text), label])
        self.parts.append(text)
        self._len += len(text)

    def build(self) -> tuple[str, list[list]]:
        """The text and its spans (which cover the text exactly)."""
        return "".join(self.parts), [list(s) for s in self.spans]


def check_spans(text: str, spans: Sequence[Sequence], label_names: Sequence[str]) -> None:
    """Raise :class:`ProvenanceError` unless ``spans`` are sorted, in range and use known labels."""
    prev = 0
    for s, e, lab in spans:
        if not (0 <= s <= e <= len(text)) or s < prev:
            raise ProvenanceError(
                f"span [{s}, {e}) is out of order or outside the text of length {len(text)}; "
                "spans must be sorted, non-overlapping character ranges"
            )
        if lab not in label_names:
            raise ProvenanceError(f"unknown provenance label {lab!r}; known labels: {list(label_names)}")
        prev = e


def char_labels(text: str, spans: Sequence[Sequence], label_names: Sequence[str]) -> np.ndarray:
    """One uint8 label per character (0 where no span covers it)."""
    index = {n: i for i, n in enumerate(label_names)}
    out = np.zeros(len(text), dtype=np.uint8)
    for s, e, lab in spans:
        out[s:e] = index[lab]
    return out


def token_labels(text: str, offsets: np.ndarray, labels_by_char: np.ndarray) -> np.ndarray:
    """Label of each token = label of the first non-whitespace character in its offsets.

    ``offsets`` is ``[n_tokens, 2]`` (character start/end of each token, as tokenizers report).
    A token made only of whitespace takes the label of its first character.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if len(offsets) == 0:
        return np.zeros(0, dtype=np.uint8)
    n = len(text)
    if n == 0:
        return np.zeros(len(offsets), dtype=np.uint8)
    nonws = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    nonws = ~np.isin(nonws, np.array([32, 9, 10, 13, 11, 12], dtype=np.uint32))
    # next_nonws[i] = smallest j >= i with a non-whitespace char (n if none)
    idx = np.where(nonws, np.arange(n), n)
    next_nonws = np.minimum.accumulate(idx[::-1])[::-1]
    next_nonws = np.append(next_nonws, n)
    starts = np.clip(offsets[:, 0], 0, n)
    ends = offsets[:, 1]
    pos = next_nonws[starts]
    pos = np.where(pos < ends, pos, starts)
    pos = np.clip(pos, 0, n - 1)
    return labels_by_char[pos]
