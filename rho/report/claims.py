"""Scorecard of the paper's headline claims C1..C14 (``results/paper/headline_claims.md``).

Each :class:`Claim` has an id, the paper section, a one-line statement of what we check, the keys
of measured quantities its check needs, the paper's numbers as text, and a check function. A
check receives the dict of measured quantities and returns a :class:`Verdict` with a status in
:data:`STATUSES`, our numbers as text and a note. At the miniature scales we check the
**direction of each effect, not its magnitude**: e.g. C3 asks whether SLM beats CLM, not whether
it beats it by 16.5 points. A claim whose inputs are absent, or which needs what this scale
cannot measure (C5 ToRA fine-tuning, C14 the paper's hardware setup), is "not tested at this scale"
with the reason.

Inputs (keys of ``measured``; accuracies are fractions in [0, 1], losses in nats):

=====  ===========================================================================================
C1     ``category_shares``: {category: share} or the frame of ``rho.analysis.category_shares``;
       optional ``base_last_rel_change`` (relative change of the base's content loss on the CPT
       domain over its last snapshot interval: how flat the starting point was)
C2     ``fluctuating_noise_share`` (share of noise among the most fluctuating L->L/H->H tokens),
       ``noise_share`` (share of noise among all L->L/H->H tokens)
C3     ``clm_avg_acc``, ``slm_avg_acc``; optional ``avg_acc_diff_se`` (standard error of the paired
       difference on the same problems, over seeds: rho.analysis.paired; preferred) or
       ``avg_acc_stderr`` (stderr of one average; the difference's is then sqrt(2) times it)
C4     ``clm_curve``, ``slm_curve``: [(tokens, avg accuracy), ...] or frames with columns tokens, acc;
       speed-up = CLM's tokens / tokens SLM needs to reach CLM's final accuracy (points at 0 tokens,
       the shared start, do not count); undefined if CLM ends no higher than it started
C6     ``general_clm_avg_acc``, ``general_slm_avg_acc``; optional ``general_acc_diff_se`` or
       ``general_acc_stderr``
C7     ``selfref_clm_avg_acc``, ``selfref_lrm_avg_acc``, ``selfref_hrm_avg_acc``,
       ``selfref_intersect_avg_acc`` (averages over the tasks of Tables 3-4); optional
       ``selfref_avg_stderr`` (float, stderr of one average) and ``selfref_tasks`` (list of task names)
C8     ``slm_selected_loss_change``, ``clm_selected_loss_change`` (end - start loss on the tokens
       SLM selects), ``slm_unselected_loss_change``, ``slm_downstream_loss``, ``clm_downstream_loss``
       (final downstream loss)
C9     ``fit_selected_a``, ``fit_unselected_a`` (``a`` of Acc = log(a L + c)); optional
       ``fit_selected_r2``, ``fit_unselected_r2`` (a fit with R^2 below :data:`FIT_R2_MIN` is weak)
C10    ``ppl_matrix``: frame [selected_at x evaluated_at] from ``rho.analysis.ppl_pivot``, or its
       ``to_dict()`` (labels may be strings after a JSON round trip; they are read as numbers)
C11    ``acc_by_ratio``: {select ratio in (0, 1]: avg accuracy}; optional ``acc_by_ratio_stderr``:
       {select ratio: stderr of that ratio's average accuracy} (keys may be strings)
C12    ``w2s_clm_avg_acc``, ``w2s_slm_avg_acc`` (small RM guiding a larger model); optional
       ``w2s_acc_diff_se`` or ``w2s_acc_stderr``
C13    ``target_ratio``, ``selected_frac`` (mean logged selected fraction); optional
       ``step_time_ratio`` (SLM / CLM seconds per step)
C15    ``random_avg_acc``, ``slm_avg_acc`` (random selection of the same fraction of tokens vs SLM);
       optional ``random_slm_diff_se`` (paired difference's standard error)
=====  ===========================================================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rho.analysis.checkpoint_ppl import is_double_descent
from rho.analysis.errors import AnalysisInputError
from rho.analysis.token_dynamics import CATEGORIES
from rho.report.markdown import write_table

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTED = "not tested at this scale"
PARTIALLY = "partially"
STATUSES: tuple[str, ...] = (REPRODUCED, NOT_REPRODUCED, NOT_TESTED, PARTIALLY)

SCALE_NOTE = (
    "At this scale the scorecard checks the direction of each effect (does SLM help, which way does a "
    "loss move, where is the best ratio), not the paper's magnitudes; the paper's numbers are quoted "
    "for reference."
)
#: C13: the logged selected fraction may differ from the target ratio by rounding k = ratio * n per batch.
SELECTED_FRAC_TOL = 0.01
#: C13: "no extra cost" holds if an SLM step takes at most this many times a CLM step.
STEP_TIME_TOL = 1.15
#: C11: the paper's best ratio (~60 %) counts as reproduced if our best lies in this closed range.
BEST_RATIO_RANGE = (0.5, 0.7)
#: C9: a fit of Acc = log(a L + c) with R^2 below this is weak; its slope sign is not fully trusted.
FIT_R2_MIN = 0.5
#: C3/C6/C7/C11/C12: a gain counts beyond noise if it exceeds this many standard errors of the
#: difference of two averages (sqrt(se_a^2 + se_b^2); 2 * sqrt(2) * se when both have stderr se).
NOISE_Z = 2.0


@dataclass(frozen=True)
class Verdict:
    """Outcome of one claim's check."""

    status: str
    ours: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise AnalysisInputError(f"status {self.status!r} not in {STATUSES}")


@dataclass(frozen=True)
class Claim:
    """One headline claim: what it says, what its check needs, and the check."""

    id: str
    section: str
    text: str
    paper: str
    needs: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], Verdict]

    def evaluate(self, measured: Mapping[str, Any]) -> Verdict:
        """Run the check, or return "not tested at this scale" naming the missing inputs."""
        missing = [k for k in self.needs if measured.get(k) is None]
        if missing:
            return Verdict(NOT_TESTED, "-", f"not measured in this run: {', '.join(missing)}")
        return self.check(measured)


# ---------------------------------------------------------------------------------------------- helpers


def _acc(m: Mapping[str, Any], key: str) -> float:
    v = float(m[key])
    if not 0.0 <= v <= 1.0:
        raise AnalysisInputError(
            f"measured[{key!r}] = {v}: accuracies are fractions in [0, 1]; divide percentages by 100"
        )
    return v


def _pp(v: float) -> str:
    return f"{100 * v:.1f}"


def _status_from_count(n_ok: int, n_total: int) -> str:
    if n_ok == n_total:
        return REPRODUCED
    return PARTIALLY if n_ok > 0 else NOT_REPRODUCED


def _curve(obj: Any, key: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(obj, pd.DataFrame):
        cols = [c for c in ("tokens", "acc") if c not in obj.columns]
        if cols:
            raise AnalysisInputError(f"measured[{key!r}] frame lacks columns {cols}; need tokens, acc")
        pts = obj[["tokens", "acc"]].to_numpy(dtype=np.float64)
    else:
        pts = np.asarray(obj, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 1:
        raise AnalysisInputError(f"measured[{key!r}] must be [(tokens, acc), ...], got shape {pts.shape}")
    pts = pts[np.argsort(pts[:, 0], kind="stable")]
    return pts[:, 0], pts[:, 1]


# ---------------------------------------------------------------------------------------------- checks


def _check_c1(m: Mapping[str, Any]) -> Verdict:
    shares = m["category_shares"]
    if isinstance(shares, pd.DataFrame):
        shares = dict(zip(shares["category"], shares["share"]))
    unknown = set(shares) - set(CATEGORIES)
    if unknown:
        raise AnalysisInputError(f"category_shares has unknown categories {sorted(unknown)}")
    s = {c: float(shares.get(c, 0.0)) for c in CATEGORIES}
    order = sorted(CATEGORIES, key=lambda c: -s[c])
    ours = ", ".join(f"{c} {100 * s[c]:.0f}%" for c in CATEGORIES)
    start = ""
    if m.get("base_last_rel_change") is not None:  # how far the base had flattened (the paper's base had)
        start = (
            f"; the base's loss on the CPT domain's content changed by "
            f"{100 * float(m['base_last_rel_change']):+.1f}% over its last pretraining interval"
        )
    if order[0] == "L->L" and order[1] == "H->L":
        return Verdict(
            REPRODUCED, ours, "L->L is the largest category and H->L the second, as in the paper" + start
        )
    if order[0] == "L->L":
        return Verdict(
            PARTIALLY, ours, f"L->L is the largest category but {order[1]} is second (paper: H->L)" + start
        )
    return Verdict(NOT_REPRODUCED, ours, f"largest category is {order[0]} (paper: L->L)" + start)


def _check_c2(m: Mapping[str, Any]) -> Verdict:
    fl, base = float(m["fluctuating_noise_share"]), float(m["noise_share"])
    ours = f"noise is {100 * fl:.0f}% of the most fluctuating L->L/H->H tokens vs {100 * base:.0f}% of all of them"
    if fl > 0.5 and fl > base:
        return Verdict(REPRODUCED, ours, "fluctuating tokens are mostly noise, above the base rate")
    if fl > base:
        return Verdict(
            PARTIALLY, ours, "noise is over-represented among fluctuating tokens but not a majority"
        )
    return Verdict(NOT_REPRODUCED, ours, "fluctuating tokens are not enriched in noise")


def _noise_margin(se_a: float | None, se_b: float | None = None) -> float | None:
    """Smallest gain of one average over another that counts beyond noise, or None without stderrs.

    ``NOISE_Z`` standard errors of the difference: ``NOISE_Z * sqrt(se_a^2 + se_b^2)``; a missing
    ``se_b`` (or ``se_a``) is taken equal to the other, so one shared stderr ``se`` gives
    ``2 * sqrt(2) * se``. A gain ``<=`` the margin is within noise. A NaN stderr (e.g. from a single
    sample) counts as missing.
    """
    ses = [float(s) for s in (se_a, se_b) if s is not None and not np.isnan(float(s))]
    if not ses:
        return None
    if any(s < 0 for s in ses):
        raise AnalysisInputError(f"standard errors must be >= 0, got {ses}")
    a, b = (ses[0], ses[0]) if len(ses) == 1 else ses
    return float(NOISE_Z * np.sqrt(a * a + b * b))


def _stderr(m: Mapping[str, Any], key: str) -> float | None:
    """The optional stderr ``m[key]`` as a float (None when absent)."""
    v = m.get(key)
    return None if v is None else float(v)


def _diff_margin(diff_se: float | None) -> float | None:
    """``NOISE_Z`` standard errors of a difference measured directly (paired), or None."""
    if diff_se is None or np.isnan(float(diff_se)):
        return None
    if float(diff_se) < 0:
        raise AnalysisInputError(f"standard errors must be >= 0, got {diff_se}")
    return float(NOISE_Z * float(diff_se))


def _gain_verdict(
    clm: float,
    slm: float,
    stderr: float | None,
    what: str,
    diff_se: float | None = None,
    names: tuple[str, str] = ("CLM", "SLM"),
) -> Verdict:
    """SLM (``names[1]``) vs CLM (``names[0]``): reproduced when the gain exceeds the noise margin.

    The margin is ``NOISE_Z`` standard errors of the difference: from ``diff_se`` (a paired
    difference's own standard error) when given, else from two independent ``stderr``. A loss
    beyond the margin is noted as contradicting the claim.
    """
    a, b = names
    gain = slm - clm
    ours = f"{a} {_pp(clm)}, {b} {_pp(slm)} ({'+' if gain >= 0 else ''}{_pp(gain)} pts)"
    paired = _diff_margin(diff_se)
    margin = paired if paired is not None else _noise_margin(stderr)
    how = (
        f"noise margin {_pp(margin)} pts = {NOISE_Z:g} x the paired difference's standard error"
        if paired is not None
        else (
            None
            if margin is None
            else f"noise margin {_pp(margin)} pts from two standard errors of {_pp(stderr)}"
        )
    )
    if margin is not None:
        ours += f", margin {_pp(margin)}"
    if gain <= 0:
        beyond = margin is not None and -gain > margin
        note = f"{b} does not beat {a} on {what}" + (
            " (it is worse beyond noise: contradicted)"
            if beyond
            else " (within noise)"
            if margin is not None
            else ""
        )
        return Verdict(NOT_REPRODUCED, ours, note + (f"; {how}" if how else ""))
    if margin is not None and gain <= margin:
        return Verdict(PARTIALLY, ours, f"{b} ahead of {a} on {what} but within noise; {how}")
    return Verdict(REPRODUCED, ours, f"{b} beats {a} on {what}" + (f" beyond noise; {how}" if how else ""))


def _check_c3(m: Mapping[str, Any]) -> Verdict:
    return _gain_verdict(
        _acc(m, "clm_avg_acc"),
        _acc(m, "slm_avg_acc"),
        _stderr(m, "avg_acc_stderr"),
        "average few-shot accuracy",
        _stderr(m, "avg_acc_diff_se"),
    )


def _check_c4(m: Mapping[str, Any]) -> Verdict:
    t_clm, a_clm = _curve(m["clm_curve"], "clm_curve")
    t_slm, a_slm = _curve(m["slm_curve"], "slm_curve")
    order = np.argsort(t_clm)
    t_clm, a_clm = t_clm[order], a_clm[order]
    target, t_clm_end = float(a_clm[-1]), float(t_clm[-1])
    start = a_clm[t_clm <= 0]
    if start.size and target <= float(start.max()):
        return Verdict(
            NOT_REPRODUCED,
            f"CLM ends at {_pp(target)}, not above its starting accuracy {_pp(float(start.max()))}",
            "continual pretraining did not raise the baseline's accuracy, so the speed-up is undefined",
        )
    trained = t_slm > 0
    reach = np.flatnonzero(trained & (a_slm >= target))
    if reach.size == 0:
        return Verdict(
            NOT_REPRODUCED,
            f"SLM never reaches CLM's final accuracy {_pp(target)}",
            "SLM does not reach the baseline's accuracy within the run",
        )
    t_slm_reach = float(t_slm[reach[0]])
    speedup = t_clm_end / t_slm_reach
    ours = (
        f"CLM ends at {_pp(target)} after {t_clm_end:.3g} tokens, SLM reaches it at {t_slm_reach:.3g} "
        f"({speedup:.1f}x)"
    )
    if speedup > 1:
        return Verdict(REPRODUCED, ours, "SLM reaches the baseline's final accuracy in fewer tokens")
    return Verdict(NOT_REPRODUCED, ours, "SLM is not faster than CLM to the baseline's final accuracy")


def _check_c5(m: Mapping[str, Any]) -> Verdict:
    return Verdict(
        NOT_TESTED, "-", "needs ToRA-69k tool-integrated fine-tuning and real MATH; outside the study"
    )


def _check_c6(m: Mapping[str, Any]) -> Verdict:
    return _gain_verdict(
        _acc(m, "general_clm_avg_acc"),
        _acc(m, "general_slm_avg_acc"),
        _stderr(m, "general_acc_stderr"),
        "the general benchmark average",
        _stderr(m, "general_acc_diff_se"),
    )


def _check_c7(m: Mapping[str, Any]) -> Verdict:
    from rho.report.paper_tables import TABLE3_TASKS

    clm = _acc(m, "selfref_clm_avg_acc")
    arms = {k: _acc(m, f"selfref_{k}_avg_acc") for k in ("lrm", "hrm", "intersect")}
    se = _stderr(m, "selfref_avg_stderr")
    margin = _noise_margin(se)
    tasks = m.get("selfref_tasks")
    tasks = None if tasks is None else [tasks] if isinstance(tasks, str) else [str(t) for t in tasks]
    gains = {k: v - clm for k, v in arms.items()}
    better = [k for k, g in gains.items() if g > 0 and (margin is None or g > margin)]
    in_noise = [k for k, g in gains.items() if g > 0 and k not in better]
    ours = f"CLM {_pp(clm)}; " + ", ".join(
        f"{k} {_pp(v)} ({'+' if gains[k] >= 0 else ''}{_pp(gains[k])} pts)" for k, v in arms.items()
    )
    best_is_intersect = arms["intersect"] >= max(arms["lrm"], arms["hrm"])

    def arm_note(k: str) -> str:
        if k in better:
            return f"{k} beats CLM" + ("" if margin is None else " beyond noise")
        if k in in_noise:
            return f"{k} ahead of CLM within noise"
        return f"{k} does not beat CLM"

    note = "; ".join(arm_note(k) for k in arms) + f"; intersection best: {best_is_intersect}"
    if margin is not None:
        note += f"; noise margin {_pp(margin)} pts ({NOISE_Z:g} stderr of a difference, {_pp(se)} pts each)"
    if tasks is not None:
        note += f"; averages over {len(tasks)} tasks: {', '.join(tasks)}"
        if sorted(tasks) != sorted(TABLE3_TASKS):
            note += f" (Tables 3-4 average {len(TABLE3_TASKS)}: {', '.join(TABLE3_TASKS)})"
    if len(better) == 3 and best_is_intersect:
        return Verdict(REPRODUCED, ours, note)
    if better or in_noise:
        return Verdict(PARTIALLY, ours, note)
    return Verdict(NOT_REPRODUCED, ours, note)


def _check_c8(m: Mapping[str, Any]) -> Verdict:
    sel_s, sel_c = float(m["slm_selected_loss_change"]), float(m["clm_selected_loss_change"])
    unsel = float(m["slm_unselected_loss_change"])
    ds_s, ds_c = float(m["slm_downstream_loss"]), float(m["clm_downstream_loss"])
    parts = {
        "SLM lowers selected-token loss more than CLM": sel_s < sel_c,
        "SLM's downstream loss ends lower than CLM's": ds_s < ds_c,
        "unselected-token loss rises under SLM": unsel > 0,
    }
    ours = (
        f"selected-token loss change SLM {sel_s:+.3f} vs CLM {sel_c:+.3f}; downstream loss SLM {ds_s:.3f} "
        f"vs CLM {ds_c:.3f}; unselected-token loss change under SLM {unsel:+.3f}"
    )
    held = [k for k, ok in parts.items() if ok]
    note = (
        "holds: "
        + ("; ".join(held) if held else "none")
        + ". fails: "
        + ("; ".join(k for k, ok in parts.items() if not ok) or "none")
    )
    return Verdict(_status_from_count(len(held), len(parts)), ours, note)


def _check_c9(m: Mapping[str, Any]) -> Verdict:
    a_s, a_u = float(m["fit_selected_a"]), float(m["fit_unselected_a"])
    r2 = [m.get("fit_selected_r2"), m.get("fit_unselected_r2")]
    ours = f"a_selected = {a_s:.3g}, a_unselected = {a_u:.3g}"
    if all(v is not None for v in r2):
        ours += f" (R^2 {float(r2[0]):.2f} / {float(r2[1]):.2f})"
    ok_s, ok_u = a_s < 0, a_u > 0
    r2_s, r2_u = (None if v is None else float(v) for v in r2)
    weak = [
        name
        for name, v in (("selected", r2_s), ("unselected", r2_u))
        if v is not None and not v >= FIT_R2_MIN  # NaN R^2 counts as weak
    ]

    degenerate = [
        name for name, v in (("selected", r2_s), ("unselected", r2_u)) if v is not None and np.isnan(v)
    ]
    if degenerate:  # R^2 undefined: accuracy did not vary over the checkpoints, so a slope means nothing
        return Verdict(
            NOT_TESTED,
            ours,
            f"the {' and '.join(degenerate)} fit is degenerate (R^2 undefined: "
            "accuracy did not vary over the checkpoints); no slope sign can be read",
        )

    def cond(name: str, a: float, op: str, ok: bool, r2v: float | None, meaning: str) -> str:
        fit = "R^2 not given" if r2v is None else f"R^2 {r2v:.2f}"
        return f"a_{name} = {a:.3g} {op} 0 ({meaning}): {'held' if ok else 'failed'} ({fit})"

    note = (
        cond("selected", a_s, "<", ok_s, r2_s, "accuracy rises as selected-token loss falls")
        + "; "
        + cond("unselected", a_u, ">", ok_u, r2_u, "accuracy moves the other way with unselected-token loss")
    )
    if ok_s and ok_u:
        if weak:
            status = PARTIALLY
            note += f"; both signs hold but the {' and '.join(weak)} fit is weak (R^2 < {FIT_R2_MIN})"
        else:
            status = REPRODUCED
            if r2_s is None or r2_u is None:
                note += "; fit quality not checked (R^2 missing)"
    else:
        status = _status_from_count(int(ok_s) + int(ok_u), 2)
    note += "; App. F prints the signs the other way round, see rho.analysis.acc_fit"
    return Verdict(status, ours, note)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def _numeric_labels(labels: pd.Index, what: str) -> pd.Index:
    """Checkpoint token counts as numbers (int when all integral), e.g. after JSON made them strings."""
    try:
        v = np.asarray([float(x) for x in labels], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AnalysisInputError(
            f"ppl_matrix {what} must be checkpoint token counts, got {list(labels)}"
        ) from e
    if not np.isfinite(v).all():
        raise AnalysisInputError(f"ppl_matrix {what} must be finite token counts, got {list(labels)}")
    if np.all(v == np.round(v)):
        return pd.Index(v.astype(np.int64))
    return pd.Index(v)


def _check_c10(m: Mapping[str, Any]) -> Verdict:
    mat = m["ppl_matrix"]
    if isinstance(mat, Mapping):
        mat = pd.DataFrame(mat)  # {evaluated_at: {selected_at: ppl}}, as DataFrame.to_dict() writes it
    if not isinstance(mat, pd.DataFrame) or mat.shape[0] < 2 or mat.shape[1] < 3:
        raise AnalysisInputError(
            "ppl_matrix must be a [selected_at x evaluated_at] frame with >= 2 rows, >= 3 columns"
        )
    mat = mat.copy()
    mat.index = _numeric_labels(mat.index, "index (selected_at)")
    mat.columns = _numeric_labels(mat.columns, "columns (evaluated_at)")
    mat = mat.sort_index().sort_index(axis=1)
    sel = np.asarray(mat.index, dtype=np.float64)
    early, late = _spearman(sel, mat.iloc[:, 0].to_numpy()), _spearman(sel, mat.iloc[:, -1].to_numpy())
    n_dd = sum(is_double_descent(row) for row in mat.to_numpy())
    order_ok = late > 0 and early < 0
    dd_ok = n_dd * 2 >= mat.shape[0]
    ours = (
        f"rank corr(selecting ckpt, ppl): {early:+.2f} at the first evaluated ckpt, {late:+.2f} at the last; "
        f"{n_dd}/{mat.shape[0]} selection rows rise then fall"
    )
    note = (
        f"later-selected tokens lower early / higher late: {order_ok}; double descent in at least half the rows: "
        f"{dd_ok}"
    )
    return Verdict(_status_from_count(int(order_ok) + int(dd_ok), 2), ours, note)


def _check_c11(m: Mapping[str, Any]) -> Verdict:
    by = {float(k): float(v) for k, v in dict(m["acc_by_ratio"]).items()}
    if any(not 0.0 <= v <= 1.0 for v in by.values()):
        raise AnalysisInputError(
            "acc_by_ratio values are accuracies as fractions in [0, 1]; divide percentages by 100"
        )
    if len(by) < 2 or any(not 0 < k <= 1 for k in by):
        raise AnalysisInputError("acc_by_ratio needs >= 2 ratios in (0, 1], e.g. {0.6: 0.31, 1.0: 0.27}")
    se_by = {float(k): float(v) for k, v in dict(m.get("acc_by_ratio_stderr") or {}).items() if v is not None}
    lo, hi = BEST_RATIO_RANGE
    rng = f"{100 * lo:.0f}-{100 * hi:.0f}%"
    # the best selecting ratio (< 100%): highest accuracy; among ties one in the range, else the smallest
    best = min((k for k in by if k < 1.0), key=lambda k: (-by[k], not lo <= k <= hi, k))
    all_higher = by.get(1.0, -1.0) > by[best]
    tie = by.get(1.0, -1.0) == by[best]
    ours = ", ".join(f"{100 * k:.0f}%: {_pp(v)}" for k, v in sorted(by.items()))
    ours += " (best 100%)" if all_higher else f" (best {100 * best:.0f}%{', tied with 100%' if tie else ''})"
    # half 1: the best tested ratio lies in BEST_RATIO_RANGE (a tie with 100% leaves it among the best)
    range_ok = not all_higher and lo <= best <= hi
    if all_higher:
        range_note = f"best ratio is 100%, above every selecting ratio, not within {rng}: failed"
    else:
        range_note = f"best ratio {100 * best:.0f}% {'within' if range_ok else 'not within'} {rng}: " + (
            "held" if range_ok else "failed"
        )
    # half 2: selecting beats keeping all tokens; a tie is no gain, a gain inside the noise margin is only partial
    if 1.0 not in by:
        sel_state, sel_note = "untested", "selection beats all tokens: not tested (ratio 100% not measured)"
    else:
        gain = by[best] - by[1.0]
        margin = _noise_margin(se_by.get(best), se_by.get(1.0))
        nums = f"{100 * best:.0f}% {_pp(by[best])} vs 100% {_pp(by[1.0])} ({'+' if gain >= 0 else ''}{_pp(gain)} pts"
        nums += ")" if margin is None else f", noise margin {_pp(margin)} pts)"
        if gain <= 0:
            sel_state, verdict = "failed", "failed (no gain)"
        elif margin is not None and gain <= margin:
            sel_state, verdict = "noise", "within noise"
        else:
            sel_state, verdict = "held", "held"
        sel_note = f"selection beats all tokens, {nums}: {verdict}"
    note = f"{range_note}; {sel_note}"
    if range_ok and sel_state == "held":
        return Verdict(REPRODUCED, ours, note)
    if range_ok or sel_state in ("held", "noise"):
        return Verdict(PARTIALLY, ours, note)
    return Verdict(NOT_REPRODUCED, ours, note)


def _check_c12(m: Mapping[str, Any]) -> Verdict:
    return _gain_verdict(
        _acc(m, "w2s_clm_avg_acc"),
        _acc(m, "w2s_slm_avg_acc"),
        _stderr(m, "w2s_acc_stderr"),
        "average accuracy with a smaller reference model",
        _stderr(m, "w2s_acc_diff_se"),
    )


def _check_c13(m: Mapping[str, Any]) -> Verdict:
    ratio, frac = float(m["target_ratio"]), float(m["selected_frac"])
    t = m.get("step_time_ratio")
    ours = f"target ratio {100 * ratio:.1f}%, selected {100 * frac:.1f}%"
    if t is not None:
        ours += f", SLM/CLM step time {float(t):.2f}x"
    if abs(frac - ratio) > SELECTED_FRAC_TOL:
        return Verdict(
            NOT_REPRODUCED, ours, f"selected fraction differs from the ratio by more than {SELECTED_FRAC_TOL}"
        )
    if t is None:
        return Verdict(
            PARTIALLY,
            ours,
            "selection keeps the top k%; step time is wall-clock, so it is kept out of these reproducible "
            "results: see math_cpt/step_time.json after a run, and benchmarks/ (bench_slm_step)",
        )
    if float(t) > STEP_TIME_TOL:
        return Verdict(
            PARTIALLY,
            ours,
            f"selection keeps the top k% but an SLM step costs more than {STEP_TIME_TOL}x CLM",
        )
    return Verdict(REPRODUCED, ours, "top-k% selection at no notable extra cost per step")


def _check_c15(m: Mapping[str, Any]) -> Verdict:
    return _gain_verdict(
        _acc(m, "random_avg_acc"),
        _acc(m, "slm_avg_acc"),
        None,
        "average few-shot accuracy at the same select ratio (the reference model's scores, not the "
        "smaller token count, make the difference)",
        _stderr(m, "random_slm_diff_se"),
        names=("random selection", "SLM"),
    )


def _check_c14(m: Mapping[str, Any]) -> Verdict:
    return Verdict(
        NOT_TESTED,
        "-",
        "the paper's hardware and hyper-parameters (1B/7B, 32 H100, 1M-token batches) "
        "define its scale; our profile's settings are in each run's config.json",
    )


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "C1",
        "2.1, D.1",
        "token loss categories: L->L largest, then H->L",
        "51% L->L, 26% H->L, 11% H->H, 12% L->H",
        ("category_shares",),
        _check_c1,
    ),
    Claim(
        "C2",
        "2.1, D.2",
        "fluctuating L->L / H->H tokens are mostly noise",
        "qualitative (Figure 12)",
        ("fluctuating_noise_share", "noise_share"),
        _check_c2,
    ),
    Claim(
        "C3",
        "3.2, Table 1",
        "SLM beats CLM on average few-shot accuracy",
        "+16.5 avg (1B, 60%), +10.4 avg (7B, 70%)",
        ("clm_avg_acc", "slm_avg_acc"),
        _check_c3,
    ),
    Claim(
        "C4",
        "Fig 1",
        "SLM reaches the CLM baseline's accuracy in fewer tokens",
        "5-10x fewer tokens",
        ("clm_curve", "slm_curve"),
        _check_c4,
    ),
    Claim("C5", "3.2, Table 2", "ToRA fine-tuned RHO-1 on MATH", "40.6% (1B), 51.8% (7B)", (), _check_c5),
    Claim(
        "C6",
        "3.3, Fig 5",
        "SLM beats CLM in general-domain continual pretraining",
        "+6.8 avg over 15 benchmarks; >10 on code and math",
        ("general_clm_avg_acc", "general_slm_avg_acc"),
        _check_c6,
    ),
    Claim(
        "C7",
        "3.4, Tables 3-4",
        "self-reference selection (L_RM, H_RM, intersection) beats CLM",
        "+2.4 (L_RM), similar (H_RM), +3.3 (intersection, 60% tokens)",
        ("selfref_clm_avg_acc", "selfref_lrm_avg_acc", "selfref_hrm_avg_acc", "selfref_intersect_avg_acc"),
        _check_c7,
    ),
    Claim(
        "C8",
        "3.5, Fig 6",
        "SLM lowers selected-token and downstream loss more than CLM; unselected loss rises",
        "qualitative over 4B tokens",
        (
            "slm_selected_loss_change",
            "clm_selected_loss_change",
            "slm_unselected_loss_change",
            "slm_downstream_loss",
            "clm_downstream_loss",
        ),
        _check_c8,
    ),
    Claim(
        "C9",
        "3.5, Fig 7, App. F",
        "Acc = log(a L + c): opposite slope signs for selected vs unselected loss",
        "App. F: a > 0 (selected), a < 0 (unselected) as printed",
        ("fit_selected_a", "fit_unselected_a"),
        _check_c9,
    ),
    Claim(
        "C10",
        "3.5, Fig 8",
        "later-selected tokens: higher ppl late, lower early; sample-wise double descent",
        "qualitative (checkpoints 2B..14B)",
        ("ppl_matrix",),
        _check_c10,
    ),
    Claim(
        "C11",
        "3.5, Fig 9",
        "a select ratio around 60% is best",
        "~60% best (1B, 5B tokens)",
        ("acc_by_ratio",),
        _check_c11,
    ),
    Claim(
        "C12",
        "App. I, Table 5",
        "a smaller reference model still helps a larger model",
        "+1.3 avg (1.1B RM -> Llama-2-7B, 10.5B of 15B tokens)",
        ("w2s_clm_avg_acc", "w2s_slm_avg_acc"),
        _check_c12,
    ),
    Claim(
        "C13",
        "2.2",
        "SLM keeps the top k% of a batch by excess loss at no extra cost over CLM",
        "top k% per batch; no extra cost",
        ("target_ratio", "selected_frac"),
        _check_c13,
    ),
    Claim(
        "C14",
        "3.1",
        "the paper's training setup",
        "RM 3 epochs; lr 8e-5 (1B); 1M-token batches; 32 H100",
        (),
        _check_c14,
    ),
    Claim(
        "C15",
        "control (ours)",
        "SLM beats random selection of the same fraction of tokens",
        "not in the paper: the control a reader asks for first",
        ("random_avg_acc", "slm_avg_acc"),
        _check_c15,
    ),
)


def load_claim_texts(path: str | os.PathLike | None = None) -> dict[str, str]:
    """The paper's claim texts from ``headline_claims.md`` as {id: text}."""
    from rho.report.paper_tables import PAPER_DIR

    p = Path(path) if path is not None else PAPER_DIR / "headline_claims.md"
    if not p.is_file():
        raise AnalysisInputError(f"{p} is missing; copy headline_claims.md into results/paper/")
    out = {}
    for line in p.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("C") and cells[0][1:].isdigit():
            out[cells[0]] = "|".join(cells[2:]).strip()
    return out


def scorecard(
    measured: Mapping[str, Any],
    profile: str,
    claims: Sequence[Claim] = CLAIMS,
    claim_texts: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Evaluate every claim on ``measured``; one row per claim.

    Columns: ``id, section, claim, status, ours, paper, note, needs, profile``; ``claim`` is the
    paper's text when ``claim_texts`` (e.g. :func:`load_claim_texts`) is given, else our summary.
    """
    if not profile:
        raise AnalysisInputError(
            "profile must name the scale of the measurements (e.g. 'mini', 'gpu', 'paper')"
        )
    texts = claim_texts or {}
    rows = []
    for c in claims:
        v = c.evaluate(measured)
        rows.append(
            {
                "id": c.id,
                "section": c.section,
                "claim": texts.get(c.id, c.text),
                "status": v.status,
                "ours": v.ours,
                "paper": c.paper,
                "note": v.note,
                "needs": ", ".join(c.needs) or "-",
                "profile": profile,
            }
        )
    return pd.DataFrame(rows)


def write_scorecard(card: pd.DataFrame, out_stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write a scorecard as ``<out_stem>.csv`` and ``.md`` (atomically), stating its profile and scale note."""
    profiles = sorted(set(card["profile"]))
    counts = card["status"].value_counts()
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES)
    note = f"Profile: **{', '.join(profiles)}**. {summary}.\n\n{SCALE_NOTE}"
    cols = ["id", "section", "status", "ours", "paper", "note", "claim"]
    return write_table(
        card[cols + [c for c in card.columns if c not in cols]],
        out_stem,
        title="Headline claims of Rho-1: scorecard",
        note=note,
    )
