"""Acc(L) = log(a*L + c): recovery of known parameters, sign, domain guard, input checks."""

import numpy as np
import pandas as pd
import pytest

from rho.analysis import AnalysisInputError, fit_log_accuracy, fit_log_accuracy_table


@pytest.mark.parametrize(("a", "c"), [(-0.4, 2.3), (0.3, 1.0), (-1.0, 4.0)])
def test_fit_recovers_known_parameters_exactly(a, c):
    loss = np.linspace(1.5, 3.0, 7)
    acc = np.log(a * loss + c)
    fit = fit_log_accuracy(loss, acc)
    assert fit.a == pytest.approx(a, rel=1e-6)
    assert fit.c == pytest.approx(c, rel=1e-6)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.slope_sign == int(np.sign(a))
    assert fit.n == 7


def test_fit_with_noise_is_close_and_refines_the_linearisation():
    rng = np.random.default_rng(0)
    loss = np.linspace(0.5, 1.8, 12)
    acc = np.log(-0.5 * loss + 2.0) + rng.normal(0, 0.01, loss.size)
    fit = fit_log_accuracy(loss, acc)
    assert fit.a == pytest.approx(-0.5, abs=0.08) and fit.c == pytest.approx(2.0, abs=0.15)
    assert 0.95 < fit.r2 < 1.0
    # the nonlinear fit minimises squared error in accuracy space: no worse than the linearised start
    a0, c0 = np.polyfit(loss, np.exp(acc), 1)
    sse = lambda a, c: float(((acc - np.log(a * loss + c)) ** 2).sum())  # noqa: E731
    assert sse(fit.a, fit.c) <= sse(a0, c0) + 1e-12
    # predictions stay in the domain on the data, NaN outside it
    assert np.isfinite(fit.predict(loss)).all()
    far = -fit.c / fit.a + 1.0  # a*L + c < 0 there (a < 0)
    assert np.isnan(fit.predict(far))


def test_fit_rejects_bad_input():
    with pytest.raises(AnalysisInputError, match="at least 3"):
        fit_log_accuracy([1.0, 2.0], [0.1, 0.2])
    with pytest.raises(AnalysisInputError, match="divide percentages by 100"):
        fit_log_accuracy([1.0, 2.0, 3.0], [30.0, 20.0, 10.0])
    with pytest.raises(AnalysisInputError, match="different losses"):
        fit_log_accuracy([1.0, 1.0, 1.0], [0.1, 0.2, 0.3])
    with pytest.raises(AnalysisInputError, match="finite"):
        fit_log_accuracy([1.0, np.nan, 3.0], [0.1, 0.2, 0.3])


def test_fit_table_per_loss_kind_signs():
    sel = np.linspace(1.2, 2.0, 5)  # selected-token loss falls as accuracy rises
    uns = np.linspace(4.0, 3.0, 5)  # unselected-token loss rises as accuracy rises
    acc = np.log(-0.5 * sel + 2.0)
    df = pd.DataFrame(
        {"kind": ["selected"] * 5 + ["unselected"] * 5, "loss": np.r_[sel, uns], "acc": np.r_[acc, acc]}
    )
    out = fit_log_accuracy_table(df, "loss", "acc", by="kind").set_index("kind")
    assert out.loc["selected", "a"] == pytest.approx(-0.5, rel=1e-5)
    assert out.loc["selected", "direction"] == "acc falls as loss rises"
    assert out.loc["unselected", "a"] > 0
    assert out.loc["unselected", "direction"] == "acc rises as loss rises"
    with pytest.raises(AnalysisInputError, match="not in the frame"):
        fit_log_accuracy_table(df, "loss_selected", "acc")
