// The web lab page: controls, URL state, calls to the JSON API, animation, tables.
// Plain JavaScript, no build step; drawing lives in plot.js (window.Plot).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const LOSS_H = 300, BASIN_SIZE = 200;
  const SIDE_MIN = 380; // style.css: .side min-width (beside the map; below it when narrow)
  // The loss chart fills its panel's width.
  function lossWidth() {
    const figure = $("loss").parentElement;
    const style = getComputedStyle(figure);
    const inner = figure.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return Math.round(Math.max(280, inner));
  }

  // The map is square: as wide as the main column allows beside the side column, 420–620 px.
  function mapSize() {
    const main = document.querySelector("main");
    const style = getComputedStyle(main);
    const inner = main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const beside = inner - 16 - SIDE_MIN - 18;
    if (beside >= 420) return Math.round(Math.min(620, beside));
    return Math.round(Math.max(260, Math.min(620, inner - 16))); // the side column wraps below
  }
  const CONTOUR_RESOLUTION = 160;
  // The first view: the ill-conditioned ravine, where every optimizer converges within the
  // steps at its own pace (Nesterov first, heavy ball oscillating, Adam slowest) and the theory
  // panel has its closed-form rates to compare.
  const DEFAULT = {
    fn: "ravine",
    specs: ["sgd", "momentum", "nesterov", "adam"],
    steps: "300",
  };

  const lab = {
    catalogue: null, // /api/optimizers
    landscapes: [], // /api/landscapes
    limits: null,
    grid: null, // /api/contour answer
    view: null, // Plot.LandscapeView
    run: null, // last /api/run answer
    runRequest: null,
    theory: null,
    basins: null,
    upto: 0,
    playing: false,
    loading: Promise.resolve(), // the landscape request in flight (Run waits for it)
    explainRow: 0, // explain panel: which optimizer (index among the ticked ones)
  };
  // loading → ready → running → done (or error); mirrored on <body data-status> so tests and
  // scripts can wait for it with a CSS selector
  Object.defineProperty(lab, "status", {
    get: () => document.body.dataset.status || "loading",
    set: (value) => { document.body.dataset.status = value; },
  });
  window.descendLab = lab; // for people poking around (and the browser tests)

  const state = {
    fn: DEFAULT.fn, // registry name, or "expr"
    expr: "",
    domain: null, // expressions: [[x0, x1], [y0, y1]] or [[x0, x1]]
    params: {},
    scale: "auto",
    start: null,
    rows: [], // {id, name, ticked, conv, values: {key: text}}
    ran: false,
    basinsShown: false,
    lrAll: "", // "one lr for all": when set, every optimizer runs with this lr
    frame: null, // the step shown (slider), from a link
  };
  let nextRowId = 0;

  // ---------------------------------------------------------------------------- helpers
  function setStatus(text, kind = "") {
    const el = $("status");
    el.textContent = text;
    el.className = "status " + kind;
  }

  // ---------------------------------------------------------------------------- field errors
  // A message under the input it is about (client checks and the server's 422 answers alike).
  const FIELD_OF = {
    steps: "steps", tol: "tol", noise_batch: "noise-batch", noise_scale: "noise-scale",
    seeds: "seeds", schedule: "schedule", grid: "basin-grid", starts: "start-x",
  };

  function clearFieldErrors() {
    document.querySelectorAll(".field-error").forEach((n) => n.remove());
    document.querySelectorAll(".controls .invalid").forEach((n) => n.classList.remove("invalid"));
  }

  function fieldError(input, message) {
    input.classList.add("invalid");
    const holder = input.closest("label") || input.parentElement;
    const key = input.id || input.dataset.param || input.dataset.key || "";
    holder.querySelectorAll(".field-error[data-for='" + key + "']").forEach((n) => n.remove());
    holder.append(el("span", { class: "field-error", role: "alert", "data-for": key, text: message }));
  }

  class FieldError extends Error {
    constructor(input, message) {
      super(message);
      this.input = input;
    }
  }

  function cleanMessage(msg) {
    return String(msg).replace(/^Value error, /, "");
  }

  // Puts each error of a 422 answer at its field; returns the messages that have none.
  function markFieldErrors(detail) {
    if (!Array.isArray(detail)) return detail ? [String(detail)] : [];
    const rest = [];
    for (const d of detail) {
      const loc = (d.loc || []).filter((p) => p !== "body");
      const msg = cleanMessage(d.msg);
      let input = null;
      if (loc[0] === "optimizers") continue; // shown in the optimizer's row
      if (loc[0] === "function") {
        if (loc[1] === "params" && loc[2] !== undefined) {
          input = document.querySelector("#params input[data-param='" + loc[2] + "']");
        } else if (state.fn === "expr") {
          input = loc[1] === "domain" ? $("xlo") : $("expression");
        } else {
          input = $("function");
        }
      } else if (FIELD_OF[loc[0]]) {
        input = $(FIELD_OF[loc[0]]);
        if (loc[0] === "starts" && loc[2] === 1) input = $("start-y");
      }
      if (input) fieldError(input, msg);
      else rest.push((loc.length ? loc.join(".") + ": " : "") + msg);
    }
    return rest;
  }

  function showError(err) {
    lab.status = "error";
    if (err instanceof FieldError) {
      fieldError(err.input, err.message);
      setStatus("fix the marked field: " + err.message, "error");
      return;
    }
    if (err instanceof ApiError) {
      markOptimizerErrors(err.detail);
      const rest = markFieldErrors(err.detail);
      const rows = Array.isArray(err.detail) && err.detail.some((d) => (d.loc || []).includes("optimizers"));
      const placed = document.querySelectorAll(".field-error").length > 0 || rows;
      setStatus(rest.length ? rest.join("\n") : placed ? "fix the marked field(s)" : err.message, "error");
      return;
    }
    setStatus(err.message, "error");
  }

  function describeError(body, status) {
    if (body && Array.isArray(body.detail)) {
      return body.detail
        .map((d) => {
          const loc = (d.loc || []).filter((p) => p !== "body").join(".");
          return (loc ? loc + ": " : "") + String(d.msg).replace(/^Value error, /, "");
        })
        .join("\n");
    }
    if (body && body.detail) return String(body.detail);
    return "request failed (HTTP " + status + ")";
  }

  class ApiError extends Error {
    constructor(message, detail) {
      super(message);
      this.detail = detail;
    }
  }

  async function api(path, body, as = "json") {
    const init = body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    };
    const response = await fetch(path, init);
    if (!response.ok) {
      let payload = null;
      try { payload = await response.json(); } catch (e) { /* not JSON */ }
      throw new ApiError(describeError(payload, response.status), payload && payload.detail);
    }
    return as === "json" ? response.json() : response.blob();
  }

  function download(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 2000);
  }

  function number(text) {
    const t = String(text).trim();
    if (t === "") return null;
    const v = Number(t);
    return Number.isFinite(v) ? v : NaN;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  // ---------------------------------------------------------------------------- function
  function landscapeInfo(name) {
    return lab.landscapes.find((l) => l.name === name);
  }

  function functionRef() {
    if (state.fn === "expr") {
      const ref = { name: "expr:" + state.expr };
      if (state.domain) ref.domain = state.domain;
      return ref;
    }
    const params = {};
    for (const [k, v] of Object.entries(state.params)) {
      const x = number(v);
      if (x !== null) params[k] = Number.isNaN(x) ? v : x;
    }
    return { name: state.fn, params };
  }

  function buildFunctionSelect() {
    const select = $("function");
    const groups = { 2: el("optgroup", { label: "2-D functions" }), 1: el("optgroup", { label: "1-D functions" }) };
    for (const l of lab.landscapes) groups[l.dim].append(el("option", { value: l.name, text: l.name }));
    select.append(groups[2], groups[1],
      el("optgroup", { label: "your own" }, el("option", { value: "expr", text: "expression…" })));
    select.addEventListener("change", () => {
      state.fn = select.value;
      state.params = {};
      state.start = null;
      if (state.fn === "expr" && !state.expr) state.expr = "x**2 + 10*sin(y)";
      clearResults();
      syncFunctionControls();
      loadLandscape();
    });
    $("apply-expression").addEventListener("click", applyExpression);
    $("expression").addEventListener("keydown", (e) => { if (e.key === "Enter") applyExpression(); });
    $("scale").addEventListener("change", () => { state.scale = $("scale").value; loadLandscape(); });
  }

  function applyExpression() {
    state.expr = $("expression").value.trim();
    const bounds = ["xlo", "xhi", "ylo", "yhi"].map((id) => number($(id).value));
    const twoD = /\by\b|x2\b/.test(state.expr);
    state.domain = twoD ? [[bounds[0], bounds[1]], [bounds[2], bounds[3]]] : [[bounds[0], bounds[1]]];
    if (state.domain.flat().some((v) => v === null || Number.isNaN(v))) state.domain = null;
    state.start = null;
    clearResults();
    loadLandscape();
  }

  function syncFunctionControls() {
    $("function").value = state.fn;
    $("scale").value = state.scale;
    $("expression-box").hidden = state.fn !== "expr";
    if (state.fn === "expr") {
      $("expression").value = state.expr;
      if (state.domain) {
        const [[a, b], [c, d] = [-2, 2]] = state.domain;
        [["xlo", a], ["xhi", b], ["ylo", c], ["yhi", d]].forEach(([id, v]) => { $(id).value = v; });
      }
    }
    const box = $("params");
    box.replaceChildren();
    const info = landscapeInfo(state.fn);
    if (!info) return;
    for (const [key, def] of Object.entries(info.parameters)) {
      const input = el("input", { type: "text", "data-param": key, placeholder: def === null ? "—" : String(def) });
      input.value = state.params[key] !== undefined ? state.params[key] : "";
      input.addEventListener("change", () => {
        if (input.value.trim() === "") delete state.params[key];
        else state.params[key] = input.value.trim();
        state.start = null;
        clearResults();
        loadLandscape();
      });
      box.append(el("label", {}, key, input));
    }
  }

  function loadLandscape() {
    lab.loading = drawLandscape();
    return lab.loading;
  }

  // Each drawing is numbered: an answer that arrives after a newer drawing started (a function
  // chosen, then an expression applied before the first answer came back) is dropped, so a stale
  // landscape or status never overwrites the newer one.
  let drawing = 0;

  async function drawLandscape() {
    const mine = ++drawing;
    lab.status = "loading";
    clearFieldErrors();
    setStatus("drawing the landscape…");
    try {
      const grid = await api("/api/contour", {
        function: functionRef(), resolution: CONTOUR_RESOLUTION, scale: state.scale,
      });
      if (mine !== drawing) return;
      lab.grid = grid;
      const land = grid.landscape;
      lab.view = new Plot.LandscapeView($("contour"), grid, mapSize());
      if (!state.start || state.start.length !== land.dim) {
        state.start = land.starts.length ? land.starts[0].slice() : land.domain.map(([a, b]) => a + 0.2 * (b - a));
      }
      $("formula").textContent = land.formula;
      showParamsInEffect(land);
      $("description").textContent = land.kind === "registry" ? land.description : "";
      document.querySelectorAll(".ydomain").forEach((n) => { n.hidden = land.dim === 1; });
      updateLrPlaceholders();
      syncStart();
      $("basins").disabled = land.dim !== 2 || land.minima.length === 0;
      $("basins").title = $("basins").disabled ? "basins need a 2-D function with known minima" : "";
      redraw();
      updateUrl();
      lab.status = "ready";
      setStatus("");
    } catch (err) {
      if (mine !== drawing) return;
      lab.grid = null;
      showError(err);
    }
  }

  // The parameters in effect as placeholders: a derived one (the ravine's λ₂ from κ, κ from
  // λ₁ and λ₂) shows its value rather than "—".
  function showParamsInEffect(land) {
    const params = land.params || {};
    for (const input of document.querySelectorAll("#params input[data-param]")) {
      const key = input.dataset.param;
      let value = params[key];
      if ((value === undefined || value === null) && key === "kappa" && params.lam1 && params.lam2 !== undefined) {
        value = params.lam2 / params.lam1;
      }
      if (value !== undefined && value !== null) {
        input.placeholder = Plot.fmt(value, 6);
        input.title = "in effect: " + Plot.fmt(value, 6) + (state.params[key] === undefined ? " (default or derived)" : "");
      }
    }
  }

  // ---------------------------------------------------------------------------- start
  // A clicked coordinate, rounded to 1/10,000 of the domain's width (in decimal digits), so the
  // link shows a short number and reruns exactly this start.
  function snap(v, [lo, hi]) {
    const digits = Math.max(0, 4 - Math.floor(Math.log10(hi - lo)));
    return Number(v.toFixed(Math.min(digits, 12)));
  }

  function syncStart() {
    if (!state.start) return;
    $("start-x").value = Plot.fmt(state.start[0], 4);
    $("start-y").value = state.start.length > 1 ? Plot.fmt(state.start[1], 4) : "";
  }

  function setStart(point) {
    state.start = point;
    syncStart();
    clearResults(true);
    redraw();
    updateUrl();
    if (state.ran) runOptimizers();
  }

  // The start as typed: a number per coordinate, or a FieldError at the input that is not.
  function startInputs() {
    const dim = lab.grid ? lab.grid.landscape.dim : 2;
    const ids = dim === 1 ? ["start-x"] : ["start-x", "start-y"];
    return ids.map((id) => {
      const v = number($(id).value);
      if (v === null || Number.isNaN(v)) {
        const shown = $(id).value.trim() === "" ? "empty" : JSON.stringify($(id).value.trim()) + " is not a number";
        throw new FieldError($(id), id.slice(-1) + " of the start: " + shown + "; type a number or click the map");
      }
      return v;
    });
  }

  function startFromInputs() {
    for (const id of ["start-x", "start-y"]) {
      $(id).classList.remove("invalid");
      document.querySelectorAll(".field-error[data-for='" + id + "']").forEach((n) => n.remove());
    }
    try {
      setStart(startInputs());
    } catch (err) {
      showError(err);
    }
  }

  // ---------------------------------------------------------------------------- optimizers
  function addRow(name, after = null) {
    const row = { id: nextRowId++, name, ticked: false, conv: "", values: {}, open: false };
    if (after === null) state.rows.push(row);
    else state.rows.splice(state.rows.indexOf(after) + 1, 0, row);
    return row;
  }

  function defaultsOf(row) {
    const info = lab.catalogue[row.name];
    return info.defaults[row.conv || "torch"] || info.defaults.torch;
  }

  function specOf(row) {
    const items = [];
    if (row.conv) items.push("convention=" + row.conv);
    for (const h of lab.catalogue[row.name].hyperparameters) {
      const v = h.key === "lr" && state.lrAll.trim() !== "" ? state.lrAll : row.values[h.key];
      if (v !== undefined && String(v).trim() !== "") items.push(h.key + "=" + String(v).trim());
    }
    return items.length ? row.name + ":" + items.join(",") : row.name;
  }

  function parseSpec(spec) {
    const [rawName, rest = ""] = spec.split(/:(.*)/s);
    const name = rawName.trim().toLowerCase();
    const values = {};
    let conv = "";
    for (const item of rest.split(",")) {
      const [k, v] = item.split("=");
      if (!k || v === undefined) continue;
      if (k.trim() === "convention") conv = v.trim();
      else values[k.trim()] = v.trim();
    }
    return { name, conv, values };
  }

  function tickedRows() {
    return state.rows.filter((r) => r.ticked);
  }

  function updateLrPlaceholders() {
    renderOptimizers();
  }

  function renderOptimizers() {
    const list = $("optimizers");
    list.replaceChildren();
    const ticked = tickedRows();
    const lrs = lab.grid ? lab.grid.landscape.default_lrs : {};
    for (const row of state.rows) {
      const info = lab.catalogue[row.name];
      const index = ticked.indexOf(row);
      const swatch = el("span", { class: "swatch" });
      if (index >= 0) swatch.style.background = Plot.colour(index);
      const box = el("input", { type: "checkbox", "data-name": row.name });
      box.checked = row.ticked;
      box.addEventListener("change", () => {
        row.ticked = box.checked;
        renderOptimizers();
        updateUrl();
      });
      const tool = el("button", { type: "button", class: "tool", title: "hyperparameters", text: row.open ? "▾" : "⚙" });
      tool.addEventListener("click", () => { row.open = !row.open; renderOptimizers(); });
      const copy = el("button", { type: "button", class: "tool", title: "add another " + row.name, text: "+" });
      copy.addEventListener("click", () => {
        const twin = addRow(row.name, row);
        twin.ticked = true;
        twin.open = true;
        renderOptimizers();
        updateUrl();
      });
      const isTwin = state.rows.filter((r) => r.name === row.name).indexOf(row) > 0;
      const remove = isTwin ? el("button", { type: "button", class: "tool", title: "remove", text: "×" }) : null;
      if (remove) remove.addEventListener("click", () => {
        state.rows.splice(state.rows.indexOf(row), 1);
        renderOptimizers();
        updateUrl();
      });
      // Each row shows the lr it runs with: its own, the landscape's default (placeholder), or
      // the "one lr for all" value (then the row's field is locked).
      const lrDefault = lrs[row.name] !== undefined ? lrs[row.name] : defaultsOf(row).lr;
      const lr = el("input", {
        type: "text", class: "lr", "data-lr": row.name, "aria-label": row.name + " learning rate",
        placeholder: lrDefault === undefined || lrDefault === null ? "" : String(lrDefault),
        title: lrs[row.name] !== undefined ? "empty: the landscape's default lr" : "empty: the optimizer's default lr",
      });
      lr.value = state.lrAll.trim() !== "" ? state.lrAll : (row.values.lr ?? "");
      lr.disabled = state.lrAll.trim() !== "";
      lr.addEventListener("change", () => {
        if (lr.value.trim() === "") delete row.values.lr;
        else row.values.lr = lr.value.trim();
        renderOptimizers();
        updateUrl();
      });
      const item = el("li", { "data-row": row.id, class: row.error ? "error" : "" },
        el("div", { class: "head" },
          el("label", {}, box, swatch,
            el("span", { class: "name", text: row.name }),
            el("span", { class: "desc", text: info.description, title: info.description })),
          el("label", { class: "lr-label" }, "lr", lr),
          tool, copy, remove));
      if (row.open) item.append(details(row, lrs));
      list.append(item);
    }
  }

  function details(row, lrs) {
    const info = lab.catalogue[row.name];
    const defaults = defaultsOf(row);
    const box = el("div", { class: "details" });
    const specLine = el("div", { class: "spec", text: specOf(row) });
    const changed = () => { specLine.textContent = specOf(row); updateUrl(); };
    if (info.conventions.length) {
      const select = el("select", { "data-key": "convention" });
      for (const c of info.conventions) select.append(el("option", { value: c === "torch" ? "" : c, text: c }));
      select.value = row.conv;
      select.addEventListener("change", () => { row.conv = select.value; renderOptimizers(); updateUrl(); });
      box.append(el("label", {}, "convention", select));
    }
    for (const h of info.hyperparameters) {
      let fallback = defaults[h.key];
      if (h.key === "lr" && lrs[row.name] !== undefined) fallback = lrs[row.name];
      const shown = fallback === null || fallback === undefined ? "off" : String(fallback);
      let input;
      if (h.kind === "choice" || h.kind === "bool") {
        input = el("select", { "data-key": h.key });
        input.append(el("option", { value: "", text: shown + " (default)" }));
        for (const c of h.kind === "bool" ? ["true", "false"] : h.choices) input.append(el("option", { value: c, text: c }));
      } else {
        input = el("input", { type: "text", "data-key": h.key, placeholder: shown });
      }
      input.value = row.values[h.key] !== undefined ? row.values[h.key] : "";
      input.addEventListener("change", () => {
        if (input.value.trim() === "") delete row.values[h.key];
        else row.values[h.key] = input.value.trim();
        changed();
      });
      if (h.key === "lr" && lrs[row.name] !== undefined) input.title = "empty: the landscape's default lr";
      box.append(el("label", {}, h.key, input));
    }
    box.append(specLine);
    if (row.error) box.append(el("div", { class: "message", text: row.error }));
    return box;
  }

  function markOptimizerErrors(detail) {
    const ticked = tickedRows();
    for (const row of state.rows) row.error = null;
    if (Array.isArray(detail)) {
      for (const d of detail) {
        const loc = d.loc || [];
        const k = loc.indexOf("optimizers");
        if (k >= 0 && Number.isInteger(loc[k + 1]) && ticked[loc[k + 1]]) {
          ticked[loc[k + 1]].error = String(d.msg).replace(/^Value error, /, "");
          ticked[loc[k + 1]].open = true;
        }
      }
    }
    renderOptimizers();
  }

  // ---------------------------------------------------------------------------- settings
  function field(id, { integer = false, optional = false } = {}) {
    const input = $(id);
    const v = number(input.value);
    if (v === null) {
      if (optional) return null;
      throw new FieldError(input, id.replace("-", " ") + " needs a number");
    }
    if (Number.isNaN(v) || (integer && !Number.isInteger(v))) {
      throw new FieldError(input, id.replace("-", " ") + ": " + JSON.stringify(input.value) + " is not " + (integer ? "an integer" : "a number"));
    }
    return v;
  }

  function runRequest() {
    const specs = tickedRows().map(specOf);
    if (specs.length === 0) throw new Error("tick at least one optimizer");
    if (!lab.grid) throw new Error("the function is not drawn yet: fix it first (see the message at its field)");
    const start = startInputs();
    if (!state.start || start.some((v, i) => v !== Number(Plot.fmt(state.start[i], 4)))) state.start = start;
    const seeds = field("seeds", { integer: true });
    if (seeds < 1) throw new FieldError($("seeds"), "seeds must be at least 1");
    const body = {
      function: functionRef(),
      optimizers: specs,
      starts: [state.start],
      seeds: Array.from({ length: Math.max(1, Math.min(seeds, 64)) }, (_, k) => k),
      steps: field("steps", { integer: true }),
      tol: field("tol"),
      noise_scale: field("noise-scale"),
    };
    const batch = field("noise-batch", { integer: true, optional: true });
    if (batch !== null) body.noise_batch = batch;
    const schedule = $("schedule").value.trim();
    if (schedule) body.schedule = schedule;
    return body;
  }

  // ---------------------------------------------------------------------------- run
  function clearResults(keepFlags = false) {
    lab.run = null;
    lab.theory = null;
    lab.basins = null;
    stop();
    if (!keepFlags) { state.ran = false; state.basinsShown = false; }
    $("theory").hidden = true;
    $("basins-panel").hidden = true;
    $("explain").hidden = true;
    renderMetrics();
    renderLossLegend();
    Plot.lossChart($("loss"), null, 0, lossWidth(), LOSS_H);
    $("frame").max = 0;
    $("frame").value = 0;
    $("step-label").textContent = "step 0";
  }

  // Requests may overlap (a new start reruns while a run is in flight): the buttons come back
  // when the last one ends, as they were before the first began.
  let busyCount = 0;
  function busy(on) {
    busyCount = Math.max(0, busyCount + (on ? 1 : -1));
    if (on && busyCount > 1) return;
    if (!on && busyCount > 0) return;
    for (const id of ["run", "basins", "export-csv", "export-json", "export-gif"]) {
      if (on) $(id).dataset.wasDisabled = $(id).disabled;
      $(id).disabled = on ? true : $(id).dataset.wasDisabled === "true";
    }
    document.body.dataset.busy = on ? "1" : "";
  }

  async function runOptimizers() {
    let body;
    await lab.loading; // a landscape edit just before Run: its start first
    clearFieldErrors();
    try {
      body = runRequest();
    } catch (err) {
      showError(err);
      return;
    }
    lab.status = "running";
    busy(true);
    setStatus("running " + body.optimizers.length + " optimizer(s) for " + body.steps + " steps…");
    const started = performance.now();
    try {
      const [result, theory] = await Promise.all([
        api("/api/run", body),
        api("/api/theory", body).catch(() => null),
      ]);
      markOptimizerErrors(null);
      lab.run = result;
      lab.runRequest = body;
      lab.theory = theory;
      state.ran = true;
      tagSeeds(result);
      renderMetrics();
      renderLossLegend();
      renderTheory();
      const ms = Math.round(performance.now() - started);
      setStatus(result.runs.length + " run(s) × " + result.steps + " steps in " + ms + " ms");
      if (state.frame !== null) { // a link that shows one step: no animation
        const last = result.recorded_steps.length - 1;
        $("frame").max = last;
        lab.upto = Math.max(0, Math.min(last, state.frame));
        $("frame").value = lab.upto;
        state.frame = null;
        redraw();
        lab.status = "done";
      } else {
        lab.status = "animating"; // "done" once the animation reaches the last step
        play(true);
      }
      updateUrl();
      await refreshExplain();
    } catch (err) {
      showError(err);
    } finally {
      busy(false);
    }
  }

  function tagSeeds(result) {
    const seen = {};
    for (const run of result.runs) {
      seen[run.optimizer_index] = (seen[run.optimizer_index] || 0) + 1;
      run.seed_rank = seen[run.optimizer_index] - 1;
    }
  }

  // ---------------------------------------------------------------------------- drawing
  function redraw() {
    if (!lab.view) return;
    const runs = lab.run ? lab.run.runs : null;
    lab.view.draw({ start: state.start, runs, upto: lab.upto });
    const canvas = $("contour");
    canvas.dataset.runs = runs ? String(runs.length) : "0";
    canvas.dataset.upto = String(lab.upto);
    if (lab.run) {
      Plot.lossChart($("loss"), lab.run, lab.upto, lossWidth(), LOSS_H);
      const steps = lab.run.recorded_steps;
      $("step-label").textContent = "step " + steps[Math.min(lab.upto, steps.length - 1)] + " / " + lab.run.steps;
    }
  }

  let animation = null;
  function stop() {
    if (animation) cancelAnimationFrame(animation);
    animation = null;
    lab.playing = false;
    $("play").textContent = "▶";
  }

  function play(fromStart) {
    if (!lab.run) return;
    stop();
    const last = lab.run.recorded_steps.length - 1;
    $("frame").max = last;
    if (fromStart || lab.upto >= last) lab.upto = 0;
    const duration = Math.min(4000, Math.max(1200, last * 8));
    const t0 = performance.now() - (lab.upto / Math.max(last, 1)) * duration;
    lab.playing = true;
    $("play").textContent = "❚❚";
    const tick = (now) => {
      lab.upto = Math.min(last, Math.round(((now - t0) / duration) * last));
      $("frame").value = lab.upto;
      redraw();
      if (lab.upto < last) animation = requestAnimationFrame(tick);
      else { stop(); lab.status = "done"; }
    };
    animation = requestAnimationFrame(tick);
  }

  // ---------------------------------------------------------------------------- tables
  function renderMetrics() {
    const body = $("metrics").tBodies[0];
    body.replaceChildren();
    if (!lab.run) {
      body.append(el("tr", { class: "empty" }, el("td", { colspan: "11", text: "Tick optimizers and press Run." })));
      return;
    }
    const minima = lab.run.landscape.minima;
    for (const run of lab.run.runs) {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = Plot.colour(run.optimizer_index);
      const converged = run.steps_to_tol === null ? "not within " + lab.run.steps : String(run.steps_to_tol);
      let basin = "—";
      if (run.basin !== null && minima[run.basin]) {
        const m = minima[run.basin];
        basin = "(" + m.location.map((v) => Plot.fmt(v, 3)).join(", ") + ")";
      }
      const label = run.label + (lab.run.runs.length > lab.run.runs.filter((r) => r.seed === 0).length ? " · seed " + run.seed : "");
      body.append(el("tr", { "data-status": run.status },
        el("td", {}, swatch),
        el("td", { class: "spec", text: label, title: run.message || "" }),
        el("td", { text: Plot.fmt(run.lr, 4) + (run.lr_source === "landscape" ? "*" : ""), title: run.lr_source === "landscape" ? "the landscape's default lr" : "" }),
        el("td", { text: run.status, class: run.status === "ok" ? "good" : "bad", title: run.message || "" }),
        el("td", { text: converged, class: run.steps_to_tol === null ? "" : "good" }),
        el("td", { text: run.diverged ? "∞" : Plot.fmt(run.final_loss, 4) }),
        el("td", { text: basin }),
        el("td", { text: Plot.fmt(run.distance, 3) }),
        el("td", { text: Plot.fmt(run.path_length, 3) }),
        el("td", { text: run.overshoots === null ? "—" : String(run.overshoots) }),
        el("td", { text: run.diverged ? "step " + run.diverged_step : "no", class: run.diverged ? "bad" : "" })));
    }
  }

  function renderLossLegend() {
    const box = $("loss-legend");
    box.replaceChildren();
    if (!lab.run) return;
    const seen = new Set();
    for (const run of lab.run.runs) {
      if (seen.has(run.optimizer_index)) continue;
      seen.add(run.optimizer_index);
      const s = el("span", { class: "swatch" });
      s.style.background = Plot.colour(run.optimizer_index);
      box.append(el("span", {}, s, run.label));
    }
  }

  function renderTheory() {
    const t = lab.theory;
    const panel = $("theory");
    panel.hidden = !t;
    if (!t) return;
    panel.dataset.quadratic = t.quadratic ? "1" : "";
    $("theory-kind").textContent = t.quadratic ? "(quadratic)" : "";
    if (!t.quadratic) {
      $("theory-body").replaceChildren(
        el("p", { class: "hint", text: "No closed-form rates here: " + t.reason + "." }),
        el("p", { class: "hint", text: "Try ravine, bowl, booth or quadratic, or type a quadratic such as x**2 + 10*y**2, to see κ, the optimal α and β, and predicted against measured rates." }));
      return;
    }
    const f = (v) => Plot.fmt(v, 4);
    const useGd = el("button", { type: "button", text: "use GD optimum" });
    useGd.addEventListener("click", () => useOptimum("sgd", { lr: f(t.gd.alpha) }));
    const useHb = el("button", { type: "button", text: "use heavy-ball optimum" });
    useHb.addEventListener("click", () => useOptimum("momentum", { lr: f(t.heavy_ball.alpha), momentum: f(t.heavy_ball.beta) }));
    const optimum = el("table", {},
      el("thead", {}, el("tr", {}, ...["optimal", "α*", "β*", "rate", "steps to 1e−6", "stable for α <"].map((h) => el("th", { text: h })))),
      el("tbody", {},
        el("tr", {}, ...["gradient descent", f(t.gd.alpha), "0", f(t.gd.rate), t.gd.steps ?? "—", f(t.gd.max_lr)].map((v) => el("td", { text: String(v) }))),
        el("tr", {}, ...["heavy ball", f(t.heavy_ball.alpha), f(t.heavy_ball.beta), f(t.heavy_ball.rate), t.heavy_ball.steps ?? "—", f(t.heavy_ball.max_lr)].map((v) => el("td", { text: String(v) })))));
    const rows = t.runs.map((r) => el("tr", {},
      el("td", { class: "spec", text: r.spec }),
      ...(r.covered
        ? [f(r.predicted_rate), f(r.measured_rate), f(r.max_lr), r.stable ? "converges" : "diverges"].map((v) => el("td", { text: v }))
        : [el("td", { colspan: "4", text: r.note, class: "hint" })])));
    const measured = el("table", {},
      el("thead", {}, el("tr", {}, ...["optimizer", "predicted rate", "measured", "edge α <", ""].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows));
    $("theory-body").replaceChildren(
      el("dl", {},
        el("dt", { text: "κ = λmax/λmin" }), el("dd", { text: f(t.kappa) }),
        el("dt", { text: "eigenvalues" }), el("dd", { text: t.eigenvalues.map(f).join(", ") }),
        el("dt", { text: "minimizer" }), el("dd", { text: "(" + t.minimizer.map(f).join(", ") + ")" })),
      optimum,
      el("div", { class: "buttons" }, useGd, useHb),
      measured,
      el("p", { class: "hint", text: "heavy ball's edge is (2 + 2β*)/λmax. rate: per-step factor of ‖θ − θ*‖, measured on the exact-gradient, constant-lr run from (" + t.measured_from.map(f).join(", ") + ")." }));
  }

  function useOptimum(name, values) {
    state.lrAll = "";
    $("lr-all").value = "";
    let row = state.rows.find((r) => r.name === name && r.ticked) || state.rows.find((r) => r.name === name);
    row.ticked = true;
    row.conv = "";
    row.values = Object.assign({}, values);
    row.open = true;
    renderOptimizers();
    updateUrl();
    runOptimizers();
  }

  // ---------------------------------------------------------------------------- explain
  // θ, g, m, v, m̂, v̂, the denominator, the effective lr and the update of one optimizer at one
  // step: POST /api/explain runs descend.explain (the optimizer's trace hook), as the
  // `descend explain` command does, from the run's function, start and spec.
  function explainChoices() {
    if (!lab.run) return [];
    const seen = new Map();
    for (const run of lab.run.runs) if (!seen.has(run.optimizer_index)) seen.set(run.optimizer_index, run.label);
    return [...seen.entries()];
  }

  async function refreshExplain() {
    const panel = $("explain");
    if (!lab.run || !lab.runRequest) { panel.hidden = true; return; }
    panel.hidden = false;
    const choices = explainChoices();
    const select = $("explain-optimizer");
    select.replaceChildren(...choices.map(([i, label]) => el("option", { value: String(i), text: label })));
    if (!choices.some(([i]) => i === lab.explainRow)) lab.explainRow = choices.length ? choices[0][0] : 0;
    select.value = String(lab.explainRow);
    const input = $("explain-step");
    input.classList.remove("invalid");
    panel.querySelectorAll(".field-error").forEach((n) => n.remove());
    let step = 1;
    if (input.value.trim() !== "") {
      step = number(input.value);
      if (!Number.isInteger(step) || step < 1 || step > lab.run.steps) {
        fieldError(input, "a step from 1 to " + lab.run.steps);
        panel.dataset.state = "error";
        return;
      }
    }
    const request = lab.runRequest;
    const body = {
      function: request.function,
      optimizer: request.optimizers[lab.explainRow],
      start: request.starts[0],
      step,
    };
    panel.dataset.state = "loading";
    try {
      const answer = await api("/api/explain", body);
      renderExplain(answer, request);
      panel.dataset.state = "ready";
    } catch (err) {
      panel.dataset.state = "error";
      $("explain-table").tBodies[0].replaceChildren(el("tr", {}, el("td", { colspan: "4", class: "bad", text: err.message })));
    }
  }

  function renderExplain(answer, request) {
    const dim = answer.start.length;
    const rows = answer.quantities.map((q) => el("tr", { "data-quantity": q.name, title: q.meaning },
      el("td", { text: q.name.replace(/_/g, " ") }),
      el("td", { class: "symbol", text: q.symbol }),
      ...q.values.slice(0, dim).map((v) => el("td", { "data-value": v === null ? "nan" : String(v), text: v === null ? "—" : Plot.fmt(v, 6) }))));
    $("explain-table").tBodies[0].replaceChildren(...rows);
    $("explain-table").dataset.step = String(answer.step);
    $("explain-table").dataset.spec = answer.spec;
    $("explain-command").textContent = answer.command || "(a parametrised function: the command line names registered functions only)";
    const ignored = [];
    if (request.noise_batch !== undefined) ignored.push("gradient noise");
    if (request.schedule) ignored.push("the lr schedule");
    $("explain-note").textContent = (ignored.length ? "This table leaves out " + ignored.join(" and ") + " (the run on the map has them). " : "") +
      "Step " + answer.step + " of " + answer.spec + " from (" + answer.start.map((v) => Plot.fmt(v, 6)).join(", ") + ").";
  }

  // ---------------------------------------------------------------------------- basins
  async function showBasins() {
    let body;
    await lab.loading;
    clearFieldErrors();
    try {
      const run = runRequest();
      const grid = field("basin-grid", { integer: true });
      body = {
        function: run.function,
        optimizers: run.optimizers,
        grid,
        steps: run.steps,
        tol: run.tol,
      };
    } catch (err) {
      showError(err);
      return;
    }
    busy(true);
    lab.status = "running";
    setStatus("basins: " + body.optimizers.length + " map(s) of " + body.grid + "×" + body.grid + " starts…");
    try {
      const started = performance.now();
      lab.basins = await api("/api/basins", body);
      state.basinsShown = true;
      renderBasins();
      updateUrl();
      setStatus("basins in " + Math.round(performance.now() - started) + " ms");
      lab.status = "done";
    } catch (err) {
      showError(err);
    } finally {
      busy(false);
    }
  }

  function renderBasins() {
    const b = lab.basins;
    $("basins-panel").hidden = !b;
    if (!b) return;
    const legend = $("basin-legend");
    legend.replaceChildren();
    const chip = (colour, text) => {
      const s = el("span", { class: "swatch" });
      s.style.background = colour;
      return el("span", {}, s, text);
    };
    b.landscape.minima.forEach((m, k) => legend.append(chip(Plot.basinColour(k),
      "(" + m.location.map((v) => Plot.fmt(v, 3)).join(", ") + ") f = " + Plot.fmt(m.value, 3))));
    for (const [code, text] of Object.entries(b.codes)) legend.append(chip(Plot.basinColour(Number(code)), text));
    const maps = $("basin-maps");
    maps.replaceChildren();
    b.maps.forEach((map, k) => {
      const canvas = el("canvas", { "data-spec": map.spec });
      Plot.basinMap(canvas, map, b.landscape, BASIN_SIZE);
      const share = Object.entries(map.shares)
        .filter(([code]) => Number(code) >= 0)
        .reduce((s, [, v]) => s + v, 0);
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = Plot.colour(k);
      maps.append(el("figure", {}, canvas,
        el("figcaption", {}, swatch, " " + map.label),
        el("div", { class: "hint", text: (Math.floor(share * 1000) / 10) + "% reach a minimum" })));
    });
  }

  // ---------------------------------------------------------------------------- export
  async function exportAs(kind) {
    let body;
    await lab.loading;
    clearFieldErrors();
    try { body = runRequest(); } catch (err) { showError(err); return; }
    busy(true);
    try {
      if (kind === "csv") {
        download(await api("/api/run.csv", body, "blob"), "descend-trajectories.csv");
      } else if (kind === "json") {
        const result = lab.run && JSON.stringify(lab.runRequest) === JSON.stringify(body) ? lab.run : await api("/api/run", body);
        const text = JSON.stringify({ request: body, result }, null, 1);
        download(new Blob([text], { type: "application/json" }), "descend-run.json");
      } else {
        const gifBody = Object.assign({}, body, { frames: 60, size: 420, scale: state.scale });
        setStatus("drawing the GIF…");
        download(await api("/api/gif", gifBody, "blob"), "descend-run.gif");
      }
      setStatus("exported " + kind.toUpperCase());
    } catch (err) {
      showError(err);
    } finally {
      busy(false);
    }
  }

  // ---------------------------------------------------------------------------- URL state
  const SETTINGS = [
    ["steps", "steps"], ["tol", "tol"], ["noise-batch", "batch"], ["noise-scale", "sigma"],
    ["seeds", "seeds"], ["schedule", "sched"], ["basin-grid", "bgrid"],
  ];
  const SETTING_DEFAULTS = {};

  function updateUrl() {
    const q = new URLSearchParams();
    q.set("f", state.fn === "expr" ? "expr:" + state.expr : state.fn);
    if (state.fn === "expr" && state.domain) q.set("dom", state.domain.flat().join(","));
    for (const [k, v] of Object.entries(state.params)) q.set("p." + k, v);
    if (state.scale !== "auto") q.set("scale", state.scale);
    if (state.start) q.set("start", state.start.map(String).join(","));  // exact: the link reruns it
    for (const row of tickedRows()) q.append("o", specOf(row));
    // Every field, defaults included: a link must not depend on the page's defaults.
    for (const [id, key] of SETTINGS) q.set(key, $(id).value.trim());
    if (state.lrAll.trim() !== "") q.set("lr", state.lrAll.trim());
    if (lab.run && !lab.playing) {
      const last = lab.run.recorded_steps.length - 1;
      if (lab.upto < last) q.set("t", String(lab.upto));
    }
    if (state.ran) {
      q.set("ex", String(lab.explainRow));
      if ($("explain-step").value.trim() !== "") q.set("exstep", $("explain-step").value.trim());
    }
    if (state.ran) q.set("run", "1");
    if (state.basinsShown) q.set("basins", "1");
    history.replaceState(null, "", "?" + q.toString());
  }

  function readUrl() {
    const q = new URLSearchParams(location.search);
    const f = q.get("f");
    if (f && f.toLowerCase().startsWith("expr:")) {
      state.fn = "expr";
      state.expr = f.slice(5);
      const dom = (q.get("dom") || "").split(",").map(Number);
      if (dom.length === 4 && dom.every(Number.isFinite)) state.domain = [[dom[0], dom[1]], [dom[2], dom[3]]];
      else if (dom.length === 2 && dom.every(Number.isFinite)) state.domain = [[dom[0], dom[1]]];
    } else if (f && landscapeInfo(f)) {
      state.fn = f;
    } else if (f) {
      setStatus("unknown function " + JSON.stringify(f) + " in the link; showing " + state.fn, "error");
    }
    for (const [k, v] of q.entries()) if (k.startsWith("p.")) state.params[k.slice(2)] = v;
    if (["linear", "log"].includes(q.get("scale"))) state.scale = q.get("scale");
    const start = (q.get("start") || "").split(",").filter((s) => s !== "").map(Number);
    if (start.length && start.every(Number.isFinite)) state.start = start;
    const specs = q.getAll("o");
    for (const spec of specs.length ? specs : DEFAULT.specs) {
      const parsed = parseSpec(spec);
      if (!lab.catalogue[parsed.name]) continue;
      let row = state.rows.find((r) => r.name === parsed.name && !r.ticked && !r.used);
      if (!row) row = addRow(parsed.name, state.rows.filter((r) => r.name === parsed.name).pop());
      Object.assign(row, { ticked: true, used: true, conv: parsed.conv, values: parsed.values });
    }
    for (const [id, key] of SETTINGS) if (q.has(key)) $(id).value = q.get(key);
    if (!q.has("steps")) $("steps").value = DEFAULT.steps;
    if (q.has("lr")) state.lrAll = q.get("lr");
    $("lr-all").value = state.lrAll;
    const t = Number(q.get("t"));
    if (q.has("t") && Number.isInteger(t) && t >= 0) state.frame = t;
    const ex = Number(q.get("ex"));
    if (q.has("ex") && Number.isInteger(ex) && ex >= 0) lab.explainRow = ex;
    if (q.has("exstep")) $("explain-step").value = q.get("exstep");
    return { run: q.get("run") === "1", basins: q.get("basins") === "1" };
  }

  // ---------------------------------------------------------------------------- start-up
  async function init() {
    for (const [id] of SETTINGS) SETTING_DEFAULTS[id] = $(id).value.trim();
    SETTING_DEFAULTS.steps = DEFAULT.steps;
    try {
      [lab.catalogue, lab.landscapes, lab.limits] = await Promise.all([
        api("/api/optimizers"), api("/api/landscapes"), api("/api/limits"),
      ]);
    } catch (err) {
      setStatus("could not reach the server: " + err.message, "error");
      return;
    }
    for (const name of Object.keys(lab.catalogue)) addRow(name);
    buildFunctionSelect();
    const flags = readUrl();
    syncFunctionControls();
    renderOptimizers();
    Plot.lossChart($("loss"), null, 0, lossWidth(), LOSS_H);

    $("contour").addEventListener("click", (event) => {
      if (!lab.view) return;
      const point = lab.view.toData(event);
      if (point) setStart(point.map((v, i) => snap(v, lab.grid.landscape.domain[i])));
    });
    $("start-x").addEventListener("change", startFromInputs);
    $("start-y").addEventListener("change", startFromInputs);
    $("run").addEventListener("click", runOptimizers);
    $("basins").addEventListener("click", showBasins);
    $("export-csv").addEventListener("click", () => exportAs("csv"));
    $("export-json").addEventListener("click", () => exportAs("json"));
    $("export-gif").addEventListener("click", () => exportAs("gif"));
    $("copy-link").addEventListener("click", async () => {
      updateUrl();
      try {
        await navigator.clipboard.writeText(location.href);
        setStatus("link copied: it reproduces this view");
      } catch (e) {
        setStatus(location.href);
      }
    });
    $("play").addEventListener("click", () => (lab.playing ? stop() : play(false)));
    $("frame").addEventListener("input", () => {
      stop();
      lab.upto = Number($("frame").value);
      redraw();
      updateUrl();
    });
    $("frame").addEventListener("change", () => {
      if (!lab.run) return;
      const step = lab.run.recorded_steps[lab.upto];
      if (step >= 1) { $("explain-step").value = String(step); updateUrl(); refreshExplain(); }
    });
    $("lr-all").addEventListener("change", () => {
      state.lrAll = $("lr-all").value.trim();
      renderOptimizers();
      updateUrl();
    });
    $("explain-optimizer").addEventListener("change", () => {
      lab.explainRow = Number($("explain-optimizer").value);
      updateUrl();
      refreshExplain();
    });
    $("explain-step").addEventListener("change", () => { updateUrl(); refreshExplain(); });
    for (const [id] of SETTINGS) $(id).addEventListener("change", updateUrl);

    await loadLandscape();
    if (lab.status !== "ready") return;
    if (flags.run) await runOptimizers();
    if (flags.basins) await showBasins();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
