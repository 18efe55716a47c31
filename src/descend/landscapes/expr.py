"""Safe user functions from expression strings, e.g. ``"x**2 + 10*sin(y)"``.

The text is parsed with Python's ``ast`` module and nothing else: no ``eval``, no ``compile``.
A walker accepts only a whitelist of node types and turns them into torch operations on a
batch of points:

- numbers (int or float literals, finite), the constants ``pi`` and ``e``;
- variables ``x``, ``y``, ``z`` (coordinates 1–3) or ``x1`` … ``x99`` (not both styles at once);
- ``+ - * / **`` and unary ``-``/``+``;
- calls, by name, of: sin cos tan asin acos atan (also arcsin arccos arctan) sinh cosh tanh
  exp log log10 sqrt abs (one argument) and min max atan2 (two arguments).

Limits: at most 500 characters and 50 levels of nesting (a chain like ``a + b + c`` counts as
one level), and a constant exponent must satisfy |p| ≤ 100 (so ``9**9**9`` is refused). Anything
else (attributes, subscripts, lambdas, strings, keywords, comparisons, unknown names, ...)
raises `ExpressionError`, a ValueError whose message names the offending token and its column
and draws a caret under it.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_LENGTH = 500
MAX_DEPTH = 50
MAX_EXPONENT = 100.0

UNARY_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "asin": torch.asin,
    "arcsin": torch.asin,
    "acos": torch.acos,
    "arccos": torch.acos,
    "atan": torch.atan,
    "arctan": torch.atan,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "tanh": torch.tanh,
    "exp": torch.exp,
    "log": torch.log,
    "log10": torch.log10,
    "sqrt": torch.sqrt,
    "abs": torch.abs,
}
BINARY_FUNCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "min": torch.minimum,
    "max": torch.maximum,
    "atan2": torch.atan2,
}
CONSTANTS = {"pi": math.pi, "e": math.e}
LETTER_VARIABLES = ("x", "y", "z")
_INDEXED = re.compile(r"x([1-9][0-9]?)")

_BINARY_OPS: dict[type, Callable[[Tensor, Tensor], Tensor]] = {
    ast.Add: torch.add,
    ast.Sub: torch.sub,
    ast.Mult: torch.mul,
    ast.Div: torch.div,
}
_FAMILY = {ast.Add: "sum", ast.Sub: "sum", ast.Mult: "product", ast.Div: "product"}

_DESCRIBE = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.Compare: "comparison",
    ast.BoolOp: "boolean operator",
    ast.IfExp: "conditional expression",
    ast.JoinedStr: "f-string",
    ast.Tuple: "tuple",
    ast.List: "list",
    ast.Dict: "dict",
    ast.Set: "set",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "generator",
    ast.NamedExpr: "assignment (:=)",
    ast.Starred: "starred argument",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.Slice: "slice",
}


class ExpressionError(ValueError):
    """A rejected expression; ``token`` and ``column`` (1-based) say where."""

    def __init__(self, text: str, message: str, column: int, width: int = 1) -> None:
        column = max(0, min(column, len(text)))
        self.token = text[column : column + max(width, 1)]
        self.column = column + 1
        caret = " " * column + "^" * max(width, 1)
        super().__init__(f"column {self.column}: {message}\n  {text}\n  {caret}")


@dataclass(frozen=True)
class _Compiled:
    fn: Callable[[Tensor], Tensor]
    variables: frozenset[int]


def _constant(value: float) -> _Compiled:
    return _Compiled(lambda p: torch.tensor(value, dtype=p.dtype, device=p.device), frozenset())


def _constant_value(node: _Compiled) -> float:
    """Value of a variable-free subexpression, computed in float64 (inf/nan are not raised)."""
    return float(node.fn(torch.zeros((1, 0), dtype=torch.float64)))


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text
        self.letter_style: str | None = None  # "letters" or "indexed", fixed by the first use

    # -- errors ---------------------------------------------------------------------------
    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        start = getattr(node, "col_offset", 0)
        end = getattr(node, "end_col_offset", start + 1) or start + 1
        return ExpressionError(self.text, message, start, end - start)

    def token(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or type(node).__name__

    # -- walking --------------------------------------------------------------------------
    def compile(self, node: ast.AST, depth: int) -> _Compiled:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"expression nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, depth)
        if isinstance(node, ast.BinOp):
            return self.binary(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        what = _DESCRIBE.get(type(node), f"syntax {type(node).__name__}")
        raise self.fail(node, f"{what} {self.token(node)!r} is not allowed")

    def number(self, node: ast.Constant) -> _Compiled:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(node, f"only numbers are allowed as literals, not {self.token(node)!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise self.fail(node, f"number {self.token(node)!r} is too large")
        return _constant(number)

    def name(self, node: ast.Name) -> _Compiled:
        name = node.id
        if name in CONSTANTS:
            return _constant(CONSTANTS[name])
        if name in UNARY_FUNCTIONS or name in BINARY_FUNCTIONS:
            raise self.fail(node, f"function {name!r} must be called, e.g. {name}(x)")
        if name in LETTER_VARIABLES:
            return self.variable(node, "letters", LETTER_VARIABLES.index(name))
        indexed = _INDEXED.fullmatch(name)
        if indexed:
            return self.variable(node, "indexed", int(indexed.group(1)) - 1)
        raise self.fail(
            node,
            f"unknown name {name!r}; allowed: variables x, y, z or x1 … x99, constants pi, e",
        )

    def variable(self, node: ast.Name, style: str, index: int) -> _Compiled:
        if self.letter_style is None:
            self.letter_style = style
        elif self.letter_style != style:
            raise self.fail(node, f"variable {node.id!r} mixes x, y, z with x1, x2, …; pick one")
        return _Compiled(lambda p: p[:, index], frozenset({index}))

    def unary(self, node: ast.UnaryOp, depth: int) -> _Compiled:
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise self.fail(node, f"operator in {self.token(node)!r} is not allowed (use - or +)")
        inner = self.compile(node.operand, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return inner
        return _Compiled(lambda p: torch.neg(inner.fn(p)), inner.variables)

    def operator_column(self, node: ast.BinOp) -> tuple[int, int]:
        """Column and width of the operator between the two operands of ``node``."""
        between = self.text[node.left.end_col_offset : node.right.col_offset]
        stripped = between.strip(" ()")
        offset = between.find(stripped) if stripped else 0
        return node.left.end_col_offset + offset, max(len(stripped), 1)

    def check_operator(self, node: ast.BinOp) -> None:
        if type(node.op) in _BINARY_OPS or isinstance(node.op, ast.Pow):
            return
        column, width = self.operator_column(node)
        symbol = self.text[column : column + width]
        hint = " (use ** for powers)" if isinstance(node.op, ast.BitXor) else ""
        raise ExpressionError(
            self.text, f"operator {symbol!r} is not allowed{hint}; use + - * / **", column, width
        )

    def binary(self, node: ast.BinOp, depth: int) -> _Compiled:
        self.check_operator(node)
        if isinstance(node.op, ast.Pow):
            return self.power(node, depth)
        # Flatten a left-leaning chain a + b - c + … (or * /) iteratively: one nesting level,
        # and no Python recursion proportional to the number of terms.
        family = _FAMILY[type(node.op)]
        chain: list[tuple[Callable[[Tensor, Tensor], Tensor], ast.AST]] = []
        current: ast.AST = node
        while isinstance(current, ast.BinOp) and _FAMILY.get(type(current.op)) == family:
            chain.append((_BINARY_OPS[type(current.op)], current.right))
            current = current.left
        first = self.compile(current, depth + 1)
        steps = [(op, self.compile(right, depth + 1)) for op, right in reversed(chain)]
        variables = first.variables.union(*(c.variables for _, c in steps))

        def evaluate(p: Tensor) -> Tensor:
            out = first.fn(p)
            for op, operand in steps:
                out = op(out, operand.fn(p))
            return out

        return _Compiled(evaluate, variables)

    def power(self, node: ast.BinOp, depth: int) -> _Compiled:
        base = self.compile(node.left, depth + 1)
        exponent = self.compile(node.right, depth + 1)
        if not exponent.variables:
            value = _constant_value(exponent)
            if not (math.isfinite(value) and abs(value) <= MAX_EXPONENT):
                raise self.fail(
                    node.right,
                    f"exponent {self.token(node.right)!r} = {value:g} is outside "
                    f"[-{MAX_EXPONENT:g}, {MAX_EXPONENT:g}]",
                )
        return _Compiled(
            lambda p: torch.pow(base.fn(p), exponent.fn(p)), base.variables | exponent.variables
        )

    def call(self, node: ast.Call, depth: int) -> _Compiled:
        if not isinstance(node.func, ast.Name):
            what = _DESCRIBE.get(type(node.func), "expression")
            token = self.token(node.func)
            raise self.fail(node.func, f"only named functions can be called, not {what} {token!r}")
        name = node.func.id
        allowed = ", ".join(sorted(UNARY_FUNCTIONS) + sorted(BINARY_FUNCTIONS))
        if name in UNARY_FUNCTIONS:
            function, arity = UNARY_FUNCTIONS[name], 1
        elif name in BINARY_FUNCTIONS:
            function, arity = BINARY_FUNCTIONS[name], 2
        else:
            raise self.fail(node.func, f"unknown function {name!r}; allowed: {allowed}")
        if node.keywords:
            raise self.fail(node.keywords[0], f"keyword arguments are not allowed in {name}()")
        if len(node.args) != arity:
            raise self.fail(node, f"{name}() takes {arity} argument(s), got {len(node.args)}")
        args = [self.compile(arg, depth + 1) for arg in node.args]
        variables = frozenset().union(*(a.variables for a in args))
        if arity == 1:
            (a,) = args
            return _Compiled(lambda p: function(a.fn(p)), variables)
        a, b = args
        return _Compiled(lambda p: function(*torch.broadcast_tensors(a.fn(p), b.fn(p))), variables)


@dataclass(frozen=True)
class Expression:
    """A parsed expression: call it on (N, d) points to get (N,) values.

    ``dim`` is the number of coordinates it needs (the highest variable used; 1 for a constant).
    """

    text: str
    dim: int
    variables: frozenset[int]
    _fn: Callable[[Tensor], Tensor]

    def __call__(self, points: Tensor) -> Tensor:
        if points.ndim != 2 or points.shape[1] < self.dim:
            raise ValueError(
                f"points must have shape (N, d) with d >= {self.dim} for {self.text!r}, "
                f"got {tuple(points.shape)}"
            )
        out = self._fn(points)
        return torch.broadcast_to(out, points.shape[:1])


def parse_expression(text: str) -> Expression:
    """Check ``text`` against the whitelist and build its evaluator; see the module docstring."""
    if not isinstance(text, str):
        raise ValueError(f"expression must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ValueError("expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            text[: MAX_LENGTH + 10],
            f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}",
            MAX_LENGTH,
        )
    for column, char in enumerate(text):
        if not (char.isascii() and char.isprintable()):
            raise ExpressionError(text, f"character {char!r} is not allowed", column)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        column = exc.offset - 1 if exc.offset else len(text)
        raise ExpressionError(text, f"invalid syntax ({exc.msg})", column) from None
    except (RecursionError, MemoryError):
        raise ValueError("expression is too complex to parse") from None
    compiled = _Compiler(text).compile(tree.body, depth=1)
    dim = max(compiled.variables, default=0) + 1
    return Expression(text=text, dim=dim, variables=compiled.variables, _fn=compiled.fn)
