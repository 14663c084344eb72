"""Document sources by configuration: a Hugging Face dataset, local files, or the miniature world.

A source yields documents ``{"text": str, "spans": list | None, "source": str}``.

* ``hf``: ``datasets.load_dataset(name, config, split=..., streaming=...)``: a hub name or a local
  dataset folder in hub layout (parquet / jsonl files).  With ``data_files`` set, the files
  ``<root>/<data_files>`` are read by the packaged ``builder`` (``json`` reads ``.jsonl.zst``
  through ``zstandard``; ``parquet``) instead, where ``root`` is ``hf://datasets/<name>`` on the
  hub or a local copy in the same layout (a mirror, or the tests' files): the same code reads both.
  This is how the paper's corpora (:data:`PAPER_CORPORA`) load with ``datasets`` >= 4, which no
  longer runs loading scripts.  A ``data_files`` pattern with ``{part}`` is read once per folder of
  ``parts`` (a ``data_dir`` each; ``("*",)``: every folder of the root but ``exclude_parts``) and
  the folders are mixed by tokens (:func:`mix_by_tokens`) in proportion to ``weights`` (default:
  each folder's size in bytes, the corpus's own proportions);
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

#: Packaged ``datasets`` builders a ``data_files`` source may use.
BUILDERS = ("json", "parquet")


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
    #: glob under the dataset root read by ``builder`` (``{part}``: once per folder of ``parts``)
    data_files: str | None = None
    builder: str = "json"
    #: folders (``data_dir``) read separately and mixed by tokens; ``("*",)``: every folder
    parts: tuple[str, ...] | None = None
    #: token weights of ``parts`` (None: each folder's size in bytes)
    weights: tuple[float, ...] | None = None
    #: folders left out when ``parts`` is ``("*",)`` (e.g. StarCoderData's non-code folders)
    exclude_parts: tuple[str, ...] = ()
    #: where ``data_files`` are looked up: None is ``hf://datasets/<name>``; or a local copy
    root: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "local", "miniature"):
            raise SourceError(f"unknown source kind {self.kind!r}; use 'hf', 'local' or 'miniature'")
        if self.limit is not None and self.limit < 1:
            raise SourceError(f"limit must be >= 1 or None, got {self.limit}")
        for key in ("parts", "weights", "exclude_parts"):  # lists (YAML, JSON) become tuples
            val = getattr(self, key)
            if isinstance(val, list):
                object.__setattr__(self, key, tuple(val))
        if self.builder not in BUILDERS:
            raise SourceError(f"builder {self.builder!r} is not one of {BUILDERS}; set builder")
        has_part = self.data_files is not None and "{part}" in self.data_files
        if has_part != bool(self.parts):
            raise SourceError(
                f"source {self.name!r}: a data_files pattern with '{{part}}' needs parts, and parts need such "
                f"a pattern (data_files={self.data_files!r}, parts={self.parts!r}); set both or neither"
            )
        if self.data_files is not None and self.kind != "hf":
            raise SourceError(f"data_files apply to kind 'hf' only, not {self.kind!r}")
        if self.weights is not None:
            if not self.parts or self.parts == ("*",) or len(self.weights) != len(self.parts):
                raise SourceError(
                    f"source {self.name!r}: weights {self.weights} need one weight per named part {self.parts}"
                )
            if any(not w > 0 for w in self.weights):
                raise SourceError(f"source {self.name!r}: weights must be positive, got {self.weights}")

    @property
    def data_root(self) -> str:
        """Where ``data_files`` are found: ``root``, else the dataset on the hub."""
        return (self.root or f"hf://datasets/{self.name}").rstrip("/")


#: Proof-Pile-2's subsets with their sizes in billions of tokens (its dataset card; Llemma paper):
#: the ``weights`` of its mix (its ``default`` config streams arXiv first).
PROOF_PILE_2_SUBSETS: dict[str, float] = {"arxiv": 29.0, "open-web-math": 15.0, "algebraic-stack": 11.0}
#: StarCoderData's folders that are not source files of one language (other schemas).
STARCODER_NON_CODE: tuple[str, ...] = (
    "git-commits-cleaned",
    "github-issues-filtered-structured",
    "jupyter-scripts-dedup-filtered",
    "jupyter-structured-clean-dedup",
)
#: The paper's corpora on the Hugging Face hub, with their real layouts and text columns.  Each is
#: read from its files (``data_files``) under ``hf://datasets/<name>``; ``root=`` points one at
#: a local copy in the same layout.
PAPER_CORPORA: dict[str, SourceSpec] = {
    # parquet shards data/train-000NN-of-00114-*.parquet; columns url, text, date, metadata
    "owm": SourceSpec(
        "hf", "open-web-math/open-web-math", "text", data_files="data/train-*.parquet", builder="parquet"
    ),
    # train/chunk1..10/example_train_N.jsonl.zst; fields text, meta.redpajama_set_name
    "slimpajama": SourceSpec(
        "hf", "cerebras/SlimPajama-627B", "text", data_files="train/chunk*/*.jsonl.zst", builder="json"
    ),
    # gated; one folder per language (<lang>/train-*.parquet; columns max_stars_repo_path,
    # max_stars_repo_name, max_stars_count, id, content), mixed by folder size; non-code folders out
    "starcoderdata": SourceSpec(
        "hf",
        "bigcode/starcoderdata",
        "content",
        data_files="{part}/*.parquet",
        builder="parquet",
        parts=("*",),
        exclude_parts=STARCODER_NON_CODE,
    ),
    # <subset>/train/*.jsonl.zst; fields text, meta; subsets mixed by tokens 29 : 15 : 11
    "proof_pile_2": SourceSpec(
        "hf",
        "EleutherAI/proof-pile-2",
        "text",
        data_files="{part}/train/*.jsonl.zst",
        builder="json",
        parts=tuple(PROOF_PILE_2_SUBSETS),
        weights=tuple(PROOF_PILE_2_SUBSETS.values()),
    ),
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


def _need_zstandard(spec: SourceSpec) -> None:
    if spec.data_files and spec.data_files.endswith(".zst"):
        try:
            import zstandard  # noqa: F401
        except ImportError as e:
            raise SourceError(
                f"source {spec.name!r} is .jsonl.zst: install the `zstandard` package (a dependency of rho)"
            ) from e


def source_parts(spec: SourceSpec) -> list[str]:
    """The folders a ``{part}`` source reads: ``parts``, or every folder of the root but ``exclude_parts``."""
    if not spec.parts:
        return []
    if spec.parts != ("*",):
        return list(spec.parts)
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(spec.data_root)
        found = fs.ls(path, detail=True)
    except Exception as e:  # noqa: BLE001 - fsspec / hub errors vary
        raise UnknownSourceError(
            f"cannot list the folders of {spec.data_root}: {e}; check the name or root, hub access and token"
        ) from e
    names = sorted(
        str(f["name"]).rstrip("/").rsplit("/", 1)[-1] for f in found if f.get("type") == "directory"
    )
    parts = [n for n in names if not n.startswith(".") and n not in spec.exclude_parts]
    if not parts:
        raise EmptySourceError(
            f"{spec.data_root} has no folders to read (left out: {list(spec.exclude_parts)})"
        )
    return parts


def part_weights(spec: SourceSpec, parts: list[str]) -> dict[str, float]:
    """Token weights of a source's folders: ``weights``, else each folder's size in bytes."""
    if spec.weights is not None:
        return dict(zip(parts, spec.weights, strict=True))
    import fsspec

    fs, path = fsspec.core.url_to_fs(spec.data_root)
    sizes = {p: float(fs.du(f"{path}/{p}")) for p in parts}
    empty = [p for p, v in sizes.items() if v <= 0]
    if empty:
        raise EmptySourceError(f"{spec.data_root}: folders {empty} are empty; leave them out (exclude_parts)")
    return sizes


def _load_files(spec: SourceSpec, pattern: str) -> Iterable[dict]:
    import datasets

    files = f"{spec.data_root}/{pattern}"
    try:
        return datasets.load_dataset(spec.builder, data_files=files, split="train", streaming=spec.streaming)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds
        raise UnknownSourceError(
            f"cannot read {files} ({spec.builder}): {e}; check the name or root, hub access and token"
        ) from e


def _rows_files(spec: SourceSpec, count_tokens: Callable[[str], int]) -> Iterator[dict]:
    _need_zstandard(spec)
    assert spec.data_files is not None
    if not spec.parts:
        yield from _load_files(spec, spec.data_files)
        return
    parts = source_parts(spec)
    weights = part_weights(spec, parts)
    streams = {p: _part_docs(spec, p) for p in parts}
    for doc in mix_by_tokens(streams, weights, count_tokens, total_tokens=float("inf")):
        yield {**doc["row"], "_part": doc["mix"]}


def _part_docs(spec: SourceSpec, part: str) -> Iterator[dict]:
    """One folder's rows as mixable documents (``text`` for counting, the row kept)."""
    for row in _load_files(spec, spec.data_files.replace("{part}", part)):  # type: ignore[union-attr]
        text = row.get(spec.text_column)
        if isinstance(text, str) and text:
            yield {"text": text, "row": row}


def _rows(spec: SourceSpec, count_tokens: Callable[[str], int] = len) -> Iterator[dict]:
    if spec.kind == "hf" and spec.data_files is not None:
        yield from _rows_files(spec, count_tokens)
    elif spec.kind == "hf":
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


def iter_documents(
    config: str | dict | SourceSpec, count_tokens: Callable[[str], int] = len
) -> Iterator[dict]:
    """Documents of a source as ``{"text", "spans", "source"}``.

    ``count_tokens`` measures documents when a source mixes its folders (``parts``) by tokens;
    the default counts characters.  Raises :class:`UnknownSourceError` for an unknown dataset, :class:`SourceError` if the text
    column is missing, and :class:`EmptySourceError` if the source yields no document with text;
    all before the first document is returned.
    """
    spec = resolve_source(config)
    rows = _rows(spec, count_tokens)

    def docs() -> Iterator[dict]:
        for i, row in enumerate(rows):
            if spec.text_column not in row:
                raise SourceError(
                    f"source {spec.name!r} has no column {spec.text_column!r} (columns: "
                    f"{sorted(row)}); set text_column (StarCoderData uses 'content')"
                )
            text = row[spec.text_column]
            if isinstance(text, str) and text:
                part = row.get("_part")
                name = f"{spec.name}/{part}" if part else spec.name
                yield {
                    "text": text,
                    "spans": row.get("spans"),
                    "source": row.get("source", f"{name}#{i}"),
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
    total_tokens: float,
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
