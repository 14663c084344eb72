"""Document sources by configuration: a Hugging Face dataset, local files, or the miniature world.

A source yields documents ``{"text": str, "spans": list | None, "source": str}``.

* ``hf``: ``datasets.load_dataset(name, config, split=..., streaming=...)``: a hub name (the
  paper's corpora, :data:`PAPER_CORPORA`) or a local dataset folder in hub layout (parquet /
  jsonl files), which is how the hub path is tested offline;
* ``local``: a ``.jsonl``/``.json``/``.parquet``/``.txt`` file, a folder of such files (a folder
  of ``.txt`` files is one document per file), or a ``datasets.save_to_disk`` folder;
* ``miniature``: a corpus of a built miniature world (``<world>/raw/<name>.jsonl``), spans kept.

:func:`mix_by_tokens` interleaves sources so their token counts follow given weights (the
paper's general mix is SlimPajama:StarCoderData:OpenWebMath = 6:3:1, :data:`PAPER_GENERAL_MIX`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


class SourceError(ValueError):
    """A source is misconfigured or unreadable."""


class UnknownSourceError(SourceError):
    """The named dataset is neither a known corpus, a hub name (``hf:``) nor an existing path."""


class EmptySourceError(SourceError):
    """A source yields no documents."""


@dataclass(frozen=True)
class SourceSpec:
    """Where documents come from; see the module docstring for ``kind``."""

    kind: str
    name: str
    text_column: str = "text"
    split: str = "train"
    config: str | None = None
    streaming: bool = True
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "local", "miniature"):
            raise SourceError(f"unknown source kind {self.kind!r}; use 'hf', 'local' or 'miniature'")
        if self.limit is not None and self.limit < 1:
            raise SourceError(f"limit must be >= 1 or None, got {self.limit}")


#: The paper's corpora on the Hugging Face hub, with their real text columns.
PAPER_CORPORA: dict[str, SourceSpec] = {
    "owm": SourceSpec("hf", "open-web-math/open-web-math", "text"),
    "slimpajama": SourceSpec("hf", "cerebras/SlimPajama-627B", "text"),
    "starcoderdata": SourceSpec("hf", "bigcode/starcoderdata", "content"),
    "proof_pile_2": SourceSpec("hf", "EleutherAI/proof-pile-2", "text", config="default"),
}
#: The paper's general-pretraining mix, weights by tokens.
PAPER_GENERAL_MIX: dict[str, float] = {"slimpajama": 6.0, "starcoderdata": 3.0, "owm": 1.0}


def resolve_source(config: str | dict | SourceSpec) -> SourceSpec:
    """A :class:`SourceSpec` from a paper corpus name, ``hf:<name>``, an existing path or a dict."""
    if isinstance(config, SourceSpec):
        return config
    if isinstance(config, dict):
        try:
            return SourceSpec(**config)
        except TypeError as e:
            raise SourceError(f"bad source config {config}: {e}; fields are those of SourceSpec") from e
    if config in PAPER_CORPORA:
        return PAPER_CORPORA[config]
    if config.startswith("hf:"):
        return SourceSpec("hf", config[3:])
    if Path(config).exists():
        return SourceSpec("local", config)
    raise UnknownSourceError(
        f"unknown dataset {config!r}: not one of {sorted(PAPER_CORPORA)}, not 'hf:<hub name>' and not an "
        "existing local path; fix the name or build/download the data first"
    )


def _rows_local(path: Path, spec: SourceSpec) -> Iterator[dict]:
    import datasets

    if path.is_dir() and any(
        (path / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json")
    ):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if spec.split not in ds:
                raise SourceError(f"{path} has splits {list(ds)}, not {spec.split!r}; set split")
            ds = ds[spec.split]
        yield from ds
        return
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if f.suffix in (".jsonl", ".json"):
            with open(f, encoding="utf-8") as fh:
                for ln in fh:
                    if ln.strip():
                        yield json.loads(ln)
        elif f.suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
                yield from batch.to_pylist()
        elif f.suffix == ".txt":
            yield {spec.text_column: f.read_text(encoding="utf-8", errors="replace"), "_file": str(f)}


def _rows(spec: SourceSpec) -> Iterator[dict]:
    if spec.kind == "hf":
        import datasets

        try:
            ds = datasets.load_dataset(spec.name, spec.config, split=spec.split, streaming=spec.streaming)
        except Exception as e:  # noqa: BLE001 - datasets raises many kinds
            raise UnknownSourceError(
                f"cannot load dataset {spec.name!r} (config {spec.config!r}, split "
                f"{spec.split!r}): {e}; check the name and that the hub is reachable"
            ) from e
        yield from ds
    elif spec.kind == "local":
        path = Path(spec.name)
        if not path.exists():
            raise UnknownSourceError(f"local source {path} does not exist; fix the path")
        yield from _rows_local(path, spec)
    else:
        world, corpus = spec.name.rsplit(":", 1) if ":" in spec.name else (spec.name, spec.split)
        path = Path(world) / "raw" / f"{corpus}.jsonl"
        if not path.is_file():
            raise UnknownSourceError(
                f"no miniature corpus {corpus!r} at {path}; run `python -m rho.data build` first"
            )
        with open(path, encoding="utf-8") as fh:
            for ln in fh:
                yield json.loads(ln)


def iter_documents(config: str | dict | SourceSpec) -> Iterator[dict]:
    """Documents of a source as ``{"text", "spans", "source"}``.

    Raises :class:`UnknownSourceError` for an unknown dataset, :class:`SourceError` if the text
    column is missing, and :class:`EmptySourceError` if the source yields no document with text;
    all before the first document is returned.
    """
    spec = resolve_source(config)
    rows = _rows(spec)

    def docs() -> Iterator[dict]:
        for i, row in enumerate(rows):
            if spec.text_column not in row:
                raise SourceError(
                    f"source {spec.name!r} has no column {spec.text_column!r} (columns: "
                    f"{sorted(row)}); set text_column (StarCoderData uses 'content')"
                )
            text = row[spec.text_column]
            if isinstance(text, str) and text:
                yield {
                    "text": text,
                    "spans": row.get("spans"),
                    "source": row.get("source", f"{spec.name}#{i}"),
                }

    it = docs()
    if spec.limit is not None:
        it = itertools.islice(it, spec.limit)
    first = next(it, None)
    if first is None:
        raise EmptySourceError(
            f"source {spec.name!r} yields no documents with text in column "
            f"{spec.text_column!r}; point it at a non-empty dataset"
        )
    return itertools.chain([first], it)


def mix_by_tokens(
    sources: dict[str, Iterable[dict]],
    weights: dict[str, float],
    count_tokens: Callable[[str], int],
    total_tokens: int,
) -> Iterator[dict]:
    """Interleave documents so each source's share of tokens follows ``weights``.

    At each step the source furthest below its target share gives the next document (tagged
    with ``"mix": name`` and its ``"n_tokens"``).  Stops at ``total_tokens`` or when a source runs out.
    """
    if set(sources) != set(weights) or not weights:
        raise SourceError(f"mix weights {sorted(weights)} must name exactly the sources {sorted(sources)}")
    if any(w <= 0 for w in weights.values()):
        raise SourceError(f"mix weights must be positive, got {weights}")
    total_w = sum(weights.values())
    iters = {k: iter(v) for k, v in sources.items()}
    got = dict.fromkeys(weights, 0)
    done = 0
    while done < total_tokens:
        name = min(weights, key=lambda k: (got[k] - weights[k] / total_w * max(done, 1)) / weights[k])
        doc = next(iters[name], None)
        if doc is None:
            return
        n = count_tokens(doc["text"])
        got[name] += n
        done += n
        yield {**doc, "mix": name, "n_tokens": n}
