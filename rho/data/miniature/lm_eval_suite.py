"""A general-domain evaluation suite in lm-evaluation-harness format (task YAMLs over local files).

Built from the held-out split of the offline prose and code
(:func:`rho.data.miniature.general.is_heldout`), never trained on:

* ``rho_prose_next``: pick the true continuation of an English passage among 4;
* ``rho_code_next``: pick the true next line of a Python snippet among 4;
* ``rho_prose_ppl``: rolling log-likelihood (word/byte perplexity, bits per byte) of passages.

The YAMLs name their data files by absolute path (lm-eval resolves ``data_files`` against the
working directory), so load them with ``lm_eval.tasks.TaskManager(include_path=<dir>)``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rho.data.miniature.general import code_documents, prose_documents
from rho.io import atomic_path, write_text_atomic

TASK_NAMES = ("rho_prose_next", "rho_code_next", "rho_prose_ppl")


def _paragraphs(seed: int, n: int) -> list[str]:
    out = []
    for text, _ in prose_documents(seed, heldout=True):
        for para in text.split("\n\n"):
            words = " ".join(para.split())
            if len(words.split()) >= 40:
                out.append(words)
    random.Random(f"rho-lmeval-prose:{seed}").shuffle(out)
    return out[:n]


def _code_items(seed: int, n: int, rng: random.Random) -> list[dict]:
    lines_pool, items = [], []
    for code, _ in code_documents(seed, heldout=True):
        lines = [ln for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        lines_pool += lines
        for k in range(8, len(lines) - 1, 12):
            items.append({"context": "\n".join(lines[k - 8 : k]) + "\n", "target": lines[k]})
        if len(items) >= 3 * n:
            break
    rng.shuffle(items)
    out = []
    for it in items[:n]:
        wrong = []
        while len(wrong) < 3:
            cand = rng.choice(lines_pool)
            if cand.strip() != it["target"].strip() and cand not in wrong:
                wrong.append(cand)
        choices = wrong + [it["target"]]
        rng.shuffle(choices)
        out.append({"context": it["context"], "choices": choices, "label": choices.index(it["target"])})
    return out


def _yaml(task: str, data: Path, body: str) -> str:
    # The data file is named relative to the YAML (no absolute path: the world's bytes do not depend
    # on where it is built); rho.evaluate.run_lm_eval resolves it against the YAML's folder.
    return (
        f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data.name}\n"
        f"test_split: test\n{body}"
    )


def write_lm_eval_suite(out_dir: str | Path, seed: int, n_items: int) -> list[str]:
    """Write one YAML + jsonl per task (every ``*.yaml`` in ``out_dir`` is a task); returns the task names."""
    out_dir = Path(out_dir)
    rng = random.Random(f"rho-lmeval:{seed}")
    paras = _paragraphs(seed, 2 * n_items)
    if len(paras) < 8:
        raise RuntimeError("too few held-out prose paragraphs for the lm-eval suite")
    prose_mc = []
    conts = [" ".join(p.split()[30:42]) for p in paras]
    for i, p in enumerate(paras[:n_items]):
        w = p.split()
        target = " " + " ".join(w[30:42])
        wrong = [" " + c for j, c in enumerate(conts) if j != i and c]
        choices = rng.sample(wrong, 3) + [target]
        rng.shuffle(choices)
        prose_mc.append({"context": " ".join(w[:30]), "choices": choices, "label": choices.index(target)})
    data = {
        "rho_prose_next": prose_mc,
        "rho_code_next": _code_items(seed, n_items, rng),
        "rho_prose_ppl": [{"text": p} for p in paras[n_items:]] or [{"text": p} for p in paras[:n_items]],
    }
    mc_body = (
        'output_type: multiple_choice\ndoc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\ntarget_delimiter: ""\nmetric_list:\n  - metric: acc\n'
        "    aggregation: mean\n    higher_is_better: true\n  - metric: acc_norm\n"
        "    aggregation: mean\n    higher_is_better: true\n"
    )
    ppl_body = (
        'output_type: loglikelihood_rolling\ndoc_to_text: ""\ndoc_to_target: "{{text}}"\n'
        "metric_list:\n"
        + "".join(
            f"  - metric: {m}\n    aggregation: {a}\n    higher_is_better: false\n"
            for m, a in (
                ("word_perplexity", "weighted_perplexity"),
                ("byte_perplexity", "weighted_perplexity"),
                ("bits_per_byte", "bits_per_byte"),
            )
        )
    )
    for task, recs in data.items():
        path = out_dir / f"{task}.jsonl"
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))
        write_text_atomic(
            out_dir / f"{task}.yaml", _yaml(task, path, ppl_body if task.endswith("ppl") else mc_body)
        )
    return list(TASK_NAMES)
