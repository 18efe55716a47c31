"""Animated GIF of a run: the trajectories growing over the contour map, drawn with Pillow.

Frames are palette images sharing one palette: the colour bands of the contour map (the same
banded, lightened viridis as the page), white, black, grey and one colour per optimizer.
Drawing straight into palette indices needs no quantisation, so a 120-frame GIF takes well
under a second. Trails are kept on one layer and extended by each frame's new segments; the
current positions are dots drawn on each frame. A 1-D function is drawn as its curve with the
runs as dots moving along it.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from descend.landscapes import Landscape

from .deadline import Deadline
from .functions import grid, plot_scale, plotted
from .runs import execute, prepare
from .schemas import GifRequest

# viridis at 9 stops, lightened 35% towards white (static/plot.js uses the same table)
VIRIDIS = [
    (0x44, 0x01, 0x54),
    (0x47, 0x2D, 0x7B),
    (0x3B, 0x52, 0x8B),
    (0x2C, 0x72, 0x8E),
    (0x21, 0x91, 0x8C),
    (0x28, 0xAE, 0x80),
    (0x5E, 0xC9, 0x62),
    (0xAD, 0xDC, 0x30),
    (0xFD, 0xE7, 0x25),
]
LIGHTEN = 0.35
BANDS = 20
# one colour per ticked optimizer, in order (static/plot.js uses the same table)
OPTIMIZER_COLOURS = [
    "#e6194b",
    "#0b5ed7",
    "#f58231",
    "#111111",
    "#d61fd6",
    "#8b4513",
    "#00838f",
    "#6f2dbd",
    "#808000",
    "#ff69b4",
    "#000075",
    "#800000",
]
WHITE, BLACK, GREY = BANDS, BANDS + 1, BANDS + 2
FIRST_OPTIMIZER = BANDS + 3


def colormap(u: float) -> tuple[int, int, int]:
    """The lightened viridis colour at u ∈ [0, 1]."""
    u = min(max(u, 0.0), 1.0) * (len(VIRIDIS) - 1)
    i = min(int(u), len(VIRIDIS) - 2)
    w = u - i
    rgb = [(1 - w) * a + w * b for a, b in zip(VIRIDIS[i], VIRIDIS[i + 1])]
    return tuple(round(c + (255 - c) * LIGHTEN) for c in rgb)


def _hex(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def palette() -> list[int]:
    colours = [colormap((b + 0.5) / BANDS) for b in range(BANDS)]
    colours += [(255, 255, 255), (0, 0, 0), (150, 150, 150)]
    colours += [_hex(c) for c in OPTIMIZER_COLOURS]
    flat = [v for c in colours for v in c]
    return flat + [0] * (768 - len(flat))


def bands(values: np.ndarray) -> np.ndarray:
    """Band index 0 … BANDS−1 of each plotted value (equal bands between its extremes)."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.full(values.shape, BANDS - 1, dtype=np.uint8)
    low, high = float(values[finite].min()), float(values[finite].max())
    span = high - low if high > low else 1.0
    index = np.floor((np.where(finite, values, high) - low) / span * BANDS)
    return np.clip(index, 0, BANDS - 1).astype(np.uint8)


class _Frame:
    """Maps landscape coordinates to pixels of a size × size image. A 2-D map keeps equal
    scales on both axes (angles stay true), centred, with white margins; a 1-D curve fills it."""

    def __init__(self, landscape: Landscape, size: int, y_range: tuple[float, float] | None):
        self.size = size
        self.x0, self.x1 = landscape.domain[0]
        self.y0, self.y1 = landscape.domain[1] if landscape.dim == 2 else y_range
        dx, dy = self.x1 - self.x0, self.y1 - self.y0
        if landscape.dim == 2:
            scale = (size - 1) / max(dx, dy)
            self.sx = self.sy = scale
        else:
            self.sx, self.sy = (size - 1) / dx, (size - 1) / dy
        self.width, self.height = round(dx * self.sx) + 1, round(dy * self.sy) + 1
        self.left, self.top = (size - self.width) // 2, (size - self.height) // 2

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        return self.left + (x - self.x0) * self.sx, self.top + (self.y1 - y) * self.sy


def _clip(p: tuple[float, float], size: int) -> tuple[float, float]:
    limit = 4.0 * size  # far-away points only need to leave the image in the right direction
    return (min(max(p[0], -limit), limit), min(max(p[1], -limit), limit))


def render(req: GifRequest, deadline: Deadline) -> bytes:
    """The GIF of ``POST /api/gif``."""
    prepared = prepare(req)
    landscape = prepared.landscape
    result = execute(prepared, req, deadline, record_every=max(1, math.ceil(req.steps / 1000)))
    size = req.size
    sampled = grid(landscape, size)
    z = np.array(sampled["z"], dtype=np.float64)  # None -> nan
    scale = plot_scale(landscape, req.scale)
    base = Image.new("P", (size, size), WHITE)
    base.putpalette(palette())
    y_range = None
    if landscape.dim == 1:
        finite = z[np.isfinite(z)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = 0.08 * (high - low if high > low else 1.0)
        y_range = (low - pad, high + pad)
    frame = _Frame(landscape, size, y_range)
    if landscape.dim == 2:
        colours = bands(plotted(z, scale, landscape.f_min))[::-1]  # row 0 = top = y max
        image = Image.fromarray(colours, mode="P").resize((frame.width, frame.height))
        base.paste(image, (frame.left, frame.top))
    draw = ImageDraw.Draw(base)
    if landscape.dim == 1:
        curve = [frame.pixel(x, v) for x, v in zip(sampled["x"], z) if np.isfinite(v)]
        if len(curve) > 1:
            draw.line(curve, fill=GREY, width=2)
    for m in landscape.minima:
        point = m.location if landscape.dim == 2 else (m.location[0], m.value)
        px, py = frame.pixel(*point)
        draw.line([(px - 5, py - 5), (px + 5, py + 5)], fill=BLACK, width=2)
        draw.line([(px - 5, py + 5), (px + 5, py - 5)], fill=BLACK, width=2)
    _legend(draw, prepared.specs, size)

    paths = _paths(result, frame, landscape.dim, len(prepared.starts) * len(req.seeds))
    trails = base.copy()
    trail_draw = ImageDraw.Draw(trails)
    records = result.trajectories.shape[1]
    frames, shown = [], 0
    radius = max(3, size // 110)
    for f in range(req.frames):
        deadline.check()
        upto = round(f / (req.frames - 1) * (records - 1))
        for colour, points in paths:
            segment = points[max(shown - 1, 0) : upto + 1]
            if landscape.dim == 2 and len(segment) > 1:
                trail_draw.line(segment, fill=colour, width=2)
        shown = upto + 1
        image = trails.copy()
        dots = ImageDraw.Draw(image)
        for colour, points in paths:
            if points:
                px, py = points[min(upto, len(points) - 1)]
                box = [px - radius, py - radius, px + radius, py + radius]
                dots.ellipse(box, fill=colour, outline=BLACK)
        step = int(result.recorded_steps[upto])
        dots.text((6, size - 18), f"step {step}", fill=BLACK, font=_font(12))
        frames.append(image)
    out = io.BytesIO()
    frames[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=req.frame_ms,
        loop=0,
        optimize=False,
    )
    return out.getvalue()


def _paths(result, frame: _Frame, dim: int, per_spec: int) -> list[tuple[int, list]]:
    """(palette colour, pixel points up to divergence) for every run."""
    paths = []
    for i in range(result.trajectories.shape[0]):
        colour = FIRST_OPTIMIZER + (i // per_spec) % len(OPTIMIZER_COLOURS)
        points = []
        for r in range(result.trajectories.shape[1]):
            xy = result.trajectories[i, r]
            if not np.isfinite(xy).all():
                break
            y = xy[1] if dim == 2 else result.losses[i, r]
            if not np.isfinite(y):
                break
            points.append(_clip(frame.pixel(float(xy[0]), float(y)), frame.size))
        paths.append((colour, points))
    return paths


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _legend(draw: ImageDraw.ImageDraw, specs: list[str], size: int) -> None:
    font = _font(11)
    rows = specs[: max(1, (size - 40) // 15)]
    width = min(size - 12, 24 + max(int(draw.textlength(s[:40], font=font)) for s in rows))
    draw.rectangle([4, 4, 4 + width + 8, 8 + 15 * len(rows)], fill=WHITE, outline=GREY)
    for k, spec in enumerate(rows):
        y = 12 + 15 * k
        colour = FIRST_OPTIMIZER + k % len(OPTIMIZER_COLOURS)
        draw.line([(10, y), (26, y)], fill=colour, width=3)
        draw.text((32, y - 7), spec[:40], fill=BLACK, font=font)
