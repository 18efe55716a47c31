"""EWA against pandas ewm (the independent reference) and against the notes' hand example."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from descend.ewa import bias_correction_factor, effective_window, ewa

# β = 0.5 is left out of the NaN comparisons on purpose: pandas 3.0 special-cases com == 1
# (α = β = 0.5) with adjust=False and gives a different gap rule (pandas-dev/pandas#66521,
# #31178); descend uses the documented rule for every β.
BETAS = [0.0, 0.3, 0.9, 0.98, 0.999]


def _walk(n: int = 400, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n).cumsum() + 20.0


def _with_gaps(values: np.ndarray) -> np.ndarray:
    x = values.copy()
    x[[0, 1, 2, 9, 10, 11, 12, 13, 50, 51, 200, len(x) - 1]] = np.nan
    return x


@pytest.mark.parametrize("beta", BETAS)
def test_init_first_equals_pandas_adjust_false(beta: float) -> None:
    s = pd.Series(_walk(), index=pd.date_range("2024-01-01", periods=400), name="temp")
    got = ewa(s, beta, init="first")
    want = s.ewm(alpha=1 - beta, adjust=False).mean()
    pd.testing.assert_series_equal(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("beta", BETAS)
def test_bias_corrected_from_zero_equals_pandas_adjust_true(beta: float) -> None:
    s = pd.Series(_walk(seed=1), name="price")
    got = ewa(s, beta, bias_correction=True)
    want = s.ewm(alpha=1 - beta, adjust=True).mean()
    pd.testing.assert_series_equal(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("beta", BETAS)
def test_nan_handling_matches_pandas_ignore_na_false(beta: float) -> None:
    s = pd.Series(_with_gaps(_walk(seed=2)))
    plain = ewa(s, beta, init="first")
    corrected = ewa(s, beta, bias_correction=True)
    want_plain = s.ewm(alpha=1 - beta, adjust=False, ignore_na=False).mean()
    want_corrected = s.ewm(alpha=1 - beta, adjust=True, ignore_na=False).mean()
    pd.testing.assert_series_equal(plain, want_plain, rtol=1e-12, atol=0)
    pd.testing.assert_series_equal(corrected, want_corrected, rtol=1e-12, atol=0)
    # the leading NaNs stay NaN, a gap repeats the last value
    assert plain.iloc[:3].isna().all()
    assert (plain.iloc[9:14] == plain.iloc[8]).all()


def test_nan_gap_rule_by_hand() -> None:
    # x = [1, nan, nan, 5], β = 0.6: after g = 2 missing values the old average weighs β^3.
    b = 0.6
    v = (b**3 * 1.0 + (1 - b) * 5.0) / (b**3 + 1 - b)
    got = ewa(np.array([1.0, np.nan, np.nan, 5.0]), b, init="first")
    np.testing.assert_allclose(got, [1.0, 1.0, 1.0, v], rtol=1e-15)
    # bias corrected: Σ β^{t−i} x_i / Σ β^{t−i} over observed i (t = 4, observed i = 1, 4)
    w = (b**3 * 1.0 + 5.0) / (b**3 + 1.0)
    got = ewa(np.array([1.0, np.nan, np.nan, 5.0]), b, bias_correction=True)
    np.testing.assert_allclose(got, [1.0, 1.0, 1.0, w], rtol=1e-15)


def test_notes_walk_through() -> None:
    # seed notes: β = 0.9, v0 = 0, x1 = 30 → v1 = 3; x2 = 17 → v2 = 4.4.
    got = ewa(np.array([30.0, 17.0]), 0.9)
    np.testing.assert_allclose(got, [3.0, 4.4], rtol=1e-14)
    corrected = ewa(np.array([30.0, 17.0]), 0.9, bias_correction=True)
    np.testing.assert_allclose(corrected, [3.0 / 0.1, 4.4 / 0.19], rtol=1e-14)


def test_unrolled_sum_with_a_numeric_start() -> None:
    # v_t = (1−β) Σ_{k<t} β^k x_{t−k} + β^t v0
    x, b, v0 = _walk(30, seed=3), 0.8, -7.0
    want = [(1 - b) * sum(b**k * x[t - 1 - k] for k in range(t)) + b**t * v0 for t in range(1, 31)]
    np.testing.assert_allclose(ewa(x, b, init=v0), want, rtol=1e-12)


def test_several_betas_numpy_and_torch_add_a_leading_axis() -> None:
    x = np.stack([_walk(100, seed=s) for s in range(3)], axis=1)  # (100, 3)
    betas = [0.5, 0.9, 0.98]
    got = ewa(x, betas)
    assert got.shape == (3, 100, 3)
    frame = pd.DataFrame(x)
    for i, b in enumerate(betas):
        want = frame.ewm(alpha=1 - b, adjust=True).mean() * (1 - b ** np.arange(1, 101))[:, None]
        np.testing.assert_allclose(got[i], want.to_numpy(), rtol=1e-10)

    tensor = torch.tensor(x, dtype=torch.float32)
    out = ewa(tensor, betas, bias_correction=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.shape == (3, 100, 3)
    want64 = ewa(x, betas, bias_correction=True)
    np.testing.assert_allclose(out.numpy(), want64, rtol=1e-5)
    # one β keeps the input's shape; a one-element list still adds the axis
    assert ewa(tensor, 0.9).shape == (100, 3)
    assert ewa(tensor, [0.9]).shape == (1, 100, 3)


def test_torch_nan_handling_matches_pandas() -> None:
    x = _with_gaps(_walk(seed=4))
    got = ewa(torch.tensor(x), 0.9, init="first")
    want = pd.Series(x).ewm(alpha=0.1, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_pandas_shapes_and_names_are_kept() -> None:
    index = pd.date_range("2024-03-01", periods=50, name="date")
    s = pd.Series(_walk(50), index=index, name="temp")
    frame = ewa(s, [0.5, 0.9])
    assert list(frame.columns) == [0.5, 0.9] and frame.columns.name == "beta"
    assert frame.index.equals(index)
    pd.testing.assert_series_equal(frame[0.9], ewa(s, 0.9).rename(0.9))

    df = pd.DataFrame({"a": _walk(50, 1), "b": _walk(50, 2)}, index=index)
    df.columns.name = "station"
    one = ewa(df, 0.9, init="first")
    pd.testing.assert_frame_equal(one, df.ewm(alpha=0.1, adjust=False).mean(), rtol=1e-12)
    many = ewa(df, [0.5, 0.9])
    assert many.columns.names == ["beta", "station"]
    pd.testing.assert_frame_equal(many[0.9], ewa(df, 0.9))


def test_integer_input_becomes_float() -> None:
    got = ewa(np.array([10, 20, 30]), 0.5)
    np.testing.assert_allclose(got, [5.0, 12.5, 21.25])
    assert ewa(torch.tensor([10, 20, 30]), 0.5).dtype == torch.get_default_dtype()


def test_effective_window_and_bias_correction_factor() -> None:
    assert effective_window(0.9) == pytest.approx(10.0, rel=1e-12)
    assert effective_window(0.98) == pytest.approx(50.0, rel=1e-12)
    assert effective_window(0.0) == 1.0
    assert bias_correction_factor(0.9, 1) == pytest.approx(10.0, rel=1e-12)
    assert bias_correction_factor(0.9, 20) == pytest.approx(1 / (1 - 0.9**20), rel=1e-15)
    factors = bias_correction_factor(0.98, np.arange(1, 6))
    np.testing.assert_allclose(factors, 1 / (1 - 0.98 ** np.arange(1, 6)), rtol=1e-15)
    # multiplying the zero-started EWA by the factor gives the bias-corrected one
    x = _walk(20)
    np.testing.assert_allclose(
        ewa(x, 0.9) * bias_correction_factor(0.9, np.arange(1, 21)),
        ewa(x, 0.9, bias_correction=True),
        rtol=1e-12,
    )


@pytest.mark.parametrize("bad", [1.0, -0.1, math.nan, 1.5, "0.9", True])
def test_beta_out_of_range_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="beta"):
        ewa(np.ones(3), bad)
    with pytest.raises(ValueError, match="beta"):
        effective_window(bad)


def test_other_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"beta.*empty"):
        ewa(np.ones(3), [])
    with pytest.raises(ValueError, match="beta"):
        ewa(np.ones(3), [0.9, 1.0])
    with pytest.raises(ValueError, match="init"):
        ewa(np.ones(3), 0.9, init="last")
    with pytest.raises(ValueError, match="init"):
        ewa(np.ones(3), 0.9, init=math.inf)
    with pytest.raises(ValueError, match="init='zero'"):
        ewa(np.ones(3), 0.9, bias_correction=True, init="first")
    with pytest.raises(ValueError, match="numeric"):
        ewa(pd.Series(["a", "b"]), 0.9)
    with pytest.raises(ValueError, match="time axis"):
        ewa(np.float64(3.0), 0.9)
    with pytest.raises(ValueError, match="t must"):
        bias_correction_factor(0.9, 0)
