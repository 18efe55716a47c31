// Drawing for the web lab: filled contour maps, trajectories, the loss chart and basin maps,
// all on <canvas>. No libraries. The colour tables match descend/web/gif.py.
"use strict";

const Plot = (() => {
  // viridis at 9 stops, lightened 35% towards white (gif.py: VIRIDIS, LIGHTEN)
  const VIRIDIS = [
    [0x44, 0x01, 0x54], [0x47, 0x2d, 0x7b], [0x3b, 0x52, 0x8b], [0x2c, 0x72, 0x8e],
    [0x21, 0x91, 0x8c], [0x28, 0xae, 0x80], [0x5e, 0xc9, 0x62], [0xad, 0xdc, 0x30],
    [0xfd, 0xe7, 0x25],
  ];
  const LIGHTEN = 0.35;
  const BANDS = 20;
  const COLOURS = [
    "#e6194b", "#0b5ed7", "#f58231", "#111111", "#d61fd6", "#8b4513",
    "#00838f", "#6f2dbd", "#808000", "#ff69b4", "#000075", "#800000",
  ];
  const BASIN_COLOURS = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
  ];
  const BASIN_CODES = { "-1": "#e4e7ec", "-2": "#1d2330", "-3": "#8a1c1c" };
  const LOG_DELTA_FRACTION = 1e-6; // functions.py: LOG_DELTA_FRACTION

  function colourAt(u) {
    u = Math.min(Math.max(u, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(u), VIRIDIS.length - 2);
    const w = u - i;
    return VIRIDIS[i].map((a, k) => {
      const c = (1 - w) * a + w * VIRIDIS[i + 1][k];
      return Math.round(c + (255 - c) * LIGHTEN);
    });
  }
  const BAND_RGB = Array.from({ length: BANDS }, (_, b) => colourAt((b + 0.5) / BANDS));

  function colour(index) {
    return COLOURS[index % COLOURS.length];
  }

  // The plotted value: f, or log10(f - low + delta) (functions.py: plotted).
  function plotted(z, scale, fMin) {
    const found = scale === "log" ? range(z) : null;
    if (!found) return z;
    let [low, high] = found;
    if (fMin !== null && fMin !== undefined) low = Math.min(low, fMin);
    const delta = LOG_DELTA_FRACTION * (high - low) + 1e-12;
    const map = (v) => (v === null ? null : Math.log10(v - low + delta));
    return Array.isArray(z[0]) ? z.map((row) => row.map(map)) : z.map(map);
  }

  function setup(canvas, width, height) {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  // Round numbers for axis ticks: 1, 2, 5 × 10^k.
  function ticks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return out;
  }

  function fmt(v, digits = 3) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(Math.max(digits - 1, 1)).replace("e+", "e");
    return Number(v.toPrecision(digits)).toString();
  }

  // A map of data coordinates to pixels with equal scales on both axes (angles stay true).
  class Frame {
    constructor(width, height, box, margin) {
      this.width = width;
      this.height = height;
      this.margin = margin;
      this.box = box; // [[x0, x1], [y0, y1]]
      const [[x0, x1], [y0, y1]] = box;
      const w = width - margin.left - margin.right;
      const h = height - margin.top - margin.bottom;
      this.sx = w / (x1 - x0);
      this.sy = h / (y1 - y0);
      if (margin.equal) {
        const s = Math.min(this.sx, this.sy);
        this.sx = this.sy = s;
      }
      this.left = margin.left + (w - this.sx * (x1 - x0)) / 2;
      this.top = margin.top + (h - this.sy * (y1 - y0)) / 2;
      this.right = this.left + this.sx * (x1 - x0);
      this.bottom = this.top + this.sy * (y1 - y0);
    }
    px(x, y) {
      const [[x0], [, y1]] = this.box;
      return [this.left + (x - x0) * this.sx, this.top + (y1 - y) * this.sy];
    }
    data(px, py) {
      const [[x0], [, y1]] = this.box;
      return [x0 + (px - this.left) / this.sx, y1 - (py - this.top) / this.sy];
    }
    inside(px, py) {
      return px >= this.left && px <= this.right && py >= this.top && py <= this.bottom;
    }
  }

  function axes(ctx, frame, xLabel, yLabel, yTicks) {
    const [[x0, x1], [y0, y1]] = frame.box;
    ctx.save();
    ctx.strokeStyle = "#98a2b3";
    ctx.lineWidth = 1;
    ctx.strokeRect(frame.left, frame.top, frame.right - frame.left, frame.bottom - frame.top);
    ctx.fillStyle = "#475467";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of ticks(x0, x1, 6)) {
      const [px] = frame.px(t, y0);
      ctx.beginPath();
      ctx.moveTo(px, frame.bottom);
      ctx.lineTo(px, frame.bottom + 4);
      ctx.stroke();
      ctx.fillText(fmt(t), px, frame.bottom + 6);
    }
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of yTicks || ticks(y0, y1, 6)) {
      const [, py] = frame.px(x0, typeof t === "object" ? t.at : t);
      ctx.beginPath();
      ctx.moveTo(frame.left - 4, py);
      ctx.lineTo(frame.left, py);
      ctx.stroke();
      ctx.fillText(typeof t === "object" ? t.label : fmt(t), frame.left - 6, py);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.fillText(xLabel, (frame.left + frame.right) / 2, frame.height - 1);
    ctx.save();
    ctx.translate(11, (frame.top + frame.bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(yLabel, 0, 0);
    ctx.restore();
    ctx.restore();
  }

  // Marching squares: line segments where the grid crosses `level`.
  function isolines(values, xs, ys, level, frame, ctx) {
    const n = ys.length, m = xs.length;
    const lerp = (a, b, va, vb) => a + ((level - va) / (vb - va)) * (b - a);
    for (let i = 0; i < n - 1; i++) {
      for (let j = 0; j < m - 1; j++) {
        const a = values[i][j], b = values[i][j + 1], c = values[i + 1][j + 1], d = values[i + 1][j];
        if (a === null || b === null || c === null || d === null) continue;
        const code = (a > level ? 1 : 0) | (b > level ? 2 : 0) | (c > level ? 4 : 0) | (d > level ? 8 : 0);
        if (code === 0 || code === 15) continue;
        const pts = [];
        if ((code & 1) !== (code & 2) >> 1) pts.push([lerp(xs[j], xs[j + 1], a, b), ys[i]]);
        if ((code & 2) >> 1 !== (code & 4) >> 2) pts.push([xs[j + 1], lerp(ys[i], ys[i + 1], b, c)]);
        if ((code & 4) >> 2 !== (code & 8) >> 3) pts.push([lerp(xs[j], xs[j + 1], d, c), ys[i + 1]]);
        if ((code & 8) >> 3 !== (code & 1)) pts.push([xs[j], lerp(ys[i], ys[i + 1], a, d)]);
        for (let k = 0; k + 1 < pts.length; k += 2) {
          const p = frame.px(pts[k][0], pts[k][1]);
          const q = frame.px(pts[k + 1][0], pts[k + 1][1]);
          ctx.moveTo(p[0], p[1]);
          ctx.lineTo(q[0], q[1]);
        }
      }
    }
  }

  // [min, max] of the finite values of a (nested) array, or null when there are none.
  function range(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values.flat()) {
      if (v !== null && Number.isFinite(v)) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    return lo <= hi ? [lo, hi] : null;
  }

  function extent(values) {
    return range(values) || [0, 1];
  }

  // The background of a 2-D map: banded colours (bilinear in the grid) plus contour lines.
  function contourImage(grid, frame) {
    const values = plotted(grid.z, grid.scale, grid.landscape.f_min);
    const [lo, hi] = extent(values);
    const span = hi > lo ? hi - lo : 1;
    const xs = grid.x, ys = grid.y, n = ys.length, m = xs.length;
    const w = Math.round(frame.right - frame.left), h = Math.round(frame.bottom - frame.top);
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(w, h);
    const [[x0, x1], [y0, y1]] = frame.box;
    for (let py = 0; py < h; py++) {
      const fy = ((y1 - ((py + 0.5) / h) * (y1 - y0)) - ys[0]) / (ys[n - 1] - ys[0]) * (n - 1);
      const i = Math.min(Math.max(Math.floor(fy), 0), n - 2), ty = fy - i;
      for (let px = 0; px < w; px++) {
        const fx = ((x0 + ((px + 0.5) / w) * (x1 - x0)) - xs[0]) / (xs[m - 1] - xs[0]) * (m - 1);
        const j = Math.min(Math.max(Math.floor(fx), 0), m - 2), tx = fx - j;
        const a = values[i][j], b = values[i][j + 1], c = values[i + 1][j + 1], d = values[i + 1][j];
        const k = (py * w + px) * 4;
        let v;
        if (a === null || b === null || c === null || d === null) {
          v = [a, b, c, d].find((q) => q !== null);
          if (v === undefined) {
            image.data.set([200, 200, 200, 255], k);
            continue;
          }
        } else {
          v = (1 - ty) * ((1 - tx) * a + tx * b) + ty * ((1 - tx) * d + tx * c);
        }
        const band = Math.min(BANDS - 1, Math.max(0, Math.floor(((v - lo) / span) * BANDS)));
        const rgb = BAND_RGB[band];
        image.data[k] = rgb[0];
        image.data[k + 1] = rgb[1];
        image.data[k + 2] = rgb[2];
        image.data[k + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, 0);
    // contour lines at the band edges, drawn in the full frame's coordinates
    const shifted = Object.assign(Object.create(Frame.prototype), frame, { left: 0, top: 0 });
    ctx.beginPath();
    for (let b = 1; b < BANDS; b++) isolines(values, xs, ys, lo + (b / BANDS) * span, shifted, ctx);
    ctx.strokeStyle = "rgba(29, 35, 48, 0.22)";
    ctx.lineWidth = 0.8;
    ctx.stroke();
    return canvas;
  }

  const MAP_MARGIN = { left: 46, right: 10, top: 10, bottom: 36, equal: true };

  // A drawn 2-D or 1-D landscape: background + overlays of starts, minima and runs.
  class LandscapeView {
    constructor(canvas, grid, size) {
      this.canvas = canvas;
      this.grid = grid;
      this.ctx = setup(canvas, size, size);
      const land = grid.landscape;
      this.dim = land.dim;
      if (this.dim === 2) {
        this.frame = new Frame(size, size, land.domain, MAP_MARGIN);
        this.background = contourImage(grid, this.frame);
      } else {
        const [lo, hi] = extent(grid.z);
        const pad = 0.08 * (hi > lo ? hi - lo : 1);
        this.frame = new Frame(size, size, [land.domain[0], [lo - pad, hi + pad]],
          Object.assign({}, MAP_MARGIN, { equal: false, left: 58 }));
      }
    }

    draw(state) {
      const { ctx, frame } = this;
      ctx.clearRect(0, 0, frame.width, frame.height);
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, frame.width, frame.height);
      if (this.dim === 2) {
        ctx.drawImage(this.background, frame.left, frame.top, frame.right - frame.left,
          frame.bottom - frame.top);
        axes(ctx, frame, "x", "y");
      } else {
        this.drawCurve();
        axes(ctx, frame, "x", "f(x)");
      }
      ctx.save();
      ctx.beginPath();
      ctx.rect(frame.left, frame.top, frame.right - frame.left, frame.bottom - frame.top);
      ctx.clip();
      for (const m of this.grid.landscape.minima) this.minimum(m);
      if (state.runs) this.runs(state.runs, state.upto);
      if (state.start) this.start(state.start);
      ctx.restore();
    }

    drawCurve() {
      const { ctx, frame, grid } = this;
      ctx.strokeStyle = "#344054";
      ctx.lineWidth = 2;
      ctx.beginPath();
      let pen = false;
      grid.x.forEach((x, k) => {
        const v = grid.z[k];
        if (v === null) { pen = false; return; }
        const [px, py] = frame.px(x, v);
        if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        pen = true;
      });
      ctx.stroke();
    }

    point(location, value) {
      return this.dim === 2 ? this.frame.px(location[0], location[1]) : this.frame.px(location[0], value);
    }

    minimum(m) {
      const [px, py] = this.point(m.location, m.value);
      star(this.ctx, px, py, 7, "#fff");
    }

    start(start) {
      const ctx = this.ctx;
      const value = this.dim === 1 ? this.valueAt(start[0]) : null;
      const [px, py] = this.point(start, value);
      ctx.save();
      ctx.fillStyle = "#fff";
      ctx.strokeStyle = "#1d2330";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(px, py, 6, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      ctx.restore();
    }

    valueAt(x) {
      const xs = this.grid.x;
      const t = (x - xs[0]) / (xs[xs.length - 1] - xs[0]) * (xs.length - 1);
      const k = Math.min(Math.max(Math.round(t), 0), xs.length - 1);
      return this.grid.z[k] === null ? 0 : this.grid.z[k];
    }

    runs(runs, upto) {
      const ctx = this.ctx;
      const pixel = (run, r) => {
        const p = run.trajectory[r];
        if (!p || p[0] === null || (this.dim === 2 && p[1] === null)) return null;
        if (this.dim === 2) return this.frame.px(p[0], p[1]);
        const f = run.losses[r];
        return f === null ? null : this.frame.px(p[0], f);
      };
      for (const pass of ["halo", "line"]) {
        for (const run of runs) {
          ctx.beginPath();
          let last = null;
          for (let r = 0; r <= upto && r < run.trajectory.length; r++) {
            const q = pixel(run, r);
            if (!q) break;
            if (last) ctx.lineTo(q[0], q[1]); else ctx.moveTo(q[0], q[1]);
            last = q;
          }
          ctx.lineJoin = "round";
          if (pass === "halo") {
            ctx.strokeStyle = "rgba(255,255,255,0.75)";
            ctx.lineWidth = 4.5;
          } else {
            ctx.strokeStyle = colour(run.optimizer_index);
            ctx.globalAlpha = run.seed_rank > 0 ? 0.55 : 1;
            ctx.lineWidth = 2;
          }
          ctx.stroke();
          ctx.globalAlpha = 1;
          if (pass === "line" && last) {
            const ended = run.trajectory.length > upto + 1 ? pixel(run, upto + 1) : last;
            ctx.fillStyle = colour(run.optimizer_index);
            ctx.strokeStyle = "#1d2330";
            ctx.lineWidth = 1.2;
            if (!ended) { // diverged right after this point
              ctx.font = "bold 16px system-ui, sans-serif";
              ctx.textAlign = "center";
              ctx.textBaseline = "middle";
              ctx.strokeText("✕", last[0], last[1]);
              ctx.fillText("✕", last[0], last[1]);
            } else {
              ctx.beginPath();
              ctx.arc(last[0], last[1], 4.5, 0, 2 * Math.PI);
              ctx.fill();
              ctx.stroke();
            }
          }
        }
      }
    }

    // Data coordinates of a click, or null outside the plot.
    toData(event) {
      const rect = this.canvas.getBoundingClientRect();
      const px = event.clientX - rect.left, py = event.clientY - rect.top;
      if (!this.frame.inside(px, py)) return null;
      const [x, y] = this.frame.data(px, py);
      return this.dim === 2 ? [x, y] : [x];
    }
  }

  // The loss (or f − f*) against the step, log scale when it spans decades.
  function lossChart(canvas, data, upto, width, height) {
    const ctx = setup(canvas, width, height);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    const margin = { left: 58, right: 12, top: 10, bottom: 34 };
    if (!data || data.runs.length === 0) {
      ctx.fillStyle = "#667085";
      ctx.font = "13px system-ui, sans-serif";
      ctx.fillText("Run optimizers to see their loss.", margin.left, height / 2);
      return;
    }
    const fStar = data.f_star;
    const gap = (v) => (v === null ? null : fStar === null ? v : v - fStar);
    const values = data.runs.map((run) => run.losses.map(gap));
    const found = range(values);
    let [lo, hi] = found || [0, 1];
    // log scale when the values are (numerically) non-negative and span over two decades;
    // values at or below zero (f reached f* in floating point) sit on the floor
    const positive = range(values.map((row) => row.map((v) => (v !== null && v > 0 ? v : null))));
    const log = found !== null && positive !== null && lo > -1e-9 * Math.abs(hi) &&
      positive[1] / positive[0] > 100;
    const floor = log ? Math.max(positive[0], positive[1] * 1e-16) : 0;
    const tr = (v) => (log ? Math.log10(Math.max(v, floor)) : v);
    if (log) { lo = Math.log10(floor); hi = Math.log10(positive[1]); }
    if (!(hi > lo)) { hi = lo + 1; }
    const steps = data.recorded_steps;
    const frame = new Frame(width, height, [[0, Math.max(steps[steps.length - 1], 1)], [lo, hi]], margin);
    let yTicks;
    if (log) {
      yTicks = [];
      const every = Math.max(1, Math.ceil((Math.ceil(hi) - Math.floor(lo)) / 7));
      for (let e = Math.ceil(lo); e <= Math.floor(hi); e += every) yTicks.push({ at: e, label: "1e" + e });
    }
    // grid lines
    ctx.strokeStyle = "#eef0f4";
    ctx.lineWidth = 1;
    for (const t of yTicks || ticks(lo, hi, 5)) {
      const [, py] = frame.px(0, typeof t === "object" ? t.at : t);
      ctx.beginPath(); ctx.moveTo(frame.left, py); ctx.lineTo(frame.right, py); ctx.stroke();
    }
    axes(ctx, frame, "step", fStar === null ? "f" : "f − f*", yTicks);
    ctx.save();
    ctx.beginPath();
    ctx.rect(frame.left, frame.top, frame.right - frame.left, frame.bottom - frame.top);
    ctx.clip();
    for (const run of data.runs) {
      ctx.beginPath();
      let pen = false;
      for (let r = 0; r <= upto && r < run.losses.length; r++) {
        const v = gap(run.losses[r]);
        if (v === null) break;
        const [px, py] = frame.px(steps[r], tr(v));
        if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        pen = true;
      }
      ctx.strokeStyle = colour(run.optimizer_index);
      ctx.globalAlpha = run.seed_rank > 0 ? 0.5 : 1;
      ctx.lineWidth = 1.8;
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    const [cx] = frame.px(steps[Math.min(upto, steps.length - 1)], lo);
    ctx.strokeStyle = "rgba(29,35,48,0.35)";
    ctx.setLineDash([4, 4]);
    ctx.beginPath(); ctx.moveTo(cx, frame.top); ctx.lineTo(cx, frame.bottom); ctx.stroke();
    ctx.restore();
  }

  // A five-pointed star: the known minima, on the map and the basin maps alike (as in the
  // command's matplotlib figures, where × marks where a run diverged).
  function star(ctx, px, py, r, fill) {
    ctx.save();
    ctx.beginPath();
    for (let k = 0; k < 10; k++) {
      const rad = k % 2 === 0 ? r : r * 0.45;
      const a = -Math.PI / 2 + (k * Math.PI) / 5;
      const x = px + rad * Math.cos(a), y = py + rad * Math.sin(a);
      if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.closePath();
    ctx.fillStyle = fill;
    ctx.strokeStyle = "#1d2330";
    ctx.lineWidth = 1.2;
    ctx.fill();
    ctx.stroke();
    ctx.restore();
  }

  // One basin map with its axes (x, y of the start) and a colour bar: cell (i, j) is the start
  // (xs[j], ys[i]); row 0 is the bottom. ``size`` is the side of the square of cells.
  function basinMap(canvas, map, landscape, size) {
    const n = map.labels.length;
    const margin = { left: 44, right: 70, top: 6, bottom: 34 };
    const width = size + margin.left + margin.right, height = size + margin.top + margin.bottom;
    const ctx = setup(canvas, width, height);
    const frame = new Frame(width, height, landscape.domain, margin);
    const cellW = (frame.right - frame.left) / n, cellH = (frame.bottom - frame.top) / n;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        ctx.fillStyle = basinColour(map.labels[i][j]);
        ctx.fillRect(frame.left + j * cellW, frame.bottom - (i + 1) * cellH, cellW + 0.5, cellH + 0.5);
      }
    }
    axes(ctx, frame, "x (start)", "y (start)");
    landscape.minima.forEach((m) => {
      const [px, py] = frame.px(m.location[0], m.location[1]);
      star(ctx, px, py, 6, "#fff");
    });
    // colour bar: one block per outcome, labelled
    const entries = landscape.minima.map((m, k) => [k, "min " + k]);
    for (const [code, text] of Object.entries(BASIN_CODES_TEXT)) entries.push([Number(code), text]);
    const x = frame.right + 10, h = Math.min(22, (frame.bottom - frame.top) / entries.length);
    ctx.save();
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    entries.forEach(([code, text], k) => {
      const y = frame.top + k * h;
      ctx.fillStyle = basinColour(code);
      ctx.fillRect(x, y, 12, h - 2);
      ctx.strokeStyle = "#98a2b3";
      ctx.strokeRect(x, y, 12, h - 2);
      ctx.fillStyle = "#475467";
      ctx.fillText(text, x + 16, y + (h - 2) / 2);
    });
    ctx.restore();
    canvas.dataset.colourbar = String(entries.length);
  }

  const BASIN_CODES_TEXT = { "-1": "none", "-2": "diverged", "-3": "invalid" };

  function basinColour(label) {
    if (label < 0) return BASIN_CODES[String(label)] || "#999";
    return BASIN_COLOURS[label % BASIN_COLOURS.length];
  }

  return { COLOURS, colour, basinColour, fmt, LandscapeView, lossChart, basinMap, plotted, ticks };
})();
window.Plot = Plot;
