"""The summaries accept what rho.dynamics produces (categories incl. undefined tokens) and agree with it."""

import numpy as np
import pytest

dynamics = pytest.importorskip(
    "rho.dynamics", reason="rho.dynamics (classify_tokens) is not in this checkout"
)

from rho.analysis import UNDEFINED, category_shares, category_shares_by_label, fit_lines, mean_loss_curves  # noqa: E402


def _losses():
    rng = np.random.default_rng(1)
    x = np.arange(6)[:, None]
    losses = rng.gamma(2.0, 1.0, 400)[None, :] + rng.normal(0, 0.1, 400) * x + rng.normal(0, 0.05, (6, 400))
    losses[:, :3] = np.nan  # block starts: no prediction
    return losses


def test_undefined_value_matches():
    assert UNDEFINED == dynamics.UNDEFINED


def test_shares_and_curves_from_classify_tokens():
    losses = _losses()
    cats = dynamics.classify_tokens(losses)
    assert (cats[:3] == UNDEFINED).all()
    shares = category_shares(cats).set_index("category")["share"].to_dict()
    defined = cats[cats != UNDEFINED]
    assert shares == pytest.approx({c: float(np.mean(defined == c)) for c in dynamics.CATEGORIES})
    assert sum(shares.values()) == pytest.approx(1.0)
    curves = mean_loss_curves(losses, cats)
    assert curves.groupby("checkpoint")["n_tokens"].sum().tolist() == [397] * 6
    by_label = category_shares_by_label(cats, np.r_[np.zeros(200, int), np.ones(200, int)])
    assert by_label.groupby("label")["n_tokens"].sum().tolist() == [197, 200]


def test_residual_std_equals_dynamics_fluctuation():
    losses = _losses()[:, 3:]
    fits = fit_lines(losses)
    slope, intercept, delta, fluct = dynamics.fit_trend(losses)
    np.testing.assert_allclose(fits["residual_std"], fluct, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fits["delta_loss"], delta, rtol=1e-10, atol=1e-12)
