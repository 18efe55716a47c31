"""Bounds on every input of the web API, in one place.

Each request is checked against these before any computation; a value outside them is a 422
whose message names the field, the value and the allowed range. ``GET /api/limits`` serves the
same table so the page can show it. The work bounds keep the slowest accepted request within
the time limit on two cores: a run costs about (distinct optimizers) × steps optimizer steps,
a basin map about (optimizers) × steps steps on a grid² batch.
"""

from __future__ import annotations

from descend.landscapes.expr import MAX_DEPTH as EXPRESSION_MAX_DEPTH
from descend.landscapes.expr import MAX_LENGTH as EXPRESSION_MAX_LENGTH

MAX_STEPS = 5000
MAX_OPTIMIZERS = 12
MAX_STARTS = 16
MAX_SEEDS = 16
MAX_RUNS = 64  # optimizers × starts × seeds
MAX_RUN_WORK = 24_000  # optimizers × steps
MAX_RECORDS = 200_000  # runs × recorded points returned
MAX_NOISE_BATCH = 100_000
MAX_NOISE_SCALE = 1000.0
MAX_SPEC_LENGTH = 300
MAX_SCHEDULE_LENGTH = 300
MAX_PARAMS = 8  # landscape parameters in one request
MAX_PARAM_MAGNITUDE = 1e6  # |landscape parameter|, |domain bound|, |start coordinate|
MAX_FUNCTION_LENGTH = EXPRESSION_MAX_LENGTH + len("expr:")

MIN_RESOLUTION, MAX_RESOLUTION = 8, 300  # contour grid points per axis

MIN_BASIN_GRID, MAX_BASIN_GRID = 4, 80  # start points per axis
MAX_BASIN_OPTIMIZERS = 6
MAX_BASIN_STEPS = 2000
MAX_BASIN_WORK = 6000  # optimizers × steps

MIN_GIF_FRAMES, MAX_GIF_FRAMES = 2, 120
MIN_GIF_SIZE, MAX_GIF_SIZE = 120, 640  # pixels per side
MIN_GIF_DURATION_MS, MAX_GIF_DURATION_MS = 20, 1000  # per frame

MAX_BODY_BYTES = 64 * 1024
TIME_LIMIT_S = 10.0  # per request; the page shows the error when it is hit


def table() -> dict[str, object]:
    """Every bound as a JSON-ready dict (served by ``GET /api/limits``)."""
    return {
        "steps": [1, MAX_STEPS],
        "optimizers": [1, MAX_OPTIMIZERS],
        "starts": [1, MAX_STARTS],
        "seeds": [1, MAX_SEEDS],
        "runs": MAX_RUNS,
        "run_work": MAX_RUN_WORK,
        "records": MAX_RECORDS,
        "noise_batch": [1, MAX_NOISE_BATCH],
        "noise_scale": [0, MAX_NOISE_SCALE],
        "spec_length": MAX_SPEC_LENGTH,
        "schedule_length": MAX_SCHEDULE_LENGTH,
        "params": MAX_PARAMS,
        "magnitude": MAX_PARAM_MAGNITUDE,
        "expression_length": EXPRESSION_MAX_LENGTH,
        "expression_depth": EXPRESSION_MAX_DEPTH,
        "resolution": [MIN_RESOLUTION, MAX_RESOLUTION],
        "basin_grid": [MIN_BASIN_GRID, MAX_BASIN_GRID],
        "basin_optimizers": [1, MAX_BASIN_OPTIMIZERS],
        "basin_steps": [1, MAX_BASIN_STEPS],
        "basin_work": MAX_BASIN_WORK,
        "gif_frames": [MIN_GIF_FRAMES, MAX_GIF_FRAMES],
        "gif_size": [MIN_GIF_SIZE, MAX_GIF_SIZE],
        "gif_frame_ms": [MIN_GIF_DURATION_MS, MAX_GIF_DURATION_MS],
        "body_bytes": MAX_BODY_BYTES,
        "time_limit_s": TIME_LIMIT_S,
    }
