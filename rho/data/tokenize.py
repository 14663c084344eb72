"""Tokenize documents into a token shard, with per-token provenance labels.

Documents are ``{"text": str, "spans": [[start, end, label_name], ...] | None}``; each is
encoded without special tokens, joined with EOS (packing happens at read time: blocks of the
stream, see :mod:`rho.data.shards`), and written with :func:`rho.data.shards.write_shard`.
Labels come from the character spans through the tokenizer's offsets
(:func:`rho.data.provenance.token_labels`).  Big corpora are encoded by a pool of processes
with a progress bar.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rho.data.provenance import char_labels, check_spans, token_labels
from rho.data.shards import ShardError, TokenShard, tokenizer_fingerprint, write_shard


class TokenizerMismatchError(ShardError):
    """An existing shard was made with another tokenizer than the one given."""


_WORKER: dict[str, Any] = {}


def _init_worker(tokenizer_json: str, label_names: list[str] | None) -> None:
    from tokenizers import Tokenizer

    _WORKER["tok"] = Tokenizer.from_str(tokenizer_json)
    _WORKER["labels"] = label_names


def _encode_batch(batch: list[dict]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    tok, names = _WORKER["tok"], _WORKER["labels"]
    encs = tok.encode_batch([d["text"] for d in batch], add_special_tokens=False)
    out = []
    for d, enc in zip(batch, encs):
        ids = np.asarray(enc.ids, dtype=np.int64)
        lab = None
        if names is not None:
            spans = d.get("spans") or []
            check_spans(d["text"], spans, names)
            lab = token_labels(
                d["text"], np.asarray(enc.offsets, dtype=np.int64), char_labels(d["text"], spans, names)
            )
        out.append((ids, lab))
    return out


def check_tokenizer_matches(path: str | os.PathLike, tokenizer_hash: str) -> None:
    """Raise :class:`TokenizerMismatchError` if a shard at ``path`` was made with another tokenizer."""
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        return
    existing = TokenShard.open(path).tokenizer_hash
    if existing != tokenizer_hash:
        raise TokenizerMismatchError(
            f"the shard at {path} was made with tokenizer {existing[:12]}, not the given one "
            f"({tokenizer_hash[:12]}); pass overwrite=True to replace it, or write to another directory"
        )


def _batches(docs: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(docs)
    while batch := list(itertools.islice(it, size)):
        yield batch


def tokenize_documents(
    docs: Iterable[dict],
    tokenizer: Any,
    out_path: str | os.PathLike,
    *,
    label_names: list[str] | None = None,
    num_proc: int = 1,
    batch_size: int = 256,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
    total: int | None = None,
    desc: str = "tokenize",
) -> TokenShard:
    """Encode ``docs`` with a fast Hugging Face ``tokenizer`` and write a shard at ``out_path``.

    ``label_names`` turns on provenance labels (from each document's ``spans``).  An existing
    shard made with another tokenizer is refused (:class:`TokenizerMismatchError`) unless
    ``overwrite``; on any error the existing shard is left untouched.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ShardError(
            "tokenize_documents needs a fast Hugging Face tokenizer (with offsets); got a slow one"
        )
    if tokenizer.eos_token_id is None:
        raise ShardError("the tokenizer has no EOS token to join documents with; set eos_token")
    if num_proc < 1 or batch_size < 1:
        raise ShardError(f"num_proc and batch_size must be >= 1, got {num_proc} and {batch_size}")
    fingerprint = tokenizer_fingerprint(tokenizer)
    if not overwrite:
        check_tokenizer_matches(out_path, fingerprint)
    args = (backend.to_str(), list(label_names) if label_names is not None else None)
    bar = tqdm(total=total, desc=desc, unit="doc", disable=None)

    def encoded() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        if num_proc == 1:
            _init_worker(*args)
            results = map(_encode_batch, _batches(docs, batch_size))
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(num_proc, initializer=_init_worker, initargs=args)
            results = pool.imap(_encode_batch, _batches(docs, batch_size))
        try:
            for res in results:
                bar.update(len(res))
                yield from res
        finally:
            if pool is not None:
                pool.terminate()
            bar.close()

    stream = encoded()
    a, b = itertools.tee(stream)
    try:
        return write_shard(
            out_path,
            (ids for ids, _ in a),
            labels=(lab for _, lab in b) if label_names is not None else None,
            label_names=label_names,
            vocab_size=len(tokenizer),
            eos_id=tokenizer.eos_token_id,
            tokenizer_hash=fingerprint,
            source=source,
        )
    finally:
        stream.close()  # stops the worker pool and the progress bar even when writing failed
