"""descend.explain and `descend explain`: the tables hold the optimizer's own intermediates.

References are independent of descend: torch.optim trajectories, recurrences written out
here, closed-form gradients, and pandas for reading the rendered CSV/Markdown back.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import torch

import descend.explain as explain_module
from descend.cli import main
from descend.cli.explain import HYPERPARAMETERS, more_options, parse_gradients
from descend.explain import COLUMNS, explain, render
from descend.optim import SGD, Adam
from descend.optim.spec import REGISTRY

GRADS = [0.02, 0.01, -0.03, 0.5, -0.2]
VECTOR_GRADS = [[0.01, 5.0, -1.0], [0.01, -4.8, 2.0], [0.02, 4.9, 0.5], [-0.01, -3.0, 0.0]]


def _adam_by_hand(grads, lr, b1, b2, eps, theta=0.0):
    """Kingma & Ba's Algorithm 1, one scalar, written out."""
    m = v = 0.0
    rows = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        denom = math.sqrt(v_hat) + eps
        u = lr * m_hat / denom
        theta -= u
        rows.append((g, m, v, m_hat, v_hat, denom, lr / ((1 - b1**t) * denom), u, theta))
    return rows


def test_adam_table_is_the_recurrence_with_documented_columns() -> None:
    table = explain("adam:lr=0.01,beta2=0.99", gradients=GRADS, start=0.3)
    assert list(table.columns) == [
        "step",
        "gradient",
        "first_moment",
        "second_moment",
        "first_moment_hat",
        "second_moment_hat",
        "denominator",
        "effective_lr",
        "update",
        "new_param",
    ]
    want = np.array(_adam_by_hand(GRADS, lr=0.01, b1=0.9, b2=0.99, eps=1e-8, theta=0.3))
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), want, rtol=1e-12, atol=1e-15)
    assert table["step"].tolist() == [1, 2, 3, 4, 5]
    assert table.attrs["optimizer"] == "adam"
    assert table.attrs["hyperparameters"]["betas"] == (0.9, 0.99)
    assert table.attrs["start"] == [0.3]


def test_parameter_path_matches_torch_optim_for_every_torch_optimizer() -> None:
    cases = {
        "sgd:lr=0.1": (torch.optim.SGD, dict(lr=0.1)),
        "momentum:lr=0.1,dampening=0.3": (
            torch.optim.SGD,
            dict(lr=0.1, momentum=0.9, dampening=0.3),
        ),
        "nesterov:lr=0.05": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
        "adagrad:lr=0.1": (torch.optim.Adagrad, dict(lr=0.1)),
        "rmsprop:lr=0.01": (torch.optim.RMSprop, dict(lr=0.01)),
        "rmsprop-centered:lr=0.01,momentum=0.5": (
            torch.optim.RMSprop,
            dict(lr=0.01, centered=True, momentum=0.5),
        ),
        "adamw:lr=0.01,weight_decay=0.1": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
        "amsgrad:lr=0.01": (torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
        "nadam:lr=0.01": (torch.optim.NAdam, dict(lr=0.01)),
    }
    grads = torch.tensor(VECTOR_GRADS, dtype=torch.float64)
    start = [0.5, -1.0, 2.0]
    for spec, (cls, kwargs) in cases.items():
        table = explain(spec, gradients=grads, start=start)
        p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        opt = cls([p], **kwargs)
        path = []
        for g in grads:
            p.grad = g.clone()
            opt.step()
            path.append(p.detach().clone())
        got = table.pivot(index="step", columns="element", values="new_param").to_numpy()
        np.testing.assert_allclose(got, torch.stack(path).numpy(), rtol=1e-12, err_msg=spec)


def test_vector_rows_are_step_major_with_element_index() -> None:
    table = explain("momentum:lr=1.0", gradients=VECTOR_GRADS)
    assert len(table) == 4 * 3
    assert table["step"].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert table["element"].tolist() == [0, 1, 2] * 4
    # heavy ball by hand, element 1: v₁ = g₁, v_t = 0.9 v + g_t
    v, velocities = None, []
    for g in np.array(VECTOR_GRADS)[:, 1]:
        v = g if v is None else 0.9 * v + g
        velocities.append(v)
    np.testing.assert_allclose(table[table.element == 1]["velocity"], velocities, rtol=1e-13)


def test_effective_lr_times_moment_is_the_update() -> None:
    """The documented meaning of effective_lr, for each family."""
    for spec, moment in [
        ("adam:lr=0.01", "first_moment"),
        ("adamw:lr=0.01,weight_decay=0", "first_moment"),
        ("amsgrad:lr=0.01", "first_moment"),
        ("adam:lr=0.01,eps_placement=hat", "first_moment"),
        ("nadam:lr=0.01", "first_moment_hat"),
        ("rmsprop:lr=0.01", "gradient"),
        ("adagrad:lr=0.1", "gradient"),
        ("momentum:lr=0.1", "velocity"),
        ("momentum-ema:lr=0.1", "velocity"),
        ("sgd:lr=0.1", "gradient"),
    ]:
        table = explain(spec, gradients=VECTOR_GRADS)
        np.testing.assert_allclose(
            table["effective_lr"] * table[moment], table["update"], rtol=1e-12, err_msg=spec
        )
    table = explain("rmsprop:lr=0.01,momentum=0.5", gradients=VECTOR_GRADS)
    np.testing.assert_allclose(0.01 * table["velocity"], table["update"], rtol=1e-12)
    # the notes' α/(√v̂ + ε) multiplies m̂: γ/denominator · m̂ is the update too
    table = explain("adam:lr=0.01", gradients=GRADS)
    np.testing.assert_allclose(
        0.01 / table["denominator"] * table["first_moment_hat"], table["update"], rtol=1e-12
    )


def test_every_column_of_every_optimizer_is_documented() -> None:
    doc = explain_module.__doc__
    for record, column in COLUMNS.items():
        assert f"``{column.name}``" in doc and record in doc
    seen, own = set(), set()
    for name in REGISTRY:
        if name == "newton":
            continue
        table = explain(name, gradients=VECTOR_GRADS, max_grad_norm=1.0)
        seen |= set(table.columns)
        opt = REGISTRY[name].cls([torch.zeros(2, requires_grad=True)])
        for link in opt.chain(opt.param_groups[0]).transforms:
            for record, (symbol, meaning) in type(link).columns.items():
                # a transform's own column: a symbol, a meaning and its docstring names it
                assert symbol and meaning and record in type(link).__doc__
                own.add(record)
    documented = {c.name for c in COLUMNS.values()} | own | {"step", "element", "loss"}
    assert seen <= documented, seen - documented
    # everything the core records shows up somewhere
    assert {c.name for c in COLUMNS.values()} <= seen


def test_gradient_norm_is_recorded_before_clipping() -> None:
    table = explain("sgd:lr=0.1,max_grad_norm=1.0", gradients=[[3.0, 4.0]])
    np.testing.assert_allclose(table["grad_norm"], [5.0, 5.0])
    # the update uses the clipped gradient g·1/(5 + 1e-6)
    np.testing.assert_allclose(table["update"], [0.1 * 3 / (5 + 1e-6), 0.1 * 4 / (5 + 1e-6)])


def test_function_by_autograd_and_loss_column() -> None:
    # f = Σ ¼x⁴: gradient x³; SGD by hand: x ← x − γx³
    table = explain("sgd:lr=0.1", function=lambda x: (x**4).sum() / 4, steps=5, start=[1.0, -2.0])
    x = np.array([1.0, -2.0])
    for step in range(1, 6):
        rows = table[table.step == step]
        np.testing.assert_allclose(rows["gradient"], x**3, rtol=1e-13)
        np.testing.assert_allclose(rows["loss"], [np.sum(x**4) / 4] * 2, rtol=1e-13)
        x = x - 0.1 * x**3
        np.testing.assert_allclose(rows["new_param"], x, rtol=1e-13)


def test_scalar_callable_and_default_start() -> None:
    table = explain("momentum:lr=0.1", function=lambda x: (x - 3.0) ** 2, steps=3)
    assert table.attrs["start"] == [0.0]
    np.testing.assert_allclose(table["gradient"][0], -6.0)
    assert "element" not in table.columns


def test_landscape_name_uses_its_start_and_learning_rate() -> None:
    from descend import landscapes

    quadratic = landscapes.get("quadratic")
    table = explain("momentum-ema", function="quadratic", steps=10)
    assert len(table) == 10 and "element" not in table.columns
    lr = quadratic.default_lrs["momentum-ema"]
    assert table.attrs["hyperparameters"]["lr"] == lr
    assert table.attrs["start"] == list(quadratic.starts[0])
    # f = ½x² (curvature 1): gradient = x, EMA momentum by hand
    x, v = quadratic.starts[0][0], 0.0
    for row in table.itertuples():
        assert row.gradient == pytest.approx(x, rel=1e-13)
        assert row.loss == pytest.approx(0.5 * x * x, rel=1e-13)
        v = 0.9 * v + 0.1 * x
        x -= lr * v
        assert row.new_param == pytest.approx(x, rel=1e-13)
    # an explicit lr and start win over the landscape's
    table = explain("sgd", function="double-well", steps=2, start=0.5, lr=0.01)
    assert table["gradient"][0] == pytest.approx(4 * 0.5**3 - 4 * 0.5)
    assert table["new_param"][0] == pytest.approx(0.5 - 0.01 * (4 * 0.5**3 - 4 * 0.5))


def test_optimizer_instance_keeps_its_state_and_value() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = Adam([p], lr=0.1)
    first = explain(opt, gradients=[[0.1, 0.2], [0.3, -0.1]])
    second = explain(opt, gradients=[[0.2, 0.2]])  # continues: step 3, same moments
    assert second["step"].tolist() == [3, 3]
    whole = explain("adam:lr=0.1", gradients=[[0.1, 0.2], [0.3, -0.1], [0.2, 0.2]], start=[1, 2])
    np.testing.assert_allclose(pd.concat([first, second]).to_numpy(), whole.to_numpy(), rtol=1e-13)
    assert p.grad is None


def test_skipped_steps_have_no_row() -> None:
    table = explain("sgd:lr=0.1,nonfinite=skip", gradients=[1.0, math.nan, 2.0])
    assert table["gradient"].tolist() == [1.0, 2.0]
    assert table["new_param"].tolist() == pytest.approx([-0.1, -0.3])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(optimizer="adam"), "exactly one of gradients= or function="),
        (dict(optimizer="adam", gradients=[1.0], function="quadratic"), "exactly one"),
        (dict(optimizer="adam", function="quadratic"), "steps is required"),
        (dict(optimizer="adam", gradients=[1.0, 2.0], steps=3), "steps=3 exceeds"),
        (dict(optimizer="adam", gradients=[1.0], steps=0), "steps must be an integer >= 1"),
        (dict(optimizer="adam", gradients=[]), "at least one step"),
        (dict(optimizer="adam", gradients=[[1.0, 2.0], [1.0]]), "gradients must be"),
        (dict(optimizer="adam", gradients=[1.0], momentum=0.9), "unknown hyperparameter"),
        (dict(optimizer="adma", gradients=[1.0]), "unknown optimizer 'adma'"),
        (dict(optimizer="newton", function="quadratic", steps=1), "'newton' has none"),
        (dict(optimizer="adam", gradients=[[1.0, 2.0]], start=[1.0, 2.0, 3.0]), "shape"),
        (dict(optimizer="adam", function="rosenbrock", steps=1, start=1.0), "2 coordinates"),
        (dict(optimizer="adam", gradients=[1.0], start=math.inf), "start must be finite"),
        (dict(optimizer="adam", function="rosenbrok", steps=1), "unknown landscape"),
        (dict(optimizer=3, gradients=[1.0]), "spec string"),
        (dict(optimizer="adam", function=lambda x: 1.0, steps=1), "scalar torch tensor"),
        (dict(optimizer="adam:lr=-1", gradients=[1.0]), "lr"),
    ],
)
def test_bad_input_is_a_clear_value_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        explain(**kwargs)


def test_instance_refuses_hyperparameters_start_and_several_parameters() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    opt = SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="only be given with a spec string"):
        explain(opt, gradients=[[1.0, 1.0]], lr=0.5)
    with pytest.raises(ValueError, match="start must be left out"):
        explain(opt, gradients=[[1.0, 1.0]], start=1.0)
    with pytest.raises(ValueError, match="parameter's shape"):
        explain(opt, gradients=[1.0])
    two = SGD([torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="exactly one parameter tensor, got 2"):
        explain(two, gradients=[[1.0]])


# -- rendering ----------------------------------------------------------------------------------
def test_csv_round_trips_exactly() -> None:
    table = explain("rmsprop-centered:lr=0.01", gradients=VECTOR_GRADS)
    back = pd.read_csv(io.StringIO(render(table, "csv")))
    pd.testing.assert_frame_equal(back, table, check_exact=True)


def test_markdown_is_a_pipe_table_with_rounded_values() -> None:
    table = explain("adam:lr=0.001", gradients=[0.02, 0.01, -0.03])
    text = render(table, "markdown", digits=4, title="Adam")
    lines = text.splitlines()
    assert lines[0] == "**Adam**"
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header == list(table.columns)
    assert set(lines[3].strip("|").split("|")) == {"---:"}
    body = [[float(c) for c in line.strip("|").split("|")] for line in lines[4:]]
    np.testing.assert_allclose(body, table.to_numpy(), rtol=5e-4)
    assert lines[4].split("|")[-2].strip() == "-0.001"  # θ₁ = −lr·sign(g) to 4 digits


def test_rich_table_shows_every_column_and_symbol_uncut() -> None:
    table = explain("adam:lr=0.001", gradients=[0.02, 0.01, -0.03])
    text = render(table, "rich", digits=6)
    for column in table.columns:
        assert column in text
    for symbol in ("m̂", "v̂", "√v̂+ε", "γ_eff"):
        assert symbol in text
    assert "…" not in text
    assert "0.000932179" in text  # step 2's update, to 6 digits
    assert all(line == line.rstrip() for line in text.splitlines())


def test_render_rejects_unknown_format_and_digits() -> None:
    table = explain("sgd", gradients=[1.0])
    with pytest.raises(ValueError, match="format must be one of rich, markdown, csv"):
        render(table, "html")
    with pytest.raises(ValueError, match="digits must be an integer in"):
        render(table, "rich", digits=0)


# -- the command line ---------------------------------------------------------------------------
def _csv(capsys: pytest.CaptureFixture, argv: list[str]) -> pd.DataFrame:
    assert main(["explain", *argv, "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


def test_cli_adam_three_steps_equals_the_library(capsys: pytest.CaptureFixture) -> None:
    got = _csv(capsys, ["adam", "--grads", "0.02,0.01,-0.03", "--lr", "0.001"])
    want = explain("adam", gradients=[0.02, 0.01, -0.03], lr=0.001)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


@pytest.mark.parametrize(
    "tokens",
    [
        ["--grads", "-0.03,0.01,0.02"],
        ["--grads=-0.03,0.01,0.02"],
        ["--grads", "-0.03", "0.01", "0.02"],
        ["--grads", "-0.03,0.01", "0.02"],
        ["--grads", "-3e-2,1e-2,2E-2"],
    ],
)
def test_cli_gradients_may_start_with_a_minus_sign(
    capsys: pytest.CaptureFixture, tokens: list[str]
) -> None:
    got = _csv(capsys, ["sgd", *tokens, "--lr", "1"])
    assert got["gradient"].tolist() == pytest.approx([-0.03, 0.01, 0.02])
    assert got["new_param"].tolist() == pytest.approx([0.03, 0.02, 0.0])


def test_cli_vector_gradients_and_negative_vector_start(capsys: pytest.CaptureFixture) -> None:
    got = _csv(capsys, ["momentum", "--grads", "0.01;5,0.01;-4.8", "--lr", "1", "--start", "-1;2"])
    want = explain("momentum:lr=1", gradients=[[0.01, 5], [0.01, -4.8]], start=[-1, 2])
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_cli_function_and_options_override_the_spec(capsys: pytest.CaptureFixture) -> None:
    got = _csv(capsys, ["momentum-ema:lr=0.5", "--function", "quadratic", "--steps", "10"])
    assert len(got) == 10 and got["velocity"][0] == pytest.approx(0.1 * 1.5)
    assert got["update"][0] == pytest.approx(0.5 * 0.1 * 1.5)
    got = _csv(capsys, ["adam:lr=0.5,beta1=0.5", "--grads", "1,1", "--lr", "0.01", "--beta1", "0"])
    assert got["first_moment"].tolist() == pytest.approx([1.0, 1.0])  # β₁ = 0
    assert got["update"][0] == pytest.approx(0.01, rel=1e-6)
    got = _csv(capsys, ["sgd", "--grads", "1,1", "--momentum", "0.5", "--nesterov"])
    assert got["update"].tolist() == pytest.approx([0.001 * 1.5, 0.001 * (1 + 0.5 * 1.5)])


def test_cli_default_output_is_a_titled_rich_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["explain", "adam", "--grads", "0.02,0.01,-0.03", "--lr", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "adam (lr=0.001, betas=(0.9, 0.999), eps=1e-08)" in out
    assert "first_moment_hat" in out and "0.000932179" in out
    assert main(["explain", "sgd", "--grads", "1", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("**sgd (lr=0.001")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["adam", "--grads", "1,x"], "--grads: 'x' is not a number"),
        (["adam", "--function", "quadratic"], "--steps is required with --function"),
        (["adam", "--grads", "1;2,3"], "same number of components"),
        (["adam", "--grads", "1", "--start", "a"], "--start: 'a' is not a number"),
        (["adam", "--grads", "1", "--momentum", "0.9"], "unknown hyperparameter 'momentum'"),
        (["amsgrad:momentum=0.9", "--grads", "1"], "unknown key 'momentum'"),
        (["sgd", "--grads", "1", "--lr", "-1"], "lr"),
    ],
)
def test_cli_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    assert main(["explain", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("descend explain: error:") and message in err
    assert err.count("\n") == 1


def test_cli_lists_the_notes_optimizers_keywords() -> None:
    keys = set()
    for entry in REGISTRY.values():
        if entry.cls.__module__.rsplit(".", 1)[-1] in ("sgd", "adaptive", "adam"):
            keys |= explain_module._keywords(entry.cls)
    keys = (keys - {"betas"}) | {"beta1", "beta2"}
    assert set(HYPERPARAMETERS) == keys


def test_cli_takes_any_other_keyword_of_the_optimizer(capsys: pytest.CaptureFixture) -> None:
    from descend.optim import Declared, Spec
    from descend.transforms import scale_by_lr

    class Scaled(Declared):  # an optimizer with a keyword no listed option has: u = κ·g
        keywords = ("lr", "kappa")
        conventions = {"torch": dict(lr=0.1, kappa=1.0)}
        specs = {"test-scaled": Spec("u = κ·g")}

        def core(self, group):
            return [scale_by_lr(lr=_hp("kappa"))]

    from descend.transforms import hp as _hp

    try:
        argv = ["explain", "test-scaled", "--grads", "0.5,0.25", "--format", "csv"]
        assert main([*argv, "--kappa", "3", "--lr=0.1"]) == 0
        out = capsys.readouterr().out
        theta = float(out.splitlines()[-1].rsplit(",", 1)[1])
        assert theta == pytest.approx(-0.225, abs=1e-15)  # θ = −0.1·3·(0.5 + 0.25)
        assert main([*argv, "--rho", "0.9"]) == 2
        err = capsys.readouterr().err
        assert "unknown hyperparameter 'rho' for optimizer 'test-scaled'" in err
    finally:
        REGISTRY.pop("test-scaled")
    assert more_options(["--rho", "0.95", "--flag", "--eps=1e-3", "--x", "-1;2"]) == {
        "rho": 0.95,
        "flag": True,
        "eps": 0.001,
        "x": "-1;2",
    }


def test_parse_gradients() -> None:
    assert parse_gradients(["0.02,0.01", "-0.03"]) == [0.02, 0.01, -0.03]
    assert parse_gradients(["1;2,3;4"]) == [[1.0, 2.0], [3.0, 4.0]]
    assert parse_gradients(["1,", ",2"]) == [1.0, 2.0]
