"""Build the whole miniature world: corpora, tokenizer, shards, evaluation suites, manifest.

Layout of ``out_dir``::

    raw/<corpus>.jsonl        {"id", "text", "spans": [[start, end, label]], "source", "meta"}
    tokenizer/                Hugging Face tokenizer folder (byte-level BPE, digits split)
    shards/<corpus>/          token shards (rho.data.shards) with per-token provenance labels
    eval/<task>/{fewshot,test}.jsonl, eval/tasks.json      the nine math tasks (+ gsm_unseen)
    eval/lm_eval/             lm-evaluation-harness YAMLs + jsonl (general tasks)
    world.json                manifest: profile, seed, versions, counts, hashes, paths, fingerprint

Corpora: ``owm`` (noisy target corpus), ``owm_val`` (held-out owm pages), ``ref`` (clean
solutions, separate seeds), ``ppile`` (owm plus as many other math docs: Proof-Pile-2 analog),
``general`` (prose:code:owm = 6:3:1 by tokens), ``base`` (prose:code:math = 6:3:1, math not from
owm: the base model's pretraining data), ``val_math`` (held-out problems with reference
solutions, question labelled ``prompt``, for downstream loss).  Everything is a deterministic
function of (profile, seed, the locked package versions and the repository's frozen general-text
pool, :mod:`rho.data.miniature.general`); ``world.json``'s ``fingerprint`` hashes all of it
(:func:`world_fingerprint`), and the build's timings are returned, not stored, so rebuilding the
same world rewrites the same bytes.  Training problems that collide with an
evaluation problem (same family/template/numbers, or a 13-gram carrying its numbers) are redrawn.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
import random
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import rho
from rho.data.contamination import NgramIndex, build_index
from rho.data.miniature import math_docs
from rho.data.miniature.general import GENERAL_SOURCE, check_general_source, code_documents, prose_documents
from rho.data.miniature.lm_eval_suite import write_lm_eval_suite
from rho.data.miniature.problems import HELDOUT_TEMPLATES, Problem, problem_key
from rho.data.miniature.suites import write_suites
from rho.data.provenance import LABEL_NAMES, VAL_LABEL_NAMES
from rho.data.sources import mix_by_tokens
from rho.data.tokenize import tokenize_documents
from rho.data.tokenizer import train_bpe_tokenizer
from rho.data.worlds import WorldError, WorldSpec, get_world
from rho.io import atomic_path, read_json, sha256_file, write_json_atomic

CORPORA = ("owm", "owm_val", "ref", "ppile", "general", "base", "val_math")


class WorldExistsError(ValueError):
    """``out_dir`` already holds a world built with other settings."""


def _versions() -> dict[str, str]:
    out = {"rho": rho.__version__, "python": platform.python_version()}
    for pkg in ("tokenizers", "transformers", "numpy", "torch", "pandas", "datasets"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


class _Guard:
    """Rejects training problems/documents that would leak an evaluation problem."""

    def __init__(self, records: list[dict]):
        self.keys = {problem_key(*r["template"].split("/", 1), r["question"]) for r in records}
        self.questions = {r["question"] for r in records}
        self.index: NgramIndex = build_index((r["id"], r["question"]) for r in records)
        self.rejected = 0

    def problem(self, p: Problem) -> bool:
        bad = p.key in self.keys or p.question in self.questions or bool(self.index.find(p.question))
        self.rejected += bad
        return bad

    def make(self, stream: str, seed: int, i: int, fn: Callable) -> tuple[str, list, dict]:
        for attempt in range(50):
            rng = random.Random(f"rho:{seed}:{stream}:{i}:{attempt}")
            text, spans, meta = fn(rng)
            if not self.index.find(text):
                return text, spans, meta
            self.rejected += 1
        raise RuntimeError(f"{stream} doc {i}: 50 drafts all overlapped the evaluation set")


def _docs(stream: str, n: int, seed: int, guard: _Guard, fn: Callable, progress: bool) -> list[dict]:
    out = []
    for i in tqdm(range(n), desc=f"generate {stream}", unit="doc", disable=not progress or None, leave=False):
        text, spans, meta = guard.make(stream, seed, i, fn)
        out.append(
            {
                "id": f"{stream}-{i:07d}",
                "text": text,
                "spans": spans,
                "source": f"miniature:{stream}",
                "meta": meta,
            }
        )
    return out


def _cycled(make: Callable[[int], Iterator[tuple[str, str]]], label: str) -> Iterator[dict]:
    """Documents of a finite offline source, re-shuffled and repeated (epoch in the id) if it runs out."""
    for epoch in itertools.count():
        n = 0
        for text, source in make(epoch):
            n += 1
            yield {
                "text": text,
                "spans": [[0, len(text), "content"]],
                "source": source,
                "meta": {"epoch": epoch, "kind": label},
            }
        if n == 0:
            raise RuntimeError(f"no offline {label} text found in this Python installation")


def _write_jsonl(path: Path, docs: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n")


def _tokenizer_texts(corpora: dict[str, list[dict]], seed: int, budget: int) -> Iterator[str]:
    """A char-budgeted sample for BPE training: 40% math pages, 35% prose, 25% code."""
    math_pool = corpora["owm"] + corpora["ref"]
    shares = {"math": 0.4, "prose": 0.35, "code": 0.25}
    streams = {
        "math": (d["text"] for d in math_pool),
        "prose": (t for t, _ in prose_documents(seed)),
        "code": (t for t, _ in code_documents(seed)),
    }
    for name, it in streams.items():
        left = int(budget * shares[name])
        for text in it:
            if left <= 0:
                break
            yield text[:left]
            left -= len(text)


def _check_out_dir(out: Path, prof: WorldSpec, seed: int, overwrite: bool) -> None:
    manifest = out / "world.json"
    if not manifest.is_file() or overwrite:
        return
    old = read_json(manifest)
    if old.get("seed") != seed or old.get("profile") != json.loads(json.dumps(prof.to_dict())):
        raise WorldExistsError(
            f"{out} already holds the world {old.get('profile', {}).get('name')!r} built with seed "
            f"{old.get('seed')}; its shards use another tokenizer. Pass overwrite=True (CLI: --overwrite) "
            "to replace it, or choose another out_dir"
        )


def build_world(
    out_dir: str | Path,
    world: str | WorldSpec = "mini",
    seed: int = 0,
    *,
    overwrite: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Write the whole miniature world ``world`` (a :class:`WorldSpec` or its name in
    :data:`rho.data.worlds.WORLDS`, with field ``overrides``) for ``seed``.

    Returns the manifest (also written to ``<out_dir>/world.json``; its ``profile`` key holds the
    world spec, a name kept for the file format).  Bad input (unknown world or field, a hub world,
    an ``out_dir`` holding a world with other settings unless ``overwrite``) raises a
    ``ValueError`` subclass before anything is written.  ``profile=`` is a deprecated name of
    ``world``.
    """
    if "profile" in overrides:
        import warnings

        warnings.warn("build_world(profile=...) is now world=...", DeprecationWarning, stacklevel=2)
        world = overrides.pop("profile")
    prof = get_world(world, **overrides)
    if not prof.is_miniature:
        raise WorldError(
            f"world {prof.name!r} reads hub corpora; tokenize them with "
            "`python -m rho.data tokenize` instead of building a miniature world"
        )
    if prof.owm_docs < 1 or prof.ref_docs < 1 or prof.n_test < 1:
        raise WorldError("owm_docs, ref_docs and n_test must be >= 1 to build a world")
    out = Path(out_dir)
    _check_out_dir(out, prof, seed, overwrite)
    general_sha256 = check_general_source()
    t0 = time.time()
    timings: dict[str, float] = {}

    records = write_suites(out / "eval", seed, prof.n_shots, prof.n_test)
    guard = _Guard(records)
    timings["eval"] = time.time() - t0

    owm_fn = lambda rng: math_docs.noisy_page(rng, prof.noise, guard.problem)  # noqa: E731
    corpora: dict[str, list[dict]] = {
        "owm": _docs("owm", prof.owm_docs, seed, guard, owm_fn, progress),
        "owm_val": _docs("owm_val", prof.owm_val_docs, seed, guard, owm_fn, progress),
        "ref": _docs(
            "ref", prof.ref_docs, seed, guard, lambda r: math_docs.clean_page(r, guard.problem), progress
        ),
        "val_math": _docs(
            "val_math",
            prof.val_math_docs,
            seed,
            guard,
            lambda r: math_docs.validation_item(r, guard.problem),
            progress,
        ),
    }

    def extra_math(rng: random.Random) -> tuple[str, list, dict]:
        if rng.random() < 0.5:
            return math_docs.lesson_page(rng, guard.problem)
        return math_docs.noisy_page(rng, 0.5 * prof.noise, guard.problem)

    extra = _docs("ppile_extra", prof.ppile_extra_docs, seed, guard, extra_math, progress)
    ppile = corpora["owm"] + extra
    random.Random(f"rho:{seed}:ppile-order").shuffle(ppile)
    corpora["ppile"] = ppile
    timings["generate_math"] = time.time() - t0

    tokenizer = train_bpe_tokenizer(
        _tokenizer_texts(corpora, seed, prof.tokenizer_train_chars), prof.vocab_size, out / "tokenizer"
    )
    timings["tokenizer"] = time.time() - t0
    backend = tokenizer.backend_tokenizer

    def count(text: str) -> int:
        return len(backend.encode(text, add_special_tokens=False).ids)

    def prose(tag: str) -> Iterator[dict]:
        return _cycled(lambda e: prose_documents(hash_seed(seed, tag, e)), "prose")

    def code(tag: str) -> Iterator[dict]:
        return _cycled(lambda e: code_documents(hash_seed(seed, tag, e)), "code")

    general_src = {"prose": prose("general"), "code": code("general"), "owm": iter(corpora["owm"])}
    corpora["general"] = _mixed(
        general_src, prof.general_mix, count, prof.general_tokens, "general", progress
    )
    base_math = _docs(
        "base_math",
        max(1, prof.base_tokens // 1500),
        seed,
        guard,
        lambda r: (
            math_docs.clean_page(r, guard.problem)
            if r.random() < 0.5
            else math_docs.lesson_page(r, guard.problem)
        ),
        progress,
    )
    base_src = {"prose": prose("base"), "code": code("base"), "math": iter(base_math)}
    corpora["base"] = _mixed(base_src, prof.base_mix, count, prof.base_tokens, "base", progress)
    timings["general"] = time.time() - t0

    manifest_corpora: dict[str, Any] = {}
    for name in CORPORA:
        docs = corpora[name]
        raw = out / "raw" / f"{name}.jsonl"
        _write_jsonl(raw, docs)
        names = VAL_LABEL_NAMES if name == "val_math" else LABEL_NAMES
        big = len(docs) > 4000 and prof.num_proc > 1
        shard = tokenize_documents(
            docs,
            tokenizer,
            out / "shards" / name,
            label_names=names,
            num_proc=prof.num_proc if big else 1,
            overwrite=True,
            source={"corpus": name, "raw": f"raw/{name}.jsonl", "profile": prof.name, "seed": seed},
            total=len(docs),
            desc=f"tokenize {name}",
        )
        manifest_corpora[name] = {
            "raw": f"raw/{name}.jsonl",
            "shard": f"shards/{name}",
            "n_docs": len(docs),
            "n_tokens": shard.n_tokens,
            "raw_sha256": sha256_file(raw),
            "tokens_sha256": shard.shard_hash,
            "label_names": names,
        }
    timings["tokenize"] = time.time() - t0

    write_lm_eval_suite(out / "eval" / "lm_eval", seed, prof.lm_eval_items)
    timings["lm_eval"] = time.time() - t0
    tasks = read_json(out / "eval" / "tasks.json")
    manifest = {
        "format": "rho-world-v1",
        "profile": prof.to_dict(),
        "seed": seed,
        "versions": _versions(),
        "corpora": manifest_corpora,
        "tokenizer": {
            "path": "tokenizer",
            "vocab_size": len(tokenizer),
            "hash": tokenizer_hash_of(tokenizer),
        },
        "eval": {
            "path": "eval",
            "tasks": [t["name"] for t in tasks],
            "lm_eval": "eval/lm_eval",
            "n_records": len(records),
        },
        "heldout_templates": sorted(HELDOUT_TEMPLATES),
        "label_names": LABEL_NAMES,
        "rejected_for_contamination": guard.rejected,
        "general_source": {"file": GENERAL_SOURCE.name, "sha256": general_sha256},
        "eval_sha256": _tree_hashes(out / "eval"),
    }
    manifest["fingerprint"] = world_fingerprint(manifest)
    write_json_atomic(out / "world.json", manifest)
    return {**manifest, "build_seconds": {k: round(v, 2) for k, v in timings.items()}}


def _tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by path relative to it (sorted)."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def world_fingerprint(manifest: dict[str, Any]) -> str:
    """SHA-256 of what makes a world: its settings and the hashes of every file it wrote.

    Package versions (recorded in ``versions`` for the reader) and the fingerprint itself are left
    out: two builds whose files are byte-identical have the same fingerprint.
    """
    body = {k: v for k, v in manifest.items() if k not in ("versions", "fingerprint", "build_seconds")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def hash_seed(seed: int, tag: str, epoch: int) -> int:
    """A derived integer seed for one offline-text stream and epoch."""
    return int.from_bytes(random.Random(f"rho:{seed}:{tag}:{epoch}").randbytes(4), "little")


def tokenizer_hash_of(tokenizer: Any) -> str:
    """Fingerprint of the world's tokenizer (as stored in every shard's meta)."""
    from rho.data.shards import tokenizer_fingerprint

    return tokenizer_fingerprint(tokenizer)


def _mixed(
    src: dict, weights: dict[str, float], count: Callable[[str], int], total: int, name: str, progress: bool
) -> list[dict]:
    out = []
    bar = tqdm(total=total, desc=f"mix {name}", unit="tok", disable=not progress or None, leave=False)
    for i, doc in enumerate(mix_by_tokens(src, weights, count, total)):
        n = doc["n_tokens"]
        bar.update(n)
        meta = {**doc.get("meta", {}), "mix": doc["mix"], "n_tokens": n}
        out.append(
            {
                "id": f"{name}-{i:07d}",
                "text": doc["text"],
                "spans": doc["spans"],
                "source": doc["source"],
                "meta": meta,
            }
        )
    bar.close()
    return out
