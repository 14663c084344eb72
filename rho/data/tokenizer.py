"""Tokenizers: train a byte-level BPE on the miniature corpora, or load any Hugging Face one.

The trained tokenizer splits digits one by one (as Llama does), so arithmetic is learnable
by small models, and is saved as a standard Hugging Face folder that
``transformers.AutoTokenizer.from_pretrained(folder)`` loads with eos/bos/pad tokens set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rho.io import atomic_dir

EOS, BOS, PAD = "<|endoftext|>", "<s>", "<pad>"


class TokenizerError(ValueError):
    """A tokenizer cannot be trained or loaded as asked."""


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike, *, min_frequency: int = 2
) -> Any:
    """Train a byte-level BPE on ``texts`` and save it as a Hugging Face tokenizer folder.

    Returns the loaded ``PreTrainedTokenizerFast``.  The folder is written atomically.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise TokenizerError(
            f"vocab_size={vocab_size} is too small for a byte-level BPE (256 bytes + 3 specials); use >= 300"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS, BOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        bos_token=BOS,
        pad_token=PAD,
        unk_token=None,
        model_max_length=1_000_000,
    )
    with atomic_dir(out_dir) as tmp:
        fast.save_pretrained(tmp)
    return load_tokenizer(out_dir)


def load_tokenizer(name_or_path: str | os.PathLike) -> Any:
    """Load a fast Hugging Face tokenizer from a local folder or a hub name.

    Raises :class:`TokenizerError` if it cannot be loaded, is not a fast tokenizer (offsets
    are needed for provenance labels) or has no EOS token (needed to join documents).
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path))
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        where = "local folder" if Path(str(name_or_path)).exists() else "hub name (is the hub reachable?)"
        raise TokenizerError(f"cannot load tokenizer {str(name_or_path)!r} as a {where}: {e}") from e
    if not getattr(tok, "is_fast", False):
        raise TokenizerError(
            f"tokenizer {name_or_path!r} is not a fast tokenizer; rho needs offsets (use_fast=True)"
        )
    if tok.eos_token_id is None:
        raise TokenizerError(f"tokenizer {name_or_path!r} has no EOS token; set eos_token when saving it")
    return tok
