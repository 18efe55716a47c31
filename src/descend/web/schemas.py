"""Request bodies of the web API (pydantic), with every bound from :mod:`.limits`.

Each field states its range, so a value outside it is refused with a 422 whose message names
the field and what is allowed, and the OpenAPI schema (``/openapi.json``) documents it.
Unknown fields and non-finite numbers (``NaN``, ``Infinity``) are refused too.
Cross-field bounds (runs = optimizers × starts × seeds, work = optimizers × steps) are checked
by model validators with the same kind of message.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from . import limits as L

Coordinate = Annotated[float, Field(ge=-L.MAX_PARAM_MAGNITUDE, le=L.MAX_PARAM_MAGNITUDE)]
Point = Annotated[list[Coordinate], Field(min_length=1, max_length=2)]
Bounds = Annotated[list[Coordinate], Field(min_length=2, max_length=2)]
ParamName = Annotated[str, StringConstraints(min_length=1, max_length=40)]
Spec = Annotated[
    str,
    StringConstraints(min_length=1, max_length=L.MAX_SPEC_LENGTH),
    Field(examples=["adam:lr=0.05", "momentum:lr=0.001,momentum=0.9", "sgd"]),
]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FunctionRef(Strict):
    """Which function: a registry name with its parameters, or an expression."""

    name: str = Field(
        min_length=1,
        max_length=L.MAX_FUNCTION_LENGTH,
        description=(
            "a registered landscape (GET /api/landscapes) or an expression such as "
            f"'expr:x**2 + 10*sin(y)' (at most {L.EXPRESSION_MAX_LENGTH} characters and "
            f"{L.EXPRESSION_MAX_DEPTH} levels of nesting, variables x and y)"
        ),
        examples=["rosenbrock", "expr:x**2 + 10*y**2"],
    )
    params: dict[ParamName, Coordinate] = Field(
        default_factory=dict,
        max_length=L.MAX_PARAMS,
        description="parameters of a registered landscape, e.g. {'kappa': 50} for ravine",
    )
    domain: list[Bounds] | None = Field(
        default=None,
        min_length=1,
        max_length=2,
        description="expressions only: one [lo, hi] for every variable, or one per variable",
    )


class ContourRequest(Strict):
    function: FunctionRef
    resolution: int = Field(
        default=120, ge=L.MIN_RESOLUTION, le=L.MAX_RESOLUTION, description="grid points per axis"
    )
    scale: Literal["auto", "linear", "log"] = Field(
        default="auto", description="colour scale; auto uses the landscape's own"
    )


class RunSettings(Strict):
    """What every trajectory request shares: function, optimizers, starts, steps, noise."""

    function: FunctionRef
    optimizers: list[Spec] = Field(
        min_length=1,
        max_length=L.MAX_OPTIMIZERS,
        description="optimizer specs (GET /api/optimizers); a spec without lr uses the "
        "landscape's default learning rate for that optimizer",
    )
    starts: list[Point] | None = Field(
        default=None,
        min_length=1,
        max_length=L.MAX_STARTS,
        description="start points (one coordinate per variable); default the landscape's own",
    )
    seeds: list[Seed] = Field(
        default=[0], min_length=1, max_length=L.MAX_SEEDS, description="noise seeds"
    )
    steps: int = Field(default=200, ge=1, le=L.MAX_STEPS)
    noise_batch: int | None = Field(
        default=None,
        ge=1,
        le=L.MAX_NOISE_BATCH,
        description="mini-batch size B of the noisy gradient ∇f + ξ̄, ξ̄ ~ N(0, σ²/B); "
        "null for the exact gradient",
    )
    noise_scale: float = Field(default=1.0, ge=0, le=L.MAX_NOISE_SCALE, description="σ")
    schedule: (
        Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_SCHEDULE_LENGTH)] | None
    ) = Field(
        default=None,
        description="learning-rate schedule spec, e.g. 'cosine' or "
        "'linear_warmup:warmup=50>cosine:final=0.1' (GET /api/schedules)",
    )
    tol: float = Field(
        default=1e-6, gt=0, le=1e6, description="converged when f − f* < tol (steps to converge)"
    )

    def run_count(self, n_starts: int) -> int:
        return len(self.optimizers) * n_starts * len(self.seeds)

    @model_validator(mode="after")
    def _work(self) -> RunSettings:
        starts = 1 if self.starts is None else len(self.starts)
        if self.run_count(starts) > L.MAX_RUNS:
            raise ValueError(
                f"optimizers × starts × seeds = {len(self.optimizers)} × {starts} × "
                f"{len(self.seeds)} = {self.run_count(starts)} runs; at most {L.MAX_RUNS} "
                "are allowed"
            )
        work = len(self.optimizers) * self.steps
        if work > L.MAX_RUN_WORK:
            raise ValueError(
                f"optimizers × steps = {len(self.optimizers)} × {self.steps} = {work}; at most "
                f"{L.MAX_RUN_WORK} are allowed (fewer optimizers or fewer steps)"
            )
        return self


class RunRequest(RunSettings):
    record_every: int | None = Field(
        default=None,
        ge=1,
        le=L.MAX_STEPS,
        description="keep every k-th point of each trajectory (and the last); default: all "
        "points up to 2,000 steps, then enough thinning to keep about 2,000",
    )

    def thinning(self) -> int:
        """The record_every to use (the request's, or the default)."""
        if self.record_every is not None:
            return self.record_every
        return max(1, math.ceil(self.steps / 2000))


class GifRequest(RunSettings):
    frames: int = Field(default=60, ge=L.MIN_GIF_FRAMES, le=L.MAX_GIF_FRAMES)
    size: int = Field(default=360, ge=L.MIN_GIF_SIZE, le=L.MAX_GIF_SIZE, description="pixels")
    frame_ms: int = Field(
        default=60, ge=L.MIN_GIF_DURATION_MS, le=L.MAX_GIF_DURATION_MS, description="per frame"
    )
    scale: Literal["auto", "linear", "log"] = "auto"


class BasinsRequest(Strict):
    function: FunctionRef
    optimizers: list[Spec] = Field(min_length=1, max_length=L.MAX_BASIN_OPTIMIZERS)
    grid: int = Field(
        default=40, ge=L.MIN_BASIN_GRID, le=L.MAX_BASIN_GRID, description="starts per axis"
    )
    steps: int = Field(default=500, ge=1, le=L.MAX_BASIN_STEPS)
    tol: float = Field(default=1e-6, gt=0, le=1e6)

    @model_validator(mode="after")
    def _work(self) -> BasinsRequest:
        work = len(self.optimizers) * self.steps
        if work > L.MAX_BASIN_WORK:
            raise ValueError(
                f"optimizers × steps = {len(self.optimizers)} × {self.steps} = {work}; at most "
                f"{L.MAX_BASIN_WORK} are allowed for a basin map"
            )
        return self


class TheoryRequest(RunSettings):
    """The theory panel: the same settings as a run (noise is ignored: the theory is for the
    exact gradient)."""
