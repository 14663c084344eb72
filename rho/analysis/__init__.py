"""Study analyses: pure functions over arrays, tidy pandas frames and run files (no training here).

Modules, one job each:

    token_dynamics    category shares, mean loss per category, fluctuating tokens (Sec 2.1, App. D)
    selection_noise   selection vs ground-truth noise labels: precision/recall/F1, kept share per label
    training_logs     per-step log.jsonl -> tidy loss curves (Fig 6)
    acc_fit           Acc(L) = log(a*L + c) fit of accuracy against token loss (Fig 7, App. F)
    checkpoint_ppl    perplexity of tokens selected at each checkpoint, under each checkpoint (Fig 8)
"""

from rho.analysis.acc_fit import LogFit, fit_log_accuracy, fit_log_accuracy_table
from rho.analysis.checkpoint_ppl import is_double_descent, ppl_pivot, selected_ppl_matrix
from rho.analysis.errors import AnalysisInputError
from rho.analysis.selection_noise import (
    detection_metrics,
    kept_by_label,
    label_counts_from_masks,
    sum_label_counts,
)
from rho.analysis.token_dynamics import (
    CATEGORIES,
    PAPER_CATEGORY_SHARES,
    UNDEFINED,
    category_shares,
    category_shares_by_label,
    fit_lines,
    fluctuating_tokens,
    mean_loss_curves,
    noise_among_fluctuating,
)
from rho.analysis.training_logs import (
    label_counts,
    loss_curves,
    median_step_time,
    read_log,
    step_time_ratio,
    values_at_tokens,
)

__all__ = [
    "CATEGORIES",
    "UNDEFINED",
    "PAPER_CATEGORY_SHARES",
    "AnalysisInputError",
    "LogFit",
    "category_shares",
    "category_shares_by_label",
    "detection_metrics",
    "fit_lines",
    "fit_log_accuracy",
    "fit_log_accuracy_table",
    "fluctuating_tokens",
    "is_double_descent",
    "kept_by_label",
    "label_counts",
    "label_counts_from_masks",
    "loss_curves",
    "mean_loss_curves",
    "noise_among_fluctuating",
    "ppl_pivot",
    "median_step_time",
    "read_log",
    "step_time_ratio",
    "selected_ppl_matrix",
    "sum_label_counts",
    "values_at_tokens",
]
