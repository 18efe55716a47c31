"""descend.landscapes.expr: valid expressions against hand-written formulas, and a catalogue of
hostile inputs that must be refused with a message naming the offending token."""

from __future__ import annotations

import builtins
import math

import pytest
import torch

from descend import landscapes
from descend.landscapes import ExpressionError, parse_expression
from descend.landscapes.expr import MAX_DEPTH, MAX_LENGTH


def grid(dim: int, n: int = 64, lo: float = 0.2, hi: float = 1.8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(dim)
    return lo + (hi - lo) * torch.rand(n, dim, generator=gen, dtype=torch.float64)


# (text, value as a function of the columns, gradient as a function of the columns)
CASES = [
    (
        "x**2 + 10*sin(y)",
        lambda x, y: x**2 + 10 * torch.sin(y),
        lambda x, y: (2 * x, 10 * torch.cos(y)),
    ),
    (
        "exp(-x**2 - y**2)",
        lambda x, y: torch.exp(-(x**2) - y**2),
        lambda x, y: (
            -2 * x * torch.exp(-(x**2) - y**2),
            -2 * y * torch.exp(-(x**2) - y**2),
        ),
    ),
    (
        "sqrt(x*x + y*y + 1)",
        lambda x, y: torch.sqrt(x * x + y * y + 1),
        lambda x, y: (x / torch.sqrt(x * x + y * y + 1), y / torch.sqrt(x * x + y * y + 1)),
    ),
    ("x/y - y/x", lambda x, y: x / y - y / x, lambda x, y: (1 / y + y / x**2, -x / y**2 - 1 / x)),
    ("-x**2", lambda x, y: -(x**2), lambda x, y: (-2 * x, 0 * y)),  # ** binds tighter than -
    ("2**-1*x", lambda x, y: 0.5 * x, lambda x, y: (0.5 + 0 * x, 0 * y)),
    ("x - y - 1", lambda x, y: x - y - 1, lambda x, y: (1 + 0 * x, -1 + 0 * y)),  # left-assoc
    ("x / y / 2", lambda x, y: x / y / 2, lambda x, y: (1 / (2 * y), -x / (2 * y * y))),
    (
        "pi*cos(e*x) + log(y) + log10(x)",
        lambda x, y: math.pi * torch.cos(math.e * x) + torch.log(y) + torch.log10(x),
        lambda x, y: (
            -math.pi * math.e * torch.sin(math.e * x) + 1 / (x * math.log(10)),
            1 / y,
        ),
    ),
    (
        "tanh(x) + sinh(y) + cosh(x) + abs(x - 1)",
        lambda x, y: torch.tanh(x) + torch.sinh(y) + torch.cosh(x) + torch.abs(x - 1),
        lambda x, y: (1 - torch.tanh(x) ** 2 + torch.sinh(x) + torch.sign(x - 1), torch.cosh(y)),
    ),
    (
        "atan(x) + arctan(y) + tan(x/2)",
        lambda x, y: torch.atan(x) + torch.atan(y) + torch.tan(x / 2),
        lambda x, y: (1 / (1 + x * x) + 0.5 / torch.cos(x / 2) ** 2, 1 / (1 + y * y)),
    ),
    (
        "atan2(y, x)",
        lambda x, y: torch.atan2(y, x),
        lambda x, y: (-y / (x * x + y * y), x / (x * x + y * y)),
    ),
    (
        "max(x, y) + min(x, 1)",
        lambda x, y: torch.maximum(x, y) + torch.minimum(x, torch.ones_like(x)),
        lambda x, y: ((x > y).double() + (x < 1).double(), (y > x).double()),
    ),
    (
        "asin(x/2) + acos(y/2)",
        lambda x, y: torch.asin(x / 2) + torch.acos(y / 2),
        lambda x, y: (0.5 / torch.sqrt(1 - x * x / 4), -0.5 / torch.sqrt(1 - y * y / 4)),
    ),
    (
        "x**y",
        lambda x, y: x**y,
        lambda x, y: (y * x ** (y - 1), x**y * torch.log(x)),
    ),
]


@pytest.mark.parametrize(("text", "value", "gradient"), CASES, ids=[c[0] for c in CASES])
def test_valid_expressions_match_hand_written_formulas(text, value, gradient):
    ls = landscapes.get("expr:" + text, dim=2)
    p = grid(2)
    x, y = p[:, 0], p[:, 1]
    torch.testing.assert_close(ls.f(p), value(x, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        ls.grad(p), torch.stack(gradient(x, y), dim=1), rtol=1e-10, atol=1e-12
    )


def test_hessian_by_autograd_matches_the_hand_derivation():
    ls = landscapes.get("x**2*y + y**3")
    p = grid(2)
    x, y = p[:, 0], p[:, 1]
    expected = torch.stack(
        (torch.stack((2 * y, 2 * x), -1), torch.stack((2 * x, 6 * y), -1)), dim=-2
    )
    torch.testing.assert_close(ls.hessian(p), expected)


def test_indexed_variables_and_dimension():
    ls = landscapes.get("x1*x2 + x3**3")
    assert ls.dim == 3
    p = grid(3)
    x1, x2, x3 = p.unbind(1)
    torch.testing.assert_close(ls.f(p), x1 * x2 + x3**3)
    torch.testing.assert_close(ls.grad(p), torch.stack((x2, x1, 3 * x3**2), 1))
    assert parse_expression("x").dim == 1
    assert parse_expression("y").dim == 2
    assert parse_expression("z + 1").dim == 3
    assert parse_expression("x12").dim == 12
    assert parse_expression("3.5").dim == 1


def test_constant_expression_broadcasts_and_has_zero_gradient():
    ls = landscapes.get("expr:2*pi", dim=2)
    p = grid(2, n=5)
    torch.testing.assert_close(ls.f(p), torch.full((5,), 2 * math.pi, dtype=torch.float64))
    assert ls.grad(p).abs().max().item() == 0.0
    assert ls.hessian(p).abs().max().item() == 0.0


def test_float32_points_give_float32_values():
    ls = landscapes.get("x**2 + 10*sin(y)")
    p = grid(2).float()
    assert ls.f(p).dtype == torch.float32 and ls.grad(p).dtype == torch.float32
    torch.testing.assert_close(ls.f(p).double(), ls.f(p.double()), rtol=1e-5, atol=1e-5)


def test_long_sums_are_not_counted_as_deep_nesting():
    text = "+".join(f"x{i}**2" for i in range(1, 61))  # 60 terms in 410 characters
    ls = landscapes.get(text)
    assert ls.dim == 60
    p = grid(60, n=4)
    torch.testing.assert_close(ls.f(p), (p * p).sum(1))


def test_evaluation_never_calls_eval_or_exec(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("eval/exec must not be used")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    ls = landscapes.get("x**2 + 10*sin(y)")
    assert ls.f(torch.tensor([[1.0, 0.0]])).item() == 1.0


# ---- rejected inputs ----------------------------------------------------------------------------

# (text, token the message must name, 1-based column of that token)
HOSTILE = [
    ("__import__('os')", "__import__", 1),
    ("__import__('os').system('ls')", "__import__('os').system", 1),
    ("x.__class__", "x.__class__", 1),
    ("().__class__.__bases__[0].__subclasses__()", "().__class__.__bases__[0].__subclasses__", 1),
    ("(lambda: 1)()", "lambda: 1", 2),
    ("x[0]", "x[0]", 1),
    ("open('f')", "open", 1),
    ("exec('1')", "exec", 1),
    ("eval('x')", "eval", 1),
    ("globals()", "globals", 1),
    ("getattr(x, 'real')", "getattr", 1),
    ("x + foo", "foo", 5),
    ("__builtins__", "__builtins__", 1),
    ("9**9**9", "9**9", 4),
    ("x**1000", "1000", 4),
    ("2**-101", "-101", 4),
    ("x**(1/0)", "1/0", 5),
    ("'abc'", "'abc'", 1),
    ("f'{x}'", "f'{x}'", 1),
    ("True + x", "True", 1),
    ("1e999 * x", "1e999", 1),
    ("x if y else 1", "x if y else 1", 1),
    ("x < y", "x < y", 1),
    ("x and y", "x and y", 1),
    ("not x", "not x", 1),
    ("~x", "~x", 1),
    ("x ^ 2", "^", 3),
    ("x // 2", "//", 3),
    ("x % 2", "%", 3),
    ("x @ y", "@", 3),
    ("x << 2", "<<", 3),
    ("[x for x in y]", "[x for x in y]", 1),
    ("(x, y)", "(x, y)", 1),
    ("{1: 2}", "{1: 2}", 1),
    ("(z := 1)", "z := 1", 2),
    ("sin(x=1)", "x=1", 5),
    ("sin(*x)", "*x", 5),
    ("sin(x, y)", "sin(x, y)", 1),
    ("sin", "sin", 1),
    ("x1 + y", "y", 6),
    ("x0", "x0", 1),
    ("x; y", ";", 2),
    ("import os", "import", 1),
    ("2x", "2", 1),
    ("xλ", "λ", 2),
    ("x\n+1", "\n", 2),
]


@pytest.mark.parametrize(("text", "token", "column"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_rejected_naming_the_token(text, token, column):
    with pytest.raises(ExpressionError) as info:
        landscapes.get("expr:" + text)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.column == column
    assert err.token.startswith(token[:1])
    message = str(err)
    assert f"column {column}:" in message
    if token.isprintable():
        assert token in message
    # The caret line sits under the token.
    lines = message.split("\n")
    if text.isprintable():
        assert lines[1] == "  " + text
        assert lines[2].index("^") == 2 + column - 1


def test_overlong_and_overdeep_expressions_are_rejected():
    long_text = "+".join(["x"] * (MAX_LENGTH // 2 + 1))
    with pytest.raises(ValueError, match=f"characters long; the limit is {MAX_LENGTH}"):
        parse_expression(long_text)
    deep = "(" * 60 + "x" + ")" * 60  # parentheses alone add no nodes ...
    assert parse_expression(deep).dim == 1
    nested = "sin(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1)  # ... but calls do
    with pytest.raises(ExpressionError, match=f"nested more than {MAX_DEPTH} levels") as info:
        parse_expression(nested)
    assert info.value.token == "sin(x)"  # the innermost call is the 51st level
    with pytest.raises(ExpressionError, match="nested more than"):
        parse_expression("-" * 200 + "x")
    with pytest.raises(ExpressionError, match="invalid syntax"):
        parse_expression("(" * 210 + "x" + ")" * 210)  # Python's own parser limit (200)
    assert parse_expression("sin(" * (MAX_DEPTH - 1) + "x" + ")" * (MAX_DEPTH - 1)).dim == 1


def test_empty_and_non_string_input():
    with pytest.raises(ValueError, match="empty"):
        parse_expression("   ")
    with pytest.raises(ValueError, match="must be a string"):
        parse_expression(3)  # type: ignore[arg-type]


def test_expression_needs_enough_columns():
    expr = parse_expression("x + z")
    with pytest.raises(ValueError, match="d >= 3"):
        expr(torch.zeros(4, 2))
