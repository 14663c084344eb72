"""Generation backends with one interface: ``generate(prompts, max_new_tokens, stop)``.

* :class:`HFGenerator` - greedy, batched with left padding, KV cache, prompts sorted by length so
  a batch wastes little padding, and a per-sequence stopping criterion on stop strings. Llama
  models decode with :class:`rho.evaluate.greedy.LlamaGreedy` (a preallocated cache, finished rows
  leave the batch); other models, or ``lean=False``, with transformers ``generate``.
* :class:`VLLMGenerator` - vLLM ``LLM.generate`` with ``SamplingParams(temperature=0,
  max_tokens, stop)``; used only when vLLM is installed and asked for.

Both return the completion text cut at the first stop sequence, so the same answer extraction
applies to either.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from rho.evaluate.answer import cut_at_stop

__all__ = ["BackendError", "Generation", "HFGenerator", "VLLMGenerator", "load_hf", "make_generator"]


class BackendError(ValueError):
    """A generation backend cannot be used as asked."""


@dataclass(frozen=True)
class Generation:
    """One completion (cut at the first stop sequence) and the number of tokens generated."""

    text: str
    n_tokens: int


def load_hf(
    model_or_path: Any, tokenizer: Any | None = None, device: str = "cpu", dtype: torch.dtype | None = None
):
    """Return ``(model, tokenizer)`` ready for evaluation (eval mode, on ``device``).

    ``model_or_path`` is a local Hugging Face folder, a hub name, or a loaded model (then
    ``tokenizer`` is required, or it is loaded from ``model.name_or_path``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(model_or_path, str | os.PathLike):
        path = str(model_or_path)
        if os.path.sep in path and not Path(path).exists():
            raise BackendError(f"model folder {path} does not exist; pass a saved model folder or a hub name")
        kwargs = {"dtype": dtype} if dtype is not None else {}
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
    else:
        model = model_or_path
        if tokenizer is None:
            name = getattr(model, "name_or_path", "")
            if not name:
                raise BackendError("a model object needs its tokenizer: pass tokenizer=...")
            tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise BackendError("the tokenizer has neither a pad nor an eos token; set one before evaluating")
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return model, tokenizer


class _StopOnStrings:
    """Per-row stopping criterion: a row is done once its new text contains a stop string."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_len = prompt_len
        self.lookback = max((len(s) for s in self.stops), default=0) + 2

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if not self.stops:
            return done
        tails = input_ids[:, self.prompt_len :][:, -self.lookback :].tolist()
        for i, text in enumerate(self.tokenizer.batch_decode(tails, skip_special_tokens=True)):
            done[i] = any(s in text for s in self.stops)
        return done

    def row_done(self, new_tokens: list[int]) -> bool:
        """The same test for one row, given its generated tokens so far."""
        if not self.stops:
            return False
        text = self.tokenizer.decode(new_tokens[-self.lookback :], skip_special_tokens=True)
        return any(s in text for s in self.stops)


class HFGenerator:
    """Greedy batched generation with a transformers causal LM (left padding, KV cache)."""

    name = "hf"

    def __init__(
        self, model: Any, tokenizer: Any, batch_size: int = 8, progress: bool = True, lean: bool = True
    ) -> None:
        from rho.evaluate.greedy import LlamaGreedy, supports

        if batch_size < 1:
            raise BackendError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.progress = progress
        self.lean = LlamaGreedy(model) if lean and supports(model) else None

    @property
    def decoder(self) -> str:
        """``"lean"`` (:class:`rho.evaluate.greedy.LlamaGreedy`) or this backend's name (``generate``)."""
        return "lean" if self.lean is not None else self.name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()
    ) -> list[Generation]:
        """Greedy completions of ``prompts`` (in order), each cut at the first stop string."""
        from transformers import StoppingCriteriaList

        tok = self.tokenizer
        tok.padding_side = "left"
        # one batched call; the tokenizer's own special tokens (e.g. BOS), as vLLM and lm-eval encode prompts
        encoded = tok(list(prompts))["input_ids"] if prompts else []
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        out: list[Generation | None] = [None] * len(prompts)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for idx in tqdm(batches, desc="generate", unit="batch", disable=not self.progress, leave=False):
            rows = [encoded[i] for i in idx]
            prompt_len = max(len(r) for r in rows)
            criterion = _StopOnStrings(tok, stop, prompt_len)
            if self.lean is not None:
                new = self.lean.generate(rows, max_new_tokens, tok.eos_token_id, done=criterion.row_done)
            else:
                enc = tok.pad({"input_ids": rows}, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                    stopping_criteria=StoppingCriteriaList([criterion]),
                )
                new = gen[:, prompt_len:].tolist()
            for row, i in enumerate(idx):
                ids = new[row]
                n = len(ids)
                for j, t in enumerate(ids):  # tokens after eos/pad are padding of a finished row
                    if t == tok.pad_token_id or t == tok.eos_token_id:
                        n = j
                        break
                text = tok.decode(ids[:n], skip_special_tokens=True)
                out[i] = Generation(cut_at_stop(text, tuple(stop)), n)
        return [g for g in out if g is not None]


class VLLMGenerator:
    """Greedy generation with vLLM (``LLM(model=path)``, ``SamplingParams(temperature=0, ...)``).

    ``llm`` may be given (an object with vLLM's ``generate(prompts, sampling_params)``); the
    ``vllm`` module is imported either way for ``SamplingParams``.
    """

    name = "vllm"

    def __init__(
        self, model_path: str | os.PathLike | None = None, llm: Any | None = None, **llm_kwargs: Any
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise BackendError(
                "backend 'vllm' needs the vllm package: pip install vllm, or use --backend hf"
            ) from exc
        self._vllm = vllm
        if llm is None:
            if model_path is None:
                raise BackendError("VLLMGenerator needs model_path or llm")
            llm = vllm.LLM(model=str(model_path), **llm_kwargs)
        self.llm = llm

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()
    ) -> list[Generation]:
        """Greedy completions of ``prompts`` (vLLM batches internally), cut at the stop strings."""
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop))
        outs = self.llm.generate(list(prompts), params)
        if len(outs) != len(prompts):
            raise BackendError(f"vLLM returned {len(outs)} outputs for {len(prompts)} prompts")
        return [
            Generation(cut_at_stop(o.outputs[0].text, tuple(stop)), len(o.outputs[0].token_ids)) for o in outs
        ]


def make_generator(
    backend: str,
    model_or_path: Any,
    tokenizer: Any | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    progress: bool = True,
    **kwargs: Any,
):
    """Build the generator for ``backend`` (``"hf"`` or ``"vllm"``)."""
    if backend == "hf":
        model, tokenizer = load_hf(model_or_path, tokenizer, device=device)
        return HFGenerator(model, tokenizer, batch_size=batch_size, progress=progress)
    if backend == "vllm":
        if not isinstance(model_or_path, str | os.PathLike):
            raise BackendError("backend 'vllm' needs a model path or hub name, not a model object")
        return VLLMGenerator(model_or_path, **kwargs)
    raise BackendError(f"unknown backend {backend!r}; use 'hf' or 'vllm'")
