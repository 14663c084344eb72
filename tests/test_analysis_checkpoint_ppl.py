"""Perplexity of tokens selected at different checkpoints (Figure 8) and the double-descent shape."""

import numpy as np
import pytest

from rho.analysis import AnalysisInputError, is_double_descent, ppl_pivot, selected_ppl_matrix


def test_ppl_matrix_values():
    losses = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 1.5, 2.0]])  # 2 evaluating checkpoints
    masks = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1]], dtype=bool)  # 3 selecting checkpoints
    df = selected_ppl_matrix(losses, masks, eval_checkpoints=[2, 5], select_checkpoints=[2, 5, 8])
    assert len(df) == 6
    mat = ppl_pivot(df)
    assert list(mat.index) == [2, 5, 8] and list(mat.columns) == [2, 5]
    assert mat.loc[2, 2] == pytest.approx(np.exp(1.5))
    assert mat.loc[5, 5] == pytest.approx(np.exp(1.75))
    assert mat.loc[8, 2] == pytest.approx(np.exp(2.5))
    assert set(df[df["selected_at"] == 5]["n_selected"]) == {2}
    assert ppl_pivot(df, "mean_loss").loc[8, 5] == pytest.approx(1.25)


def test_ppl_matrix_validation():
    losses = np.ones((2, 3))
    with pytest.raises(AnalysisInputError, match="boolean"):
        selected_ppl_matrix(losses, np.ones((1, 3)))
    with pytest.raises(AnalysisInputError, match="same tokens"):
        selected_ppl_matrix(losses, np.ones((1, 4), dtype=bool))
    with pytest.raises(AnalysisInputError, match=r"rows \[1\] select no token"):
        selected_ppl_matrix(losses, np.array([[1, 0, 0], [0, 0, 0]], dtype=bool))
    with pytest.raises(AnalysisInputError, match="distinct"):
        selected_ppl_matrix(losses, np.ones((2, 3), dtype=bool), select_checkpoints=[1, 1])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0, 4.0, 2.0], True),
        ([3.0, 3.5, 4.0, 1.0], True),
        ([4.0, 3.0, 2.0], False),
        ([1.0, 2.0, 3.0], False),
        ([3.0, 3.0], False),
    ],
)
def test_double_descent_shape(values, expected):
    assert is_double_descent(values) is expected


def test_double_descent_tolerance():
    assert is_double_descent([3.0, 3.05, 2.0]) is True
    assert is_double_descent([3.0, 3.05, 2.0], tol=0.1) is False
