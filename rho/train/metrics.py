"""Per-step training statistics (summed over micro-batches and ranks) and the JSONL log."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from rho.io import write_text_atomic
from rho.train.distributed import DistContext, all_reduce_sum

_N_LABELS = 256  # provenance labels are uint8
_SCALARS = ("weighted_loss", "weight", "selected_loss", "selected", "unselected_loss", "unselected", "valid")


class StepStats:
    """Accumulates one optimizer step's token statistics on one rank.

    ``add`` takes a micro-batch's detached per-token loss, its token weights and validity mask,
    and (when the shard has them) the provenance label of each predicted token.  A token is
    *selected* when it is valid and its weight is positive.
    """

    def __init__(self, device: torch.device, with_labels: bool) -> None:
        self.with_labels = with_labels
        self.scalars = torch.zeros(len(_SCALARS), dtype=torch.float64, device=device)
        n = 2 * _N_LABELS if with_labels else 0
        self.labels = torch.zeros(n, dtype=torch.float64, device=device)

    def add(
        self, loss: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor, provenance: torch.Tensor | None
    ) -> None:
        """Add one micro-batch."""
        loss = loss.detach().double()
        w = weight.double()
        sel = valid & (weight > 0)
        unsel = valid & ~sel
        zero = torch.zeros((), dtype=torch.float64, device=loss.device)
        self.scalars += torch.stack(
            [
                (w * loss).sum(),
                w.sum(),
                torch.where(sel, loss, zero).sum(),
                sel.sum().double(),
                torch.where(unsel, loss, zero).sum(),
                unsel.sum().double(),
                valid.sum().double(),
            ]
        )
        if self.with_labels and provenance is not None:
            p = provenance.long()
            self.labels[:_N_LABELS] += torch.bincount(p[valid], minlength=_N_LABELS).double()
            self.labels[_N_LABELS:] += torch.bincount(p[sel], minlength=_N_LABELS).double()

    def reduce(self, ctx: DistContext, label_names: list[str]) -> dict[str, Any]:
        """Sum over ranks and turn into a log record (losses are means over their tokens).

        Keys: ``loss`` (the objective, ``sum(w l) / sum(w)``), ``loss_selected`` /
        ``loss_unselected`` (mean loss of the selected / valid-but-dropped tokens, None if there are
        none), ``selected_frac``, ``n_valid``, ``n_selected`` and, when the shard has provenance
        labels, ``label_counts = {label_name: [n_valid, n_selected]}`` (what
        ``rho.analysis.selection_noise.sum_label_counts`` adds up).
        """
        s = all_reduce_sum(self.scalars, ctx).tolist()
        v = dict(zip(_SCALARS, s, strict=True))
        rec: dict[str, Any] = {
            "loss": v["weighted_loss"] / v["weight"] if v["weight"] > 0 else float("nan"),
            "loss_selected": v["selected_loss"] / v["selected"] if v["selected"] else None,
            "loss_unselected": v["unselected_loss"] / v["unselected"] if v["unselected"] else None,
            "selected_frac": v["selected"] / v["valid"] if v["valid"] else 0.0,
            "n_valid": int(v["valid"]),
            "n_selected": int(v["selected"]),
        }
        if self.with_labels:
            counts = all_reduce_sum(self.labels, ctx).long().tolist()
            valid_c, sel_c = counts[:_N_LABELS], counts[_N_LABELS:]
            names = {i: (label_names[i] if i < len(label_names) else str(i)) for i in range(_N_LABELS)}
            used = [i for i in range(_N_LABELS) if i < len(label_names) or valid_c[i]]
            rec["label_counts"] = {names[i]: [valid_c[i], sel_c[i]] for i in used}
        return rec


#: Per-step wall-clock times (``step``, ``step_time_s``, ``tokens_per_s``), beside ``log.jsonl``.
TIMING_LOG = "timing.jsonl"


class JsonlLog:
    """``log.jsonl``: one JSON object per optimizer step, appended and flushed as it happens."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Keep only records with ``step <= step`` (and drop a half-written last line), atomically.

        Called on resume: steps logged after the checkpoint will be run (and logged) again.
        """
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("step", -1) <= step:
                keep.append(line)
        write_text_atomic(self.path, "".join(k + "\n" for k in keep))

    def append(self, record: dict[str, Any]) -> None:
        """Append one record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a ``log.jsonl``, each with its wall-clock fields from ``timing.jsonl`` if present."""

    def records(p: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    path = Path(path)
    timing = path.with_name(TIMING_LOG)
    times = {r["step"]: r for r in records(timing)} if timing.is_file() else {}
    return [{**times.get(r.get("step"), {}), **r} for r in records(path)]
