"""Build the ``paper`` profile's data from the hub corpora: the counterpart of ``build_world``.

:func:`build_hub_data` writes, into ``out_dir`` (the study reads ``data/paper/``)::

    tokenizer/            the profile's pretrained tokenizer (save_pretrained): paper's TinyLlama,
                          paper_7b's Mistral-7B
    shards/owm/           OpenWebMath, without its first ``val_docs`` documents
    shards/owm_val/       the first ``val_docs`` OpenWebMath documents (held out: token dynamics)
    shards/ppile/         Proof-Pile-2 (self-reference, paper Sec. 3.4)
    shards/general/       SlimPajama : StarCoderData : OpenWebMath = 6 : 3 : 1 by tokens
    shards/ref/           the reference-model corpus (see the SUBSTITUTION note below)
    shards/base/          no shard: ``released.json`` says the base model is a released one (no
                          pretraining corpus); dvc.yaml's base stages depend on this folder
    eval/                 the paper's nine math benchmarks as a suite folder (rho.evaluate.builtin_suite):
                          the harness's problem sets shipped in rho/evaluate/benchmarks (TabMWP from
                          its release URL or ``eval_files``), read by ``python -m rho.study evaluate``
    world.json            manifest: profile, seed, versions, sources, limits, counts, hashes, tokenizer

A profile's ``hub_shards`` limits the build to some of these (``paper_7b``: owm_val, owm, ref);
the sources of the others are then neither probed nor read.

**SUBSTITUTION (reference corpus).** The paper trains its reference model on a curated
0.5B-token set of high-quality math (synthetic and human-labelled) that is *not public*.  The
default ``ref`` here is a public substitute, :data:`DEFAULT_REF_SOURCE`: FineMath
(``HuggingFaceTB/finemath``, config ``finemath-4plus``, column ``text``), classifier-selected
high-quality math web pages, capped at the paper's 0.5B tokens (:data:`DEFAULT_LIMITS`).  It is
closer to OpenWebMath than the paper's set, and may share pages with it (both come from Common
Crawl), so reference-model results are not the paper's.  Pass ``sources={"ref": ...}`` (CLI
``--source ref=...``) to use another set; the manifest records which one was used.

Sources: every corpus reads :data:`rho.data.sources.PAPER_CORPORA` (streaming) unless
``sources`` overrides it by key (:data:`SOURCE_KEYS`: ``owm``, ``ppile``, ``ref``, and the
general mix's ``slimpajama`` and ``starcoderdata``) with a paper corpus name, ``hf:<hub name>``,
a bare hub name ``owner/name`` (if no such local path exists), a local copy of the corpus in
its hub layout (a folder holding its ``data_files``, e.g. ``arxiv/train/*.jsonl.zst``: read exactly
as the hub is, with that folder as ``root``), another local path (``.jsonl``, ``.parquet``,
``.txt`` folder, ``save_to_disk`` folder), a dict of
:class:`~rho.data.sources.SourceSpec` fields or a ``SourceSpec``.  A string override keeps the
corpus's real text column (StarCoderData: ``content``).  The general mix's OpenWebMath part is the
``owm`` source, held-out documents skipped.

Limits: ``limits`` maps a corpus of :data:`LIMIT_KEYS` (``owm``, ``ppile``, ``ref``, ``general``)
to a number of documents (an int) or ``{"docs": N, "tokens": M}``; a token budget stops a corpus
once it is reached (content tokens, EOS not counted; the last document may overshoot, as in
:func:`~rho.data.sources.mix_by_tokens`).  ``general``'s token budget is the mix's total.
``owm_val`` is sized by ``val_docs``.

Safety: every check (names, limits, sources yield documents, the tokenizer loads, existing
shards or tokenizer in ``out_dir`` were made with the same tokenizer unless ``overwrite``) runs
before anything is written and raises a ``ValueError`` subclass.  Shards are then written into a
staging folder inside ``out_dir`` and moved into place only once all of them are complete, so a
failed build leaves an existing world as it was.  Hub documents carry no provenance labels.
The evaluation problems are loaded (TabMWP's fetched) with the checks, and ``eval/`` is written
after the shards, whole and atomically.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rho.data.shards import TokenShard, tokenizer_fingerprint
from rho.data.sources import (
    PAPER_CORPORA,
    SourceError,
    SourceSpec,
    UnknownSourceError,
    iter_documents,
    mix_by_tokens,
    resolve_source,
)
from rho.data.tokenize import TokenizerMismatchError, tokenize_documents
from rho.data.tokenizer import load_tokenizer
from rho.data.worlds import WorldError, WorldSpec, get_world
from rho.io import atomic_dir, write_json_atomic

#: Shards written, in order.
CORPORA = ("owm_val", "owm", "ppile", "general", "ref")
#: Keys of ``sources``: the corpora read from a source (owm_val and general are derived).
SOURCE_KEYS = ("owm", "ppile", "ref", "slimpajama", "starcoderdata")
#: Keys of ``limits``.
LIMIT_KEYS = ("owm", "ppile", "ref", "general")
#: Public stand-in for the paper's non-public 0.5B-token curated reference set (see module docstring).
DEFAULT_REF_SOURCE = SourceSpec("hf", "HuggingFaceTB/finemath", "text", config="finemath-4plus")
#: Default caps: ref at the paper's 0.5B tokens, general and ppile at 15B tokens (the paper
#: profile's ``cpt_tokens``, the most any run reads); owm is taken whole (~14.7B tokens).
DEFAULT_LIMITS: dict[str, dict[str, int]] = {
    "ref": {"tokens": 500_000_000},
    "general": {"tokens": 15_000_000_000},
    "ppile": {"tokens": 15_000_000_000},
}
#: Default held-out OpenWebMath documents (~1M tokens, > the 160 x 2048 validation tokens probed).
DEFAULT_VAL_DOCS = 500
_SOURCE_OF = {
    "owm": "owm",
    "ppile": "proof_pile_2",
    "slimpajama": "slimpajama",
    "starcoderdata": "starcoderdata",
}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


#: The evaluation suite's folder inside the data folder (the study's ``data/<profile>/eval``).
EVAL_DIR = "eval"
#: The file in ``shards/base/``: hub profiles continue a released model, so there is no base corpus.
RELEASED_BASE = "released.json"
_RELEASED_NOTE = (
    "hub profiles continue a released model (params.yaml: base_tokens 0): there is no base "
    "pretraining corpus; this folder exists because dvc.yaml's base stages depend on shards/base"
)


class HubDataError(ValueError):
    """``build_hub_data`` was called with bad arguments (unknown corpus, bad limit, profile)."""


def _default_specs(prof: WorldSpec) -> dict[str, SourceSpec]:
    hub = {k: resolve_source(v) for k, v in prof.hub_corpora.items()}
    out = {}
    for key, corpus in _SOURCE_OF.items():
        out[key] = hub.get(corpus, PAPER_CORPORA[corpus])
    out["ref"] = DEFAULT_REF_SOURCE
    return out


def _resolve(key: str, value: str | os.PathLike | dict | SourceSpec, default: SourceSpec) -> SourceSpec:
    """A SourceSpec for an override; strings keep the corpus's real text column."""
    if isinstance(value, SourceSpec | dict):
        return resolve_source(value)
    text = str(value)
    if not text:
        raise SourceError(f"sources[{key!r}] is empty; give a hub name, hf:<name> or a local path")
    if text in PAPER_CORPORA:
        return PAPER_CORPORA[text]
    if text.startswith("hf:"):
        return SourceSpec("hf", text[3:], default.text_column)
    if _is_copy_of(Path(text), default):
        return replace(default, root=text)
    if Path(text).exists():
        return SourceSpec("local", text, default.text_column)
    if _HUB_NAME.match(text):
        return SourceSpec("hf", text, default.text_column)
    raise UnknownSourceError(
        f"sources[{key!r}] = {text!r} is not a paper corpus name ({sorted(PAPER_CORPORA)}), not "
        "'hf:<hub name>' or 'owner/name', and not an existing local path; fix it"
    )


def _is_copy_of(path: Path, spec: SourceSpec) -> bool:
    """Whether a local folder holds ``spec``'s files in the hub layout (then it is read as its root)."""
    if not path.is_dir() or spec.data_files is None:
        return False
    if spec.parts and spec.parts != ("*",):
        patterns = [spec.data_files.replace("{part}", p) for p in spec.parts]
    else:
        patterns = [spec.data_files.replace("{part}", "*")]
    return all(any(path.glob(p)) for p in patterns)


def _parse_limits(limits: Mapping[str, Any] | None) -> dict[str, dict[str, int]]:
    out = {k: dict(v) for k, v in DEFAULT_LIMITS.items()}
    for key, val in (limits or {}).items():
        if key == "owm_val":
            raise HubDataError("limits['owm_val'] is not allowed: size the held-out set with val_docs")
        if key not in LIMIT_KEYS:
            raise HubDataError(f"unknown corpus {key!r} in limits; limits apply to {list(LIMIT_KEYS)}")
        if val is None:
            out.pop(key, None)
            continue
        lim = {"docs": val} if isinstance(val, int | float) and not isinstance(val, bool) else val
        if not isinstance(lim, Mapping) or not lim or set(lim) - {"docs", "tokens"}:
            raise HubDataError(
                f"limits[{key!r}] = {val!r}: give a number of documents or {{'docs': N, 'tokens': M}}"
            )
        parsed = {}
        for k, v in lim.items():
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 1 or v != int(v):
                raise HubDataError(f"limits[{key!r}][{k!r}] must be a whole number >= 1, got {v!r}")
            parsed[k] = int(v)
        if key == "general" and "tokens" not in parsed:
            parsed["tokens"] = DEFAULT_LIMITS["general"]["tokens"]
        out[key] = parsed
    return out


def _cap(docs: Iterable[dict], limit: dict[str, int], count: Callable[[str], int]) -> Iterator[dict]:
    """Documents up to ``limit['docs']`` and until ``limit['tokens']`` content tokens are reached."""
    it: Iterable[dict] = docs
    if "docs" in limit:
        it = itertools.islice(it, limit["docs"])
    if "tokens" not in limit:
        yield from it
        return
    done = 0
    for d in it:
        if done >= limit["tokens"]:
            return
        done += count(d["text"])
        yield d


def _check_existing(out: Path, fingerprint: str) -> None:
    """Refuse an ``out`` whose tokenizer or shards were made with another tokenizer."""
    tok_dir = out / "tokenizer"
    if tok_dir.is_dir() and any(tok_dir.iterdir()):
        try:
            existing = tokenizer_fingerprint(load_tokenizer(tok_dir))
        except ValueError:
            existing = "unreadable"
        if existing != fingerprint:
            raise TokenizerMismatchError(
                f"{tok_dir} holds another tokenizer ({existing[:12]}) than the one given "
                f"({fingerprint[:12]}); pass overwrite=True (CLI: --overwrite) or choose another out_dir"
            )
    shards = out / "shards"
    for d in sorted(shards.iterdir()) if shards.is_dir() else []:
        if (d / "meta.json").is_file():
            got = TokenShard.open(d).tokenizer_hash
            if got != fingerprint:
                raise TokenizerMismatchError(
                    f"the shard {d} was made with tokenizer {got[:12]}, not the given one "
                    f"({fingerprint[:12]}); pass overwrite=True (CLI: --overwrite) or choose another out_dir"
                )


def _describe(spec: SourceSpec) -> dict[str, Any]:
    return {k: v for k, v in asdict(spec).items() if k != "limit"}


def hub_layout(world: str | WorldSpec = "paper") -> tuple[str, ...]:
    """The paths, relative to its ``out_dir``, that :func:`build_hub_data` writes for ``world``
    (what the study's stages may depend on under ``data/<profile>/``)."""
    prof = get_world(world)
    shards = tuple(f"shards/{c}" for c in CORPORA if c in set(prof.hub_shards or CORPORA))
    return ("tokenizer", *shards, "shards/base", EVAL_DIR, "world.json")


def build_hub_data(
    out_dir: str | os.PathLike,
    world: str | WorldSpec = "paper",
    seed: int = 0,
    *,
    profile: str | WorldSpec | None = None,
    sources: Mapping[str, str | os.PathLike | dict | SourceSpec] | None = None,
    limits: Mapping[str, int | Mapping[str, int] | None] | None = None,
    val_docs: int = DEFAULT_VAL_DOCS,
    tokenizer: str | os.PathLike | None = None,
    num_proc: int | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
    eval_tasks: Sequence[str] | None = None,
    eval_files: Mapping[str, str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Tokenize the paper's corpora into ``out_dir`` and write its ``world.json``; return the manifest.

    ``world`` must be a hub world (``paper``, ``paper_7b``; ``profile=`` is its deprecated name); its ``tokenizer`` (overridden by
    ``tokenizer``: hub name or local folder), ``general_mix`` and ``num_proc`` (at most the CPU
    count; overridden by ``num_proc``) are used.  ``sources`` and ``limits`` are described in the module docstring;
    ``limits`` entries replace :data:`DEFAULT_LIMITS` per corpus (``None`` removes a cap).
    ``val_docs`` documents of OpenWebMath are held out as ``owm_val``; ``owm`` starts after them.
    ``seed`` is recorded (corpora are read in their stored order, so the build is deterministic
    given its sources).  ``progress`` shows the mix bar; the tokenizer's bars show on a terminal.
    ``eval_tasks`` are the benchmarks written to ``eval/`` (default: the paper's nine, every
    built-in task); ``eval_files`` maps one to local files in its release format, read instead of
    its source (TabMWP's ``problems_test1k.json``; the other eight ship with rho).

    Raises, before anything is written: :class:`HubDataError` (bad world, corpus name, limit,
    ``val_docs``), :class:`~rho.data.sources.SourceError` and subclasses (unknown or empty source,
    missing text column, an OpenWebMath source with no more than ``val_docs`` documents),
    :class:`~rho.data.tokenizer.TokenizerError` (tokenizer does not load) and
    :class:`~rho.data.tokenize.TokenizerMismatchError` (``out_dir`` holds data made with another
    tokenizer and not ``overwrite``), :class:`~rho.evaluate.tasks.TaskError` (a benchmark cannot
    be read: pass ``eval_files``).
    """
    t0 = time.time()
    if profile is not None:
        import warnings

        warnings.warn("build_hub_data(profile=...) is now world=...", DeprecationWarning, stacklevel=2)
        world = profile
    try:
        prof = get_world(world)
    except WorldError as e:
        raise HubDataError(str(e)) from e
    if prof.is_miniature:
        raise HubDataError(
            f"world {prof.name!r} is a miniature world; build it with rho.data.miniature.world.build_world "
            "(`python -m rho.data build`), not build_hub_data"
        )
    if isinstance(val_docs, bool) or not isinstance(val_docs, int) or val_docs < 1:
        raise HubDataError(f"val_docs must be an int >= 1, got {val_docs!r}")
    if set(prof.general_mix) != {"slimpajama", "starcoderdata", "owm"}:
        raise HubDataError(
            f"world {prof.name!r} general_mix {prof.general_mix} must weigh slimpajama, starcoderdata, owm"
        )
    unknown = sorted(set(sources or {}) - set(SOURCE_KEYS))
    if unknown:
        raise HubDataError(
            f"unknown corpus {unknown} in sources; sources may override {list(SOURCE_KEYS)} "
            "(owm_val comes from owm, general from slimpajama/starcoderdata/owm)"
        )
    chosen = set(prof.hub_shards or CORPORA)
    if chosen - set(CORPORA) or not {"owm_val", "owm"} <= chosen:
        raise HubDataError(
            f"world {prof.name!r} hub_shards {prof.hub_shards} must be among {CORPORA} and include owm_val and owm"
        )
    wanted = tuple(c for c in CORPORA if c in chosen)
    needs = {"ppile": "ppile" in wanted, "ref": "ref" in wanted}
    needs["slimpajama"] = needs["starcoderdata"] = "general" in wanted
    caps = _parse_limits(limits)
    tok_name = str(tokenizer) if tokenizer is not None else prof.tokenizer
    if not tok_name:
        raise HubDataError(f"world {prof.name!r} names no tokenizer; pass tokenizer=")
    if num_proc is not None and (isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1):
        raise HubDataError(f"num_proc must be an int >= 1, got {num_proc!r}")
    nproc = num_proc if num_proc is not None else max(1, min(prof.num_proc, os.cpu_count() or 1))

    defaults = _default_specs(prof)
    specs = {
        k: _resolve(k, (sources or {})[k], defaults[k]) if k in (sources or {}) else defaults[k]
        for k in SOURCE_KEYS
    }
    specs = {k: replace(s, limit=None) for k, s in specs.items()}
    tok = load_tokenizer(tok_name)
    fingerprint = tokenizer_fingerprint(tok)
    out = Path(out_dir)
    if not overwrite:
        _check_existing(out, fingerprint)

    backend = tok.backend_tokenizer

    def count(text: str) -> int:
        return len(backend.encode(text, add_special_tokens=False).ids)

    # probe every source (raises SourceError / EmptySourceError before anything is written)
    owm_head = list(itertools.islice(iter_documents(specs["owm"]), val_docs + 1))
    if len(owm_head) <= val_docs:
        raise SourceError(
            f"the owm source {specs['owm'].name!r} has only {len(owm_head)} documents; val_docs={val_docs} "
            "would leave none for owm: lower val_docs or use a larger source"
        )
    for key in (k for k in ("ppile", "ref", "slimpajama", "starcoderdata") if needs[k]):
        probe = iter_documents(specs[key], count)
        if hasattr(probe, "close"):
            probe.close()

    from rho.evaluate.builtin_suite import load_builtin_suite, write_builtin_suite

    benchmarks = load_builtin_suite(eval_tasks, eval_files)  # before anything is written

    def owm_train() -> Iterator[dict]:
        return itertools.islice(iter_documents(specs["owm"]), val_docs, None)

    mix_tokens = dict.fromkeys(prof.general_mix, 0)
    gen_limit = caps["general"]
    bar = tqdm(total=gen_limit["tokens"], desc="mix general", unit="tok", disable=not progress or None)

    def general() -> Iterator[dict]:
        src = {
            "slimpajama": iter_documents(specs["slimpajama"], count),
            "starcoderdata": iter_documents(specs["starcoderdata"], count),
            "owm": owm_train(),
        }
        mixed: Iterable[dict] = mix_by_tokens(src, prof.general_mix, count, gen_limit["tokens"])
        if "docs" in gen_limit:
            mixed = itertools.islice(mixed, gen_limit["docs"])
        for doc in mixed:
            mix_tokens[doc["mix"]] += doc["n_tokens"]
            bar.update(doc["n_tokens"])
            yield doc

    streams: dict[str, Callable[[], Iterable[dict]]] = {
        "owm_val": lambda: iter(owm_head[:val_docs]),
        "owm": lambda: _cap(owm_train(), caps.get("owm", {}), count),
        "ppile": lambda: _cap(iter_documents(specs["ppile"], count), caps.get("ppile", {}), count),
        "general": general,
        "ref": lambda: _cap(iter_documents(specs["ref"]), caps.get("ref", {}), count),
    }
    described = {
        "owm_val": {"source": _describe(specs["owm"]), "first_docs": val_docs},
        "owm": {"source": _describe(specs["owm"]), "skip_docs": val_docs, "limit": caps.get("owm")},
        "ppile": {"source": _describe(specs["ppile"]), "limit": caps.get("ppile")},
        "general": {
            "mix": dict(prof.general_mix),
            "sources": {k: _describe(specs[k]) for k in ("slimpajama", "starcoderdata")}
            | {"owm": {**_describe(specs["owm"]), "skip_docs": val_docs}},
            "limit": gen_limit,
        },
        "ref": {
            "source": _describe(specs["ref"]),
            "limit": caps.get("ref"),
            "substitute": "ref" not in (sources or {}) or specs["ref"] == DEFAULT_REF_SOURCE,
        },
    }

    timings: dict[str, float] = {}
    corpora: dict[str, Any] = {}
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".build-hub-", dir=out))
    try:
        tok.save_pretrained(stage / "tokenizer")
        for name in wanted:
            shard = tokenize_documents(
                streams[name](),
                tok,
                stage / "shards" / name,
                num_proc=nproc,
                batch_size=batch_size,
                overwrite=True,
                source={"corpus": name, "profile": prof.name, "seed": seed, **described[name]},
                total=val_docs if name == "owm_val" else None,
                desc=f"tokenize {name}",
            )
            if shard.meta["n_docs"] == 0:
                raise SourceError(f"corpus {name} came out empty; check its source and limits")
            corpora[name] = {
                "shard": f"shards/{name}",
                "n_docs": int(shard.meta["n_docs"]),
                "n_tokens": int(shard.n_tokens),
                "tokens_sha256": shard.shard_hash,
                **described[name],
            }
            timings[name] = round(time.time() - t0, 2)
        bar.close()
        if "general" in corpora:
            corpora["general"]["mix_tokens"] = dict(mix_tokens)
        # every shard is complete: move them (and the tokenizer) into place
        for name in wanted:
            with atomic_dir(out / "shards" / name) as tmp:
                tmp.rmdir()
                os.replace(stage / "shards" / name, tmp)
        with atomic_dir(out / "tokenizer") as tmp:
            tmp.rmdir()
            os.replace(stage / "tokenizer", tmp)
        with atomic_dir(out / "shards" / "base") as tmp:
            write_json_atomic(tmp / RELEASED_BASE, {"corpus": "base", "note": _RELEASED_NOTE})
        eval_manifest = write_builtin_suite(out / EVAL_DIR, benchmarks)
    finally:
        bar.close()
        shutil.rmtree(stage, ignore_errors=True)

    from rho.data.miniature.world import _versions

    manifest = {
        "format": "rho-hub-world-v1",
        "profile": prof.to_dict(),
        "seed": seed,
        "versions": _versions(),
        "val_docs": val_docs,
        "corpora": corpora,
        "tokenizer": {"path": "tokenizer", "name": tok_name, "vocab_size": len(tok), "hash": fingerprint},
        "eval": {"path": EVAL_DIR, **eval_manifest},
        "reference_note": (
            "the paper's curated 0.5B-token reference set is not public; ref is built from "
            f"{specs['ref'].name!r} (config {specs['ref'].config!r}) instead"
        ),
        "label_names": [],
    }
    write_json_atomic(out / "world.json", manifest)  # timings are returned, not stored
    return {**manifest, "build_seconds": timings}
