"""The worked examples of the tutorial notes, recomputed with descend.explain and descend.ewa.

Sources (in /work/shared/seeds/): "001:L" is line L of 001_389763dfab35ed3d.txt, "003:L" of
003_56adf969bcfea0be.readable.txt (same line numbers as the raw 003 file), "004:L" of
004_41e9d2e84a2920d0.txt.

Where a printed number is right, the test checks it to the precision it is printed with
(``printed``: within half a unit of its last digit). Where it is wrong, the test asserts the
correct value and a comment says which printed value it disagrees with and why. The correct
values written as literals were derived by hand (plain Python recurrences) and are checked
here against the optimizer's own trace, so the two derivations meet in these assertions.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import torch

from descend.ewa import bias_correction_factor, effective_window, ewa
from descend.explain import explain
from descend.optim import SGD

# 003:1948-1957, ten days of temperatures (°C).
TEMPERATURES = np.array([18, 23, 19, 20, 17, 21, 19, 18, 22, 20], dtype=float)
# 003:2339-2348, ten mini-batch gradients of one weight.
BATCH_GRADIENTS = [0.023, -0.018, 0.031, 0.012, -0.008, 0.025, 0.019, -0.005, 0.028, 0.015]
# 003:3287-3297, single-weight momentum example.
MOMENTUM_GRADIENTS = [0.08, 0.09, 0.07, 0.10, -0.02, 0.08, 0.09, 0.08, 0.11, 0.07]
# 003:5432-5443 (and the RMSprop example, 003:4559-4650), two weights: w₁ has frequent small
# gradients, w₂ rare large ones.
W1_GRADIENTS = [0.002, 0.0018, 0.0021, 0.0019, 0.0020, 0.0022, 0.0018, 0.0019, 0.0021, 0.0020]
W2_GRADIENTS = [0.0, 0.0, 2.5, 0.0, 0.0, 0.0, 3.1, 0.0, 0.0, 0.0]
TWO_WEIGHTS = np.array([W1_GRADIENTS, W2_GRADIENTS]).T


def printed(actual, text: str) -> None:
    """``actual`` rounds to the printed ``text``: |actual − text| ≤ ½ unit of its last digit."""
    value = Decimal(text)
    half_unit = 0.5 * 10.0 ** value.as_tuple().exponent
    actual = np.asarray(actual, dtype=float)
    assert np.all(np.abs(actual - float(value)) <= half_unit * (1 + 1e-9)), (actual, text)


def printed_all(actual, texts: list[str]) -> None:
    assert len(actual) == len(texts)
    for a, t in zip(list(actual), texts):
        printed(a, t)


def column(table: pd.DataFrame, name: str, element: int | None = None) -> np.ndarray:
    if element is not None:
        table = table[table["element"] == element]
    return table[name].to_numpy()


# -- exponentially weighted averages --------------------------------------------------------------
def test_seed001_ewa_walkthrough_and_windows() -> None:
    # 001:45: β = 0.9, v₀ = 0, x = 30, 17 → v₁ = 3, v₂ = 4.4.
    np.testing.assert_allclose(ewa([30.0, 17.0], 0.9), [3.0, 4.4], rtol=1e-14)
    # 001:55-57: the weight of x_{t−k} in v_t is (1 − β)β^k: the response to one impulse.
    impulse = ewa([1.0, 0.0, 0.0, 0.0, 0.0], 0.9)
    np.testing.assert_allclose(impulse, 0.1 * 0.9 ** np.arange(5), rtol=1e-14)
    # 001:51, 004:76-80, 003:2301: effective windows 1/(1 − β).
    assert effective_window(0.9) == pytest.approx(10)
    assert effective_window(0.5) == pytest.approx(2)
    assert effective_window(0.98) == pytest.approx(50)
    assert effective_window(0.99) == pytest.approx(100)  # 001:122


def test_temperature_ewa_beta_09_without_bias_correction() -> None:
    v = ewa(TEMPERATURES, 0.9)
    # independent reference: pandas' recursive ewm over the series with v₀ = 0 prepended
    reference = pd.Series([0.0, *TEMPERATURES]).ewm(alpha=0.1, adjust=False).mean()[1:]
    np.testing.assert_allclose(v, reference, rtol=1e-13)
    # 003:1972-2007, the walk-through of days 1-5, and the table 003:2012-2016: right.
    printed_all(v[:5], ["1.8", "3.92", "5.428", "6.8852", "7.89668"])
    printed_all((v - TEMPERATURES)[:5], ["-16.2", "-19.08", "-13.572", "-13.115", "-9.103"])
    # 003:2017-2021 print 9.40701, 10.36631, 11.12968, 12.21671, 12.99504 for days 6-10.
    # Wrong: day 6 adds 0.1 × 23 (day 2's temperature) instead of 0.1 × 21; 0.9 × 7.89668 +
    # 2.1 = 9.20701, and the slip carries through every later day.
    printed_all(v[5:], ["9.20701", "10.18631", "10.96768", "12.07091", "12.86382"])
    printed((v - TEMPERATURES)[5], "-11.793")  # printed -11.593
    slipped = TEMPERATURES.copy()
    slipped[5] = 23.0
    printed_all(ewa(slipped, 0.9)[5:], ["9.40701", "10.36631", "11.12968", "12.21671", "12.99504"])


def test_temperature_ewa_beta_098_without_bias_correction() -> None:
    v = ewa(TEMPERATURES, 0.98)
    # 003:2034-2038: days 1-5 right (1.8619 printed for day 5 truncates 1.861953).
    printed_all(v[:5], ["0.36", "0.8128", "1.1765", "1.5530", "1.8620"])
    # 003:2039-2043 print 2.2647, 2.5994, 2.8674, 3.2501, 3.5851 for days 6-10. Wrong: day 6
    # adds 0.02 × 22 instead of 0.02 × 21, and day 8 adds 0.02 × 16 instead of 0.02 × 18
    # (the later rows follow the recurrence from those values).
    printed_all(v[5:], ["2.2447", "2.5798", "2.8882", "3.2705", "3.6050"])
    slipped = TEMPERATURES.copy()
    slipped[5], slipped[7] = 22.0, 16.0
    printed_all(ewa(slipped, 0.98)[5:], ["2.2647", "2.5994", "2.8674", "3.2501", "3.5851"])
    # "Even worse! Larger β = slower warmup" (003:2045): every day is further below.
    assert np.all(v < ewa(TEMPERATURES, 0.9))


def test_sum_of_weights_and_expected_raw_average() -> None:
    # 003:2066-2075: the weights of v_t sum to 1 − β^t, i.e. the EWA of a sequence of ones.
    ones = ewa(np.ones(100), 0.9)
    printed_all(ones[[0, 1, 4, 9]], ["0.1", "0.19", "0.41", "0.65"])
    assert ones[99] == pytest.approx(1 - 0.9**100) and ones[99] > 0.9999
    # 003:2946-2953, E[v_t] = μ(1 − β^t) for a constant μ = 20 (the EWA of twenty-valued data).
    expected = ewa(np.full(10, 20.0), 0.9)
    printed_all(expected[[0, 1, 2, 4]], ["2.0", "3.8", "5.42", "8.2"])
    # 003:2953 prints 13.02 for t = 10: 20 × 0.651, with 1 − 0.9¹⁰ = 0.65132 rounded first;
    # 20 × 0.65132 = 13.026.
    printed(expected[9], "13.03")
    np.testing.assert_allclose(ewa(np.full(10, 20.0), 0.9, bias_correction=True), 20.0)


def test_temperature_ewa_with_bias_correction() -> None:
    corrected = ewa(TEMPERATURES, 0.9, bias_correction=True)
    # independent reference: pandas' default (adjust=True) ewm is the bias-corrected EWA
    np.testing.assert_allclose(corrected, pd.Series(TEMPERATURES).ewm(alpha=0.1).mean(), rtol=1e-13)
    running_mean = np.cumsum(TEMPERATURES) / np.arange(1, 11)
    # 003:2149-2151 and the detailed day 1 (003:2164-2178): right.
    printed_all(corrected[:3], ["18.0", "20.63", "20.03"])
    # 003:2152 prints 20.01 for day 4; 6.8852/0.3439 = 20.02 (even its own division by the
    # rounded 0.344 gives 20.015).
    printed(corrected[3], "20.02")
    # 003:2153 prints 19.26 for day 5 (7.897/0.410 with rounded inputs); the detailed day-5
    # calculation (003:2181-2199) gets it right: 7.89668/0.40951 = 19.28, 0.12 below 19.4.
    printed(corrected[4], "19.28")
    printed(1 - 0.9**5, "0.40951")
    printed(running_mean[4] - corrected[4], "0.12")
    # 003:2154-2158 print 20.06, 19.86, 19.52, 19.93, 19.96 for days 6-10: they divide the
    # raw averages that carry the day-6 slip (see the β = 0.9 test above).
    printed_all(corrected[5:], ["19.65", "19.53", "19.26", "19.71", "19.75"])
    # The "True avg" column of 003:2154-2158 prints 19.8, 19.7, 19.5, 19.8, 19.9 for days
    # 6-10; the means of the first 6…10 temperatures are 118/6, 137/7, 155/8, 177/9, 197/10.
    printed_all(
        running_mean,
        ["18.0", "20.5", "20.0", "20.0", "19.4"] + ["19.67", "19.57", "19.375", "19.67", "19.7"],
    )


def test_temperature_table_with_several_betas() -> None:
    # 003:2269-2280. The β = 0.5 column is not bias-corrected: it starts the average at the
    # first temperature (v₁ = x₁), and then every printed value is right. (Bias-corrected,
    # day 2 would be 21.3, not 20.5.)
    first = ewa(TEMPERATURES, 0.5, init="first")
    printed_all(
        first, ["18.0", "20.5", "19.8", "19.9", "18.4", "19.7", "19.4", "18.7", "20.3", "20.2"]
    )
    printed(ewa(TEMPERATURES, 0.5, bias_correction=True)[1], "21.3")
    # β = 0.9 corrected: days 1-5 right; 003:2276-2280 print 20.1, 19.9, 19.5, 19.9, 20.0
    # for days 6-10, inheriting the day-6 slip.
    printed_all(
        ewa(TEMPERATURES, 0.9, bias_correction=True),
        ["18.0", "20.6", "20.0", "20.0", "19.3", "19.6", "19.5", "19.3", "19.7", "19.8"],
    )
    # β = 0.98 corrected: 003:2272-2280 print 20.9, 20.6, 20.4, 19.9, 20.2, 19.9, 19.7, 20.1,
    # 20.0 for days 2-10, all too high. As β → 1 the bias-corrected weights β^{t−i}/Σβ^{t−i}
    # become uniform, so this column must hug the running mean (the "True Avg" column).
    corrected_098 = ewa(TEMPERATURES, 0.98, bias_correction=True)
    printed_all(
        corrected_098,
        ["18.0", "20.5", "20.0", "20.0", "19.4", "19.7", "19.6", "19.4", "19.7", "19.7"],
    )
    running_mean = np.cumsum(TEMPERATURES) / np.arange(1, 11)
    assert np.max(np.abs(corrected_098 - running_mean)) < 0.03
    # (Its "True Avg" column repeats the wrong 19.8, 19.7, 19.5, 19.8, 19.9 for days 6-10,
    # see the test above.)


def test_bias_correction_factors() -> None:
    """1/(1 − βᵗ), read from the optimizer core's own Adam trace (m̂/m and v̂/v)."""
    steps = 1000
    ones = np.ones(steps)
    factors = {}
    for b1, b2 in [(0.5, 0.9), (0.98, 0.999)]:
        table = explain(f"adam:beta1={b1},beta2={b2}", gradients=ones)
        factors[b1] = (table["first_moment_hat"] / table["first_moment"]).to_numpy()
        factors[b2] = (table["second_moment_hat"] / table["second_moment"]).to_numpy()
    for beta, f in factors.items():
        np.testing.assert_allclose(
            f, bias_correction_factor(beta, np.arange(1, steps + 1)), rtol=1e-10
        )

    def at(beta: float, t: int) -> float:
        return factors[beta][t - 1]

    # 003:2251-2257 (β = 0.9): ×10, ×2.4, ×1.5, ×1.14 (1 − 0.9²⁰ = 0.88), ≈ ×1.0 at day 50.
    printed_all([at(0.9, 1), at(0.9, 5), at(0.9, 10), at(0.9, 20)], ["10", "2.4", "1.5", "1.14"])
    printed(1 - 0.9**20, "0.88")
    printed(at(0.9, 50), "1.0")
    # 003:2461-2466: "1 − β²⁰ ≈ 0.878, factor ≈ 1.14".
    printed(1 - 0.9**20, "0.878")
    # 003:2510-2515, early steps t = 1, 5, 10.
    printed_all([at(0.5, 1), at(0.5, 5), at(0.5, 10)], ["2.0", "1.03", "1.0"])
    printed_all([at(0.9, 1), at(0.9, 5), at(0.9, 10)], ["10", "2.4", "1.5"])
    printed(at(0.98, 1), "50")
    # 003:2514 prints ×10.5 for β = 0.98, t = 5: 1/(1 − 0.98⁵) = 1/0.09608 = 10.41.
    printed(at(0.98, 5), "10.4")
    printed(at(0.98, 10), "5.5")
    printed_all([at(0.999, 1), at(0.999, 5), at(0.999, 10)], ["1000", "200", "100"])
    # 003:2521-2528, late steps t = 100, 500, 1000.
    for beta in (0.5, 0.9):
        printed_all([at(beta, 100), at(beta, 500), at(beta, 1000)], ["1.0", "1.0", "1.0"])
    # 003:2527 prints ×1.1 for β = 0.98, t = 100: 0.98¹⁰⁰ = 0.133, so ×1.153, i.e. ×1.2.
    printed_all([at(0.98, 100), at(0.98, 500), at(0.98, 1000)], ["1.2", "1.0", "1.0"])
    # 003:2528 prints ×1.6, ×1.0, ×1.0 for β = 0.999 at t = 100, 500, 1000. Wrong: 0.999¹⁰⁰
    # = 0.905, so the factor is still ×10.5 at t = 100, ×2.5 at 500 and ×1.6 at 1000 (the
    # printed t = 100 value is the t = 1000 one). Bias correction matters for Adam's β₂ for
    # thousands of steps, the opposite of the table's conclusion.
    printed_all([at(0.999, 100), at(0.999, 500), at(0.999, 1000)], ["10.5", "2.5", "1.6"])


def test_ewa_of_gradients_with_bias_correction() -> None:
    # 003:2371-2446: w = 0.25, α = 0.1, β = 0.9; v = βv + (1 − β)g, v̂ = v/(1 − βᵗ), w −= αv̂.
    # That is EMA momentum with debiasing. The core records the raw velocity; the update is
    # α·v̂, so v̂ = update/α.
    table = explain(
        "momentum-ema:lr=0.1,momentum=0.9,debias=true", gradients=BATCH_GRADIENTS, start=0.25
    )
    v, v_hat = table["velocity"].to_numpy(), table["update"].to_numpy() / 0.1
    # (003:2446 prints v₁₀ = 0.008404 where 0.9 × 0.0076718 + 0.0015 = 0.0084046: a slip in
    # the last digit.)
    printed_all(
        v,
        [
            "0.0023",
            "0.00027",
            "0.003343",
            "0.004209",
            "0.002988",
            "0.005189",
            "0.006570",
            "0.005413",
            "0.007672",
            "0.008405",
        ],
    )
    printed_all(
        v_hat,
        [
            "0.0230",
            "0.0014",
            "0.0123",
            "0.0122",
            "0.0073",
            "0.0111",
            "0.0126",
            "0.0095",
            "0.0125",
            "0.0129",
        ],
    )
    printed_all(v_hat[:3], ["0.023", "0.00142", "0.01234"])  # 003:2389, 2407, 2425
    printed_all(column(table, "new_param")[:3], ["0.2477", "0.247558", "0.246324"])


def test_effect_on_training_standard_gd_vs_ewa() -> None:
    # 003:2731-2770: the same four gradients, lr 0.1, from w = 0.25.
    plain = explain("sgd:lr=0.1", gradients=BATCH_GRADIENTS[:4], start=0.25)
    printed_all(plain["new_param"], ["0.2477", "0.2495", "0.2464", "0.2452"])
    printed(0.25 - plain["new_param"].iloc[-1], "0.0048")
    smoothed = explain("momentum-ema:lr=0.1,debias=true", gradients=BATCH_GRADIENTS[:4], start=0.25)
    v_hat = smoothed["update"].to_numpy() / 0.1
    printed_all(v_hat[:3], ["0.023", "0.0014", "0.0123"])
    printed_all(smoothed["new_param"][:3], ["0.2477", "0.2476", "0.2463"])
    # 003:2758 prints v̂ = 0.0118, w = 0.2452 at batch 4, and 003:2766 "0.0048 per 4 batches
    # (same endpoint!)". Wrong: v̂₄ = 0.0042087/0.3439 = 0.0122 (as the note's own table at
    # 003:2440 says), so w = 0.24632 − 0.00122 = 0.2451 and the progress is 0.0049.
    printed(v_hat[3], "0.0122")
    printed(smoothed["new_param"].iloc[3], "0.2451")
    printed(0.25 - smoothed["new_param"].iloc[3], "0.0049")


# -- momentum ------------------------------------------------------------------------------------
def test_single_weight_momentum_ema_form() -> None:
    # 003:3326-3378: v = βv + (1 − β)g, w −= αv with α = 0.1, β = 0.9, w₀ = 0.5.
    table = explain("momentum-ema:lr=0.1,momentum=0.9", gradients=MOMENTUM_GRADIENTS, start=0.5)
    v, w = column(table, "velocity"), column(table, "new_param")
    printed_all(v[:6], ["0.008", "0.0162", "0.02158", "0.029422", "0.0244798", "0.03003182"])
    printed_all(w[:4], ["0.4992", "0.49758", "0.495422", "0.492480"])
    # 003:3368 prints w = 0.492480 − 0.1 × 0.0244798 = 0.489932: a subtraction slip, the
    # difference is 0.490032. 003:3377 then prints 0.486929 from it; correct 0.487029.
    printed_all(w[4:6], ["0.490032", "0.487029"])
    # After 10 batches this form has moved w by only 0.0303, less than plain GD's 0.075
    # (003:3317): the EMA velocity starts at (1 − β)g and is an average, not a sum.
    printed(0.5 - w[-1], "0.0303")


def test_single_weight_momentum_modern_form_and_plain_gd() -> None:
    # 003:3304-3316, plain GD with α = 0.1: all right.
    plain = explain("sgd:lr=0.1", gradients=MOMENTUM_GRADIENTS, start=0.5)
    printed_all(
        plain["new_param"],
        ["0.492", "0.483", "0.476", "0.466", "0.468", "0.460", "0.451", "0.443", "0.432", "0.425"],
    )
    # 003:3382-3397. Although it follows the EMA walk-through, this table uses the other
    # form, v = βv + g (003:3666-3671, torch's SGD): its first row moves w to 0.492, not the
    # walk-through's 0.4992. In that form every printed number is right.
    table = explain("momentum:lr=0.1,momentum=0.9", gradients=MOMENTUM_GRADIENTS, start=0.5)
    printed_all(
        table["velocity"],
        [
            "0.08",
            "0.162",
            "0.2158",
            "0.29422",
            "0.2448",
            "0.30032",
            "0.36029",
            "0.40426",
            "0.47383",
            "0.49645",
        ],
    )
    printed_all(
        table["update"],
        [
            "0.008",
            "0.0162",
            "0.02158",
            "0.029422",
            "0.02448",
            "0.030032",
            "0.036029",
            "0.040426",
            "0.047383",
            "0.049645",
        ],
    )
    printed_all(
        table["new_param"],
        [
            "0.492",
            "0.4758",
            "0.45422",
            "0.42480",
            "0.40032",
            "0.37029",
            "0.33426",
            "0.29383",
            "0.24645",
            "0.19680",
        ],
    )
    # "4× more progress than standard GD" (003:3397): 0.303/0.075.
    progress = (0.5 - table["new_param"].iloc[-1]) / (0.5 - plain["new_param"].iloc[-1])
    printed(progress, "4.0")


def test_cat_vs_dog_single_weight() -> None:
    # 003:3486-3572, one weight from 0.25 with lr 0.1 and six printed gradients.
    grads = [0.0234, -0.0187, 0.0312, 0.0145, -0.0089, 0.0256]
    plain = explain("sgd:lr=0.1", gradients=grads, start=0.25)
    printed_all(
        plain["new_param"], ["0.24766", "0.24953", "0.24641", "0.24496", "0.24585", "0.24329"]
    )
    table = explain("momentum:lr=0.1,momentum=0.9", gradients=grads, start=0.25)
    printed_all(table["velocity"][:5], ["0.0234", "0.00236", "0.033324", "0.0444916", "0.03114244"])
    printed(table["velocity"].iloc[5], "0.0536")
    printed_all(table["new_param"][:5], ["0.24766", "0.24742", "0.24409", "0.23964", "0.23653"])
    printed(table["new_param"].iloc[5], "0.23117")  # 003:3567


def test_ravine_velocities_per_coordinate() -> None:
    # 003:3915-3930, two coordinates, v = βv + g (the lr does not enter the velocity). The
    # "after 100 batches" figures (003:3910-3912, 003:3933-3935) depend on gradients and a
    # learning rate the note does not give.
    grads = [[0.01, 5.0], [0.01, -4.8], [0.01, 4.9]]
    table = explain("momentum:lr=0.01,momentum=0.9", gradients=grads)
    printed_all(column(table, "velocity", element=0), ["0.01", "0.019", "0.0271"])
    # 003:3925 prints v_w₂ = 0.9×5.0 − 4.8 = 0.7 ("dampened!"): 4.5 − 4.8 is −0.3, so the
    # velocity even flips sign. 003:3929 then prints 0.9×0.7 + 4.9 = 5.53; from −0.3 it is
    # 0.9×(−0.3) + 4.9 = 4.63.
    printed_all(column(table, "velocity", element=1), ["5.0", "-0.3", "4.63"])


# -- Nesterov ------------------------------------------------------------------------------------
def test_nesterov_lookahead_example_by_change_of_variables() -> None:
    """003:3997-4030: w = 0.10, v = −0.08, α = 0.1, β = 0.9.

    The note's Nesterov (003:3970-3972) evaluates the gradient at the look-ahead point:
    v_t = βv_{t−1} + ∇L(w_t − αβv_{t−1}), w_{t+1} = w_t − αv_t. The frameworks' Nesterov
    (torch, and descend's SGD(nesterov=True)) needs only ∇L at its own parameter, because its
    parameter *is* the look-ahead point: with p_t = w_t − αβv_{t−1} and the same buffer v,
    p_{t+1} = p_t − α(g + βv_t) with g = ∇L(p_t). So the test starts the optimizer at
    p = 0.10 − 0.1·0.9·(−0.08) = 0.1072 with momentum_buffer = −0.08, feeds the gradient the
    note evaluates there (−0.03), and maps back with w = p + αβv.

    The arithmetic of the example is right. Its setup is not self-consistent, which the test
    cannot check but should be said: with w ← w − αv a velocity of −0.08 moves w *right*,
    away from the minimum at 0 (hence the look-ahead at 0.1072 > 0.10, not "toward the
    minimum"), and a bowl with its minimum at 0 has a positive gradient at every w > 0 (it is
    0.05 at 0.10), so ∇L(0.1072) = −0.03 cannot come from such a loss: the gradients are
    illustrative inputs, replayed here as given.
    """
    # Standard momentum (003:4009-4014): v = 0.9·(−0.08) + 0.05 = −0.022, w = 0.1022.
    p = torch.nn.Parameter(torch.tensor(0.10, dtype=torch.float64))
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.state[p]["momentum_buffer"] = torch.tensor(-0.08, dtype=torch.float64)
    table = explain(opt, gradients=[0.05])
    printed(table["velocity"].iloc[0], "-0.022")
    printed(table["new_param"].iloc[0], "0.1022")

    # Nesterov (003:4018-4026), in torch's variables.
    lookahead = 0.10 - 0.1 * 0.9 * (-0.08)
    printed(lookahead, "0.1072")
    p = torch.nn.Parameter(torch.tensor(lookahead, dtype=torch.float64))
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    opt.state[p]["momentum_buffer"] = torch.tensor(-0.08, dtype=torch.float64)
    table = explain(opt, gradients=[-0.03])
    v = table["velocity"].iloc[0]
    printed(v, "-0.102")
    printed(table["new_param"].iloc[0] + 0.1 * 0.9 * v, "0.1102")

    # Seed 001's form (001:199-209: v = βv + η∇L(w − βv), w −= v) is momentum_form=
    # "lr_inside": its velocity is α times seed 003's, and p = w − βv.
    p = torch.nn.Parameter(torch.tensor(0.10 - 0.9 * (-0.008), dtype=torch.float64))
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=True, momentum_form="lr_inside")
    opt.state[p]["momentum_buffer"] = torch.tensor(-0.008, dtype=torch.float64)
    table = explain(opt, gradients=[-0.03])
    v = table["velocity"].iloc[0]
    printed(v, "-0.0102")
    printed(table["new_param"].iloc[0] + 0.9 * v, "0.1102")


def test_nesterov_lookahead_loop_equals_framework_form_over_many_steps() -> None:
    """The change of variables holds step after step: a closure that evaluates ∇L at the
    note's look-ahead point (003:3970-3972 and 001:205-209) against descend's Nesterov."""

    def grad(w: float) -> float:  # double well (w² − 1)²
        return 4 * w**3 - 4 * w

    lr, beta, w0, steps = 0.05, 0.9, -0.3, 15
    table = explain("nesterov:lr=0.05,momentum=0.9", function="double-well", steps=steps, start=w0)
    inside = explain(
        "nesterov:momentum_form=lr_inside,lr=0.05,momentum=0.9",
        function="double-well",
        steps=steps,
        start=w0,
    )
    w, v = w0, 0.0  # seed 003: v = βv + ∇L(w − αβv), w −= αv
    w1, v1 = w0, 0.0  # seed 001: v = βv + η∇L(w − βv), w −= v
    for t in range(steps):
        v = beta * v + grad(w - lr * beta * v)
        w -= lr * v
        v1 = beta * v1 + lr * grad(w1 - beta * v1)
        w1 -= v1
        p, buf = table["new_param"].iloc[t], table["velocity"].iloc[t]
        assert buf == pytest.approx(v, rel=1e-12)
        assert p + lr * beta * buf == pytest.approx(w, rel=1e-12)
        p, buf = inside["new_param"].iloc[t], inside["velocity"].iloc[t]
        assert buf == pytest.approx(v1, rel=1e-12)
        assert p + beta * buf == pytest.approx(w1, rel=1e-12)
    assert w == pytest.approx(w1, rel=1e-12)  # the two notes' forms agree at constant lr


# -- RMSprop -------------------------------------------------------------------------------------
def test_rmsprop_beta_09_first_batch() -> None:
    # 003:4544-4600: α = 0.1, β = 0.9, ε = 1e-8, gradients (0.002, 0) from (0.5, 0.5).
    table = explain(
        "rmsprop:lr=0.1,alpha=0.9,eps=1e-8", gradients=TWO_WEIGHTS[:1], start=[0.5, 0.5]
    )
    printed(column(table, "second_moment", 0), "0.0000004")
    printed(column(table, "denominator", 0), "0.000632")
    # 003:4586 prints an effective lr of 158.2 and 003:4590 w₁ = 0.1836: both from rounding
    # √4e-7 = 0.00063246 to 0.000632 before dividing. 0.1/0.00063247 = 158.11 and
    # w₁ = 0.5 − 158.11 × 0.002 = 0.18378.
    printed(column(table, "effective_lr", 0), "158.11")
    printed(column(table, "new_param", 0), "0.18378")
    # w₂: effective lr 0.1/(0 + 1e-8) = 10,000,000, but g = 0 so w₂ stays (003:4592-4600).
    printed(column(table, "effective_lr", 1), "10000000")
    assert column(table, "new_param", 1)[0] == 0.5


def test_rmsprop_beta_0999_bias_corrected_walkthrough() -> None:
    # 003:4604-4676: α = 0.001, β = 0.999, bias-corrected ŝ = s/(1 − βᵗ). The note writes ε
    # inside the root at batch 1 and drops it afterwards; ε = 1e-8 outside (the algorithm of
    # 003:4502) changes w by < 2e-6, below the printed precision except where stated.
    table = explain(
        "rmsprop:lr=0.001,alpha=0.999,eps=1e-8,bias_correction=true",
        gradients=TWO_WEIGHTS[:3],
        start=[0.5, 0.5],
    )
    s1, s_hat1 = column(table, "second_moment", 0), column(table, "second_moment_hat", 0)
    w1, w2 = column(table, "new_param", 0), column(table, "new_param", 1)
    printed(s1[0], "0.000000004")
    printed(s_hat1[0], "0.000004")
    printed(w1[0], "0.499")
    # 003:4633-4635 print s₁ = 0.0000000039996 + 0.00000000324 = 0.0000000072396 at batch 2:
    # 0.999 × 4e-9 is 3.996e-9, so s₁ = 7.236e-9 (Adam's walk-through, 003:5544, has it right).
    assert s1[1] == pytest.approx(7.236e-9, rel=1e-12)
    printed(s_hat1[1], "0.0000036")
    printed(w1[1], "0.498054")  # printed 0.498053 (with ŝ rounded to 0.0000036)
    printed(column(table, "second_moment", 1)[2], "0.00625")
    # 003:4658 prints ŝ₂ = 0.00625/0.002997 = 2.086; the quotient is 2.0854.
    printed(column(table, "second_moment_hat", 1)[2], "2.085")
    printed(0.001 / column(table, "denominator", 1)[2], "0.000692")
    printed(w2[2], "0.49827")
    # 003:4661-4662 print an effective lr of 9.27 and w₁ = 0.478553 at batch 3, and 003:4671
    # concludes "w₁ effective LR ≈ 9.27 (boosted!)". Wrong: that divides by the raw
    # √s₁ = 0.0001079 although batches 1-2, and w₂ in the same batch, use the bias-corrected
    # ŝ. With ŝ₁ = 1.16388e-8/0.002997 = 3.8835e-6 the effective lr is 0.001/0.0019707 = 0.507
    # and w₁ = 0.498054 − 0.507 × 0.0021 = 0.496988.
    printed(column(table, "effective_lr", 0)[2], "0.507")
    printed(w1[2], "0.496988")


def test_rmsprop_ten_batch_tables() -> None:
    # 003:4685-4700, plain GD with α = 0.001: right.
    plain = explain("sgd:lr=0.001", gradients=TWO_WEIGHTS, start=[0.5, 0.5])
    printed_all(
        column(plain, "new_param", 0)[[0, 1, 2, 9]],
        ["0.499998", "0.499996", "0.499994", "0.499980"],
    )
    printed_all(column(plain, "new_param", 1)[[2, 6, 9]], ["0.4975", "0.49440", "0.49440"])
    # 003:4713-4740, "RMSprop (α = 0.001, β = 0.999)", prints w₁ = 0.499 … 0.4950 and
    # w₂ = 0.4990 … 0.49822. Neither the algorithm the note states (003:4498-4502,
    # s = βs + (1 − β)g², no bias correction) nor its bias-corrected walk-through gives that:
    stated = explain(
        "rmsprop:lr=0.001,alpha=0.999,eps=1e-8", gradients=TWO_WEIGHTS, start=[0.5, 0.5]
    )
    # without bias correction the first step is α·g/√((1 − β)g²) = α/√(1 − β) ≈ 0.0316 and
    # the next ones stay above 0.01: w₁ ends at 0.3407
    printed(column(stated, "new_param", 0)[9], "0.3407")
    printed(column(stated, "new_param", 1)[9], "0.4437")
    corrected = explain(
        "rmsprop:lr=0.001,alpha=0.999,eps=1e-8,bias_correction=true",
        gradients=TWO_WEIGHTS,
        start=[0.5, 0.5],
    )
    printed(column(corrected, "new_param", 0)[9], "0.48995")
    printed(column(corrected, "new_param", 1)[9], "0.49621")
    # The printed table is an accumulator without the (1 − β) factor, s = βs + g² (its s₁
    # column 0.000004, 0.000007, 0.000011, … is nearly Σg²). That equals standard RMSprop
    # with lr α√(1 − β) and ε√(1 − β), which reproduces the table's w and s columns; its
    # "Eff LR" column is α/√s. Two rounding slips remain: 0.38 and 0.30 (batches 2, 3) are
    # 0.372 and 0.293, and w₁ at batch 5 is 0.4968, printed 0.4967.
    k = (1 - 0.999) ** 0.5
    table = explain(
        f"rmsprop:lr={0.001 * k},alpha=0.999,eps={1e-8 * k}",
        gradients=TWO_WEIGHTS,
        start=[0.5, 0.5],
    )
    s = {e: column(table, "second_moment", e) / (1 - 0.999) for e in (0, 1)}
    w = {e: column(table, "new_param", e) for e in (0, 1)}
    # (003:4719 prints s₁ = 0.000011 at batch 3, truncating 1.164e-5.)
    printed_all(
        s[0],
        [
            "0.000004",
            "0.000007",
            "0.000012",
            "0.000015",
            "0.000019",
            "0.000024",
            "0.000027",
            "0.000031",
            "0.000035",
            "0.000039",
        ],
    )
    # (15.83 at batch 7 truncates 0.999⁴ × 6.25 + 3.1² = 15.835.)
    printed_all(s[1][[2, 3, 4, 6]], ["6.25", "6.244", "6.238", "15.84"])
    printed_all(
        w[0],
        [
            "0.499",
            "0.4983",
            "0.4977",
            "0.4972",
            "0.4968",
            "0.4963",
            "0.4960",
            "0.4956",
            "0.4953",
            "0.4950",
        ],
    )
    printed_all(w[1][[2, 6, 9]], ["0.4990", "0.49822", "0.49822"])
    eff = 0.001 / np.sqrt(s[0])
    printed_all(
        eff, ["0.5", "0.37", "0.29", "0.26", "0.23", "0.20", "0.19", "0.18", "0.17", "0.16"]
    )


# -- Adam ----------------------------------------------------------------------------------------
def test_adam_two_weights_walkthrough() -> None:
    # 003:5412-5666: α = 0.001, β₁ = 0.9, β₂ = 0.999, ε = 1e-8, both weights from 0.5.
    table = explain(
        "adam:lr=0.001,beta1=0.9,beta2=0.999,eps=1e-8", gradients=TWO_WEIGHTS, start=[0.5, 0.5]
    )
    one, two = table[table.element == 0], table[table.element == 1]
    # Batch 1 (003:5447-5518): all right.
    printed(one["first_moment"].iloc[0], "0.0002")
    printed(one["second_moment"].iloc[0], "0.000000004")
    printed(one["first_moment_hat"].iloc[0], "0.002")
    printed(one["second_moment_hat"].iloc[0], "0.000004")
    printed(one["update"].iloc[0], "0.001")
    printed(one["new_param"].iloc[0], "0.499")
    assert two["update"].iloc[0] == 0 and two["new_param"].iloc[0] == 0.5
    # Batch 2 (003:5520-5580).
    printed(one["first_moment"].iloc[1], "0.00036")
    assert one["second_moment"].iloc[1] == pytest.approx(7.236e-9, rel=1e-12)
    printed(one["first_moment_hat"].iloc[1], "0.001895")
    printed(one["second_moment_hat"].iloc[1], "0.0000036")
    printed(0.001 / one["denominator"].iloc[1], "0.526")
    # 003:5570-5574 print a step of 0.000997 and w₁ = 0.498003, from √v̂ rounded to 0.0019;
    # 0.001 × 0.0018947/0.0019026 = 0.00099587, so w₁ = 0.498004.
    printed(one["update"].iloc[1], "0.000996")
    printed(one["new_param"].iloc[1], "0.498004")
    # Batch 3 (003:5582-5646).
    printed(one["first_moment"].iloc[2], "0.000534")
    printed(one["second_moment"].iloc[2], "0.00000001164")
    printed(one["first_moment_hat"].iloc[2], "0.00197")
    printed(one["second_moment_hat"].iloc[2], "0.0000039")
    # 003:5633-5639 print √v̂ + ε = 0.001975, a step of 0.000997 and w₁ = 0.497006: √3.8835e-6
    # is 0.0019707 (0.001975 is √3.9e-6, the rounded v̂), so the step is 0.0019705/0.0019707 ×
    # 0.001 = 0.00099991 and w₁ = 0.497004.
    printed(one["denominator"].iloc[2], "0.0019707")
    printed(one["update"].iloc[2], "0.00099991")
    printed(one["new_param"].iloc[2], "0.497004")
    printed(two["first_moment"].iloc[2], "0.25")
    printed(two["second_moment"].iloc[2], "0.00625")
    printed(two["first_moment_hat"].iloc[2], "0.9225")
    printed(two["second_moment_hat"].iloc[2], "2.085")  # printed 2.086, as in RMSprop's
    printed(0.001 / two["denominator"].iloc[2], "0.000692")
    printed(two["update"].iloc[2], "0.000639")  # 0.00063881; printed 0.000638 (rounded factors)
    printed(two["new_param"].iloc[2], "0.499361")  # printed 0.499362, from the rounded step


def test_adam_two_weights_ten_batch_tables() -> None:
    table = explain(
        "adam:lr=0.001,beta1=0.9,beta2=0.999,eps=1e-8", gradients=TWO_WEIGHTS, start=[0.5, 0.5]
    )
    one, two = table[table.element == 0], table[table.element == 1]
    # w₁ table (003:5672-5686): the w₁ column and the ≈ 0.001 updates are right. The m₁
    # column prints 0.000944, 0.001030, 0.001117, 0.001215, 0.001294 for batches 6-10, one
    # unit high in the last digit from carrying rounded values forward (0.9 × 0.000804 +
    # 0.00022 = 0.0009436, where the unrounded m₅ = 0.00080354 gives 0.00094319).
    printed_all(
        one["first_moment"],
        [
            "0.0002",
            "0.00036",
            "0.000534",
            "0.000671",
            "0.000804",
            "0.000943",
            "0.001029",
            "0.001116",
            "0.001214",
            "0.001293",
        ],
    )
    printed_all(
        one["new_param"],
        ["0.499", "0.498", "0.497", "0.496", "0.495", "0.494", "0.493", "0.492", "0.491", "0.490"],
    )
    printed_all(one["update"], ["0.001"] * 10)
    # Its v̂₁ column grows 4.4e-6 … 5.9e-6 from batch 4 and its "Eff LR" column falls
    # 0.476 … 0.412 ("adapted from 0.5 → 0.41 as variance stabilized", 003:5690). Wrong: the
    # gradients stay ≈ 0.002, so v̂₁ stays ≈ mean g² ≈ 3.9e-6 and α/(√v̂₁ + ε) stays ≈ 0.51.
    printed_all(
        one["second_moment_hat"][3:],
        ["0.0000038", "0.0000039", "0.0000040", "0.0000039", "0.0000039", "0.0000039", "0.0000039"],
    )
    eff = 0.001 / one["denominator"]
    assert np.all((eff > 0.49) & (eff < 0.53))
    # w₂ table (003:5697-5716): the m₂ column is right up to carried rounding (0.4741 and
    # 0.4267 are printed for 0.474025 and 0.4266225).
    printed_all(
        two["first_moment"][2:],
        ["0.25", "0.225", "0.2025", "0.1823", "0.4740", "0.4266", "0.3840", "0.3456"],
    )
    # Its v̂₂ column prints 1.810, 1.527, 1.273, 3.030, 2.811, 2.567, 2.348 for batches 4-10;
    # v̂₂ = v₂/(1 − 0.999ᵗ) = 0.0062438/0.003994 = 1.563 at batch 4, and so on.
    printed_all(
        two["second_moment_hat"][3:],
        ["1.563", "1.250", "1.041", "2.269", "1.984", "1.763", "1.586"],
    )
    # It also prints an update of 0 whenever ∇w₂ = 0 ("Only updated when gradients fired",
    # 003:5713), ending at w₂ = 0.498836. Wrong: Adam steps with m̂₂, which stays far from 0
    # after a spike, so w₂ keeps moving every batch (that is what the momentum is for) and
    # ends at 0.495986. The batch-7 update is 0.000603, printed 0.000526.
    assert np.all(two["update"].iloc[2:] > 3e-4)
    printed(two["update"].iloc[6], "0.000603")
    printed(two["new_param"].iloc[9], "0.495986")


def test_adam_bias_correction_constant_gradient() -> None:
    # 003:6340-6410: a constant gradient 0.02, α = 0.001, β₁ = 0.9, β₂ = 0.999.
    with_bc = explain("adam:lr=0.001", gradients=[0.02, 0.02])
    without = explain("adam:lr=0.001,bias_correction=false", gradients=[0.02, 0.02])
    printed_all(with_bc["first_moment"], ["0.002", "0.0038"])
    printed_all(with_bc["first_moment_hat"], ["0.02", "0.02"])
    printed_all(with_bc["second_moment"], ["0.0000004", "0.0000008"])
    printed_all(with_bc["second_moment_hat"], ["0.0004", "0.0004"])
    printed(with_bc["update"].iloc[0], "0.001")
    # without correction: α/√v₁ × m₁ = 0.001/0.000632 × 0.002 = 1.58 × 0.002 = 0.00316
    printed(without["denominator"].iloc[0], "0.000632")
    printed(0.001 / without["denominator"].iloc[0], "1.58")
    printed(without["update"].iloc[0], "0.00316")


def test_detailed_numerical_comparison_of_four_optimizers() -> None:
    """003:5964-6046: one weight from 0.5, α = 0.001, gradients 0.023, −0.018, 0.031 printed
    for iterations 1-3 (the batch gradients of 003:2339-2341). The later iterations are not
    printed; the test assumes the same ten batch gradients of 003:2339-2350 for iteration 10."""
    runs = {
        "sgd": explain("sgd:lr=0.001", gradients=BATCH_GRADIENTS, start=0.5),
        "momentum": explain(
            "momentum-ema:lr=0.001,momentum=0.9", gradients=BATCH_GRADIENTS, start=0.5
        ),
        "rmsprop": explain("rmsprop:lr=0.001,alpha=0.999", gradients=BATCH_GRADIENTS, start=0.5),
        "adam": explain("adam:lr=0.001", gradients=BATCH_GRADIENTS, start=0.5),
    }
    w = {name: table["new_param"].to_numpy() for name, table in runs.items()}
    # Standard GD (003:5980-5982) prints 0.49977, 0.49995, 0.49964: 0.001 × 0.023 is
    # 0.000023, not 0.00023 (every step is ten times too large).
    printed_all(w["sgd"][:3], ["0.499977", "0.499995", "0.499964"])
    # Momentum (003:5995) prints m = 0.002, w = 0.498 at iteration 1: m = 0.1 × 0.023 = 0.0023
    # and w = 0.5 − 0.001 × 0.0023 = 0.4999977 (0.499977 in the v = βv + g form: neither
    # moves w by 0.002).
    printed(runs["momentum"]["velocity"].iloc[0], "0.0023")
    printed(w["momentum"][0], "0.4999977")
    # RMSprop (003:6010): s = 5.3e-7 and eff_lr = 1.37 are right, w = 0.497 is not:
    # the step is 1.375 × 0.023 = 0.0316, so w = 0.4684.
    printed(runs["rmsprop"]["second_moment"].iloc[0], "5.3e-7")
    printed(runs["rmsprop"]["effective_lr"].iloc[0], "1.37")
    printed(w["rmsprop"][0], "0.4684")
    # Adam (003:6025-6027). Iteration 1 is right (m̂ = 0.023 printed as 0.02).
    adam = runs["adam"]
    printed(adam["second_moment"].iloc[0], "5.3e-7")
    printed(adam["second_moment_hat"].iloc[0], "5.3e-4")
    printed(w["adam"][0], "0.499")
    # Iterations 2-3 print v = 1.0e-6, 1.6e-6, v̂ = 5.0e-4, 5.3e-4, m̂ = 0.011 and
    # w = 0.498, 0.487. Correct: v₂ = 0.999 × 5.29e-7 + 0.001 × 3.24e-4 = 8.5e-7,
    # v̂₂ = 4.3e-4, v₃ = 1.8e-6, v̂₃ = 6.0e-4, m̂₃ = 0.003343/0.271 = 0.0123; and an Adam
    # step is at most about α(1 − β₁)/√(1 − β₂) ≈ 3.2α (Kingma & Ba 2015, §2.1), so w cannot
    # fall by 0.011 in one step: w₂ = 0.49893, w₃ = 0.49843.
    printed_all(adam["second_moment"][1:3], ["8.5e-7", "1.8e-6"])
    printed_all(adam["second_moment_hat"][1:3], ["4.3e-4", "6.0e-4"])
    printed(adam["first_moment_hat"].iloc[2], "0.0123")
    printed_all(w["adam"][1:3], ["0.49893", "0.49843"])
    # Iteration 10 (under the stated assumption) prints 0.4985, 0.478, 0.471, 0.455 and the
    # table 003:6037-6046 ranks them 1×, 15×, 19×, 30×. The algorithms give changes of
    # 0.000122 (GD), 0.0000464 (EMA momentum, slower than GD while its average warms up),
    # 0.0834 (RMSprop without bias correction, whose first steps are α/√(1 − β) ≈ 0.03) and
    # 0.00536 (Adam).
    change = {name: 0.5 - path[-1] for name, path in w.items()}
    printed(change["sgd"], "0.000122")
    printed(change["momentum"], "0.0000464")
    printed(change["rmsprop"], "0.0834")
    printed(change["adam"], "0.00536")
