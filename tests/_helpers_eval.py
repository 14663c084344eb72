"""Fixtures for the rho.evaluate tests: a tiny random Llama + BPE tokenizer, a miniature suite."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SENTENCES = [
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?",
    "Answer: Tom has 3 + 4 = 7 apples. The answer is 7.",
    "Problem: Find x if 2x = 10. Solution: x = 5, so the answer is $\\boxed{5}$.",
    "The answer is (B). Answer Choices: (A) 12 (B) 1.2 (C) 120 (D) 0.5",
    "A shop sells pens at $3 each; 12 pens cost 36 dollars, 50% of 1,000 is 500.",
]


def make_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer trained on a few sentences, with <pad> and <eos>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def make_model(
    vocab_size: int,
    hidden: int = 32,
    layers: int = 2,
    window: int = 512,
    seed: int = 0,
    heads: int = 2,
    kv_heads: int | None = None,
):
    """A tiny random LlamaForCausalLM (``kv_heads < heads``: grouped-query attention)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=window,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg).eval()


def save_tiny_model(path: Path, window: int = 512) -> Path:
    """Save a tiny model + tokenizer folder (as rho.train writes them) and return its path."""
    tok = make_tokenizer()
    model = make_model(len(tok), window=window)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def rec(i: int, question: str, answer: str, solution: str | None = None, choices=None, label=None) -> dict:
    return {
        "id": f"r{i}",
        "question": question,
        "solution": solution or f"We compute it. The answer is {answer}.",
        "answer": answer,
        "choices": choices,
        "label": label,
        "template": None,
    }


def write_suite(root: Path) -> Path:
    """A miniature suite in the rho.data layout: one generate task, one multiple-choice task."""
    ev = root / "eval"
    arith_shots = [rec(i, f"What is {i} plus {i}?", str(2 * i)) for i in range(1, 4)]
    arith_test = [rec(10 + i, f"What is {i} times 3?", str(3 * i)) for i in range(1, 6)]
    mc_shots = [
        rec(i, f"Which is larger than {i}?", str(i + 5), choices=[str(i - 1), str(i + 5)], label=1)
        for i in range(2)
    ]
    mc_test = [
        rec(20 + i, f"Which number is even, option {i}?", "4", choices=["3", "4", "5"], label=1)
        for i in range(4)
    ]
    for name, shots, test in (("arith", arith_shots, arith_test), ("pick", mc_shots, mc_test)):
        (ev / name).mkdir(parents=True)
        (ev / name / "fewshot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shots))
        (ev / name / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    tasks = [
        {"name": "arith", "kind": "generate", "role": "gsm8k", "n_shots": 2, "description": "toy arithmetic"},
        {
            "name": "pick",
            "kind": "multiple_choice",
            "role": "mmlu_stem",
            "n_shots": 1,
            "description": "toy choice",
        },
    ]
    (ev / "tasks.json").write_text(json.dumps(tasks))
    return root


def memorize(
    model, tok, texts: list[str], steps: int = 600, lr: float = 1e-2, margin: float = 2.0, prompts=None
) -> int:
    """Overfit ``model`` on ``texts`` (each followed by EOS) until greedy decoding reproduces them.

    Trains until, at every position after the text's prompt (``prompts[i]``, a prefix of
    ``texts[i]``; default: the first token), the next token's logit beats every other logit by at
    least ``margin``, so greedy decoding from the prompt is exact however padding or batching moves
    the logits by rounding. Checked every 10 steps; fails the test if ``steps`` are not enough.
    Returns the number of steps taken.
    """
    batch = tok(
        [t + tok.eos_token for t in texts], return_tensors="pt", padding=True, add_special_tokens=False
    )
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    checked = labels.clone()
    for i, prompt in enumerate(prompts or []):
        assert texts[i].startswith(prompt), "each prompt must be a prefix of its text"
        checked[i, : len(tok(prompt, add_special_tokens=False)["input_ids"])] = -100
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(1, steps + 1):
        out = model(**batch, labels=labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if step % 10 == 0 and _min_margin(model, batch, checked) >= margin:
            model.eval()
            return step
    raise AssertionError(f"memorize: greedy margin {margin} not reached in {steps} steps")


@torch.no_grad()
def _min_margin(model, batch, labels) -> float:
    """Smallest (next-token logit - best other logit) over all supervised positions."""
    model.eval()
    logits = model(**batch).logits[:, :-1].float()
    target = labels[:, 1:]
    model.train()
    keep = target != -100
    logits, target = logits[keep], target[keep]
    right = logits.gather(1, target[:, None]).squeeze(1)
    logits.scatter_(1, target[:, None], float("-inf"))
    return float((right - logits.max(1).values).min())
