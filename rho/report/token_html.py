"""A self-contained HTML page showing which tokens SLM kept and dropped (paper Figures 13-14).

Each unit (a document, or a fixed-size block of a validation shard: the caller names it with
``unit``) is a list of ``(token_text, selected, provenance_label, score)`` tuples; the label and
score may be None. ``selected`` is True (kept), False (dropped) or None (context: a token without a
prediction, e.g. the first token of a block, which SLM cannot select). Kept tokens are shown in the
text colour, dropped ones highlighted, context tokens in grey; only kept and dropped tokens enter the
counts and percentages. Noise tokens (label > 0) are underlined; hovering a token shows its status,
provenance and score. The page has inline CSS only (no scripts, no network) and all text is
HTML-escaped.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2
import numpy as np

from rho.analysis.errors import AnalysisInputError
from rho.io import write_text_atomic

Token = tuple[str, "bool | None", "int | str | None", "float | None"]


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def _label_text(label: int | str | None, label_names: Mapping[int, str] | Sequence[str] | None) -> str | None:
    if label is None:
        return None
    if isinstance(label, str):
        return label
    if isinstance(label_names, Mapping):
        return label_names.get(label, f"label {label}")
    if label_names is not None and 0 <= label < len(label_names):
        return label_names[label]
    return "content" if label == 0 else f"noise kind {label}"


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"


def _is_noise(label: int | str | None) -> bool:
    if label is None:
        return False
    return label != "content" if isinstance(label, str) else int(label) > 0


def _prepare(
    documents: Sequence[Sequence[Token]],
    titles: Sequence[str] | None,
    label_names: Mapping[int, str] | Sequence[str] | None,
    unit: str = "document",
) -> list[dict]:
    if not documents:
        raise AnalysisInputError("no documents to render; pass a list of token lists")
    if titles is not None and len(titles) != len(documents):
        raise AnalysisInputError(f"{len(titles)} titles for {len(documents)} documents")
    docs = []
    for d, doc in enumerate(documents):
        toks = []
        for i, tok in enumerate(doc):
            if not isinstance(tok, Sequence) or isinstance(tok, str) or len(tok) != 4:
                raise AnalysisInputError(
                    f"{unit} {d} token {i} is {tok!r}; "
                    "expected (token_text, selected (bool, or None for context), label or None, score or None)"
                )
            text, selected, label, score = tok
            if not isinstance(text, str) or not (selected is None or isinstance(selected, bool | np.bool_)):
                raise AnalysisInputError(
                    f"{unit} {d} token {i}: token_text must be str and selected a bool (or None for a context token)"
                )
            selected = None if selected is None else bool(selected)
            if isinstance(label, numbers.Integral) and not isinstance(label, bool):
                label = int(label)
            elif label is not None and not isinstance(label, str):
                raise AnalysisInputError(f"{unit} {d} token {i}: label must be an int, a name or None")
            if score is not None:
                if not isinstance(score, numbers.Real) or not math.isfinite(float(score)):
                    raise AnalysisInputError(f"{unit} {d} token {i}: score must be a finite number or None")
                score = float(score)
            name = _label_text(label, label_names)
            state = "context" if selected is None else "kept" if selected else "dropped"
            hover = ("context: not scored" if selected is None else state) + (
                f" | provenance: {name}" if name else ""
            )
            hover += f" | score: {score:.3f}" if score is not None else ""
            toks.append(
                {
                    "text": text,
                    "selected": selected,
                    "state": state,
                    "label": name,
                    "noise": _is_noise(label),
                    "score": None if score is None else f"{score:.4g}",
                    "hover": hover,
                }
            )
        n_kept = sum(t["selected"] is True for t in toks)
        n_scored = sum(t["selected"] is not None for t in toks)
        docs.append(
            {
                "title": titles[d] if titles is not None else f"{unit} {d + 1}",
                "tokens": toks,
                "n_kept": n_kept,
                "n_tokens": n_scored,
                "n_context": len(toks) - n_scored,
                "share": n_kept / n_scored if n_scored else None,
            }
        )
    return docs


def render_token_html_string(
    documents: Sequence[Sequence[Token]],
    *,
    title: str = "Tokens selected by SLM",
    titles: Sequence[str] | None = None,
    label_names: Mapping[int, str] | Sequence[str] | None = None,
    unit: str = "document",
    units: str | None = None,
) -> str:
    """The page as a string (see :func:`render_token_html`)."""
    if not unit or not isinstance(unit, str):
        raise AnalysisInputError(f"unit must be a non-empty word such as 'document' or 'block', got {unit!r}")
    docs = _prepare(documents, titles, label_names, unit)
    total = sum(d["n_tokens"] for d in docs)
    kept = sum(d["n_kept"] for d in docs)
    return _ENV.get_template("token_selection.html.jinja").render(
        title=title,
        documents=docs,
        unit=unit,
        units=units or unit + "s",
        total_tokens=total,
        total_kept=kept,
        total_context=sum(d["n_context"] for d in docs),
        total_share=kept / total if total else None,
        pct=_pct,
    )


def render_token_html(
    documents: Sequence[Sequence[Token]],
    out_path: str | os.PathLike,
    *,
    title: str = "Tokens selected by SLM",
    titles: Sequence[str] | None = None,
    label_names: Mapping[int, str] | Sequence[str] | None = None,
    unit: str = "document",
    units: str | None = None,
) -> Path:
    """Write the token selection page for ``documents`` to ``out_path`` atomically; return the path.

    ``documents[d]`` is a list of ``(token_text, selected, provenance_label, score)``; ``selected``
    is True (kept), False (dropped) or None (context: no prediction, e.g. a block's first token; shown
    grey and left out of the kept/dropped counts). ``label_names`` maps label values to names (the
    shard's ``label_names`` list works). ``unit`` names what each entry of ``documents`` is ("document",
    or "block" for fixed-size blocks of a shard): default titles are "<unit> 1", ... and the summary
    counts "<units>" (default ``unit + "s"``). Input is validated before anything is written.
    """
    html = render_token_html_string(
        documents, title=title, titles=titles, label_names=label_names, unit=unit, units=units
    )
    write_text_atomic(out_path, html)
    return Path(out_path)
