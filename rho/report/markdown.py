"""Render tidy frames as Markdown tables and write tables as CSV + Markdown atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from rho.io import atomic_path, write_text_atomic


def to_markdown(df: pd.DataFrame, floatfmt: str = ".1f", missing: str = "-") -> str:
    """A GitHub-flavoured Markdown table of ``df`` (index dropped).

    Floats are formatted with ``floatfmt``, missing values shown as ``missing``, ``|`` in cells
    escaped and newlines replaced by spaces; numeric columns are right-aligned.
    """
    cols = [str(c) for c in df.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns
    ]

    def cell(v: object) -> str:
        if v is None or (isinstance(v, float | np.floating) and np.isnan(v)) or v is pd.NA:
            return missing
        if isinstance(v, float | np.floating):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |"]
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(
    df: pd.DataFrame,
    out_stem: str | os.PathLike,
    *,
    title: str | None = None,
    note: str | None = None,
    floatfmt: str = ".1f",
) -> tuple[Path, Path]:
    """Write ``df`` to ``<out_stem>.csv`` and ``<out_stem>.md`` atomically; return both paths.

    The Markdown file starts with ``# title`` and ``note`` (when given) above the table. The CSV keeps
    full precision.
    """
    stem = Path(out_stem)
    csv_path, md_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    parts = []
    if title:
        parts.append(f"# {title}\n")
    if note:
        parts.append(note.strip() + "\n")
    parts.append(to_markdown(df, floatfmt=floatfmt))
    md = "\n".join(parts)
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    write_text_atomic(md_path, md)
    return csv_path, md_path
