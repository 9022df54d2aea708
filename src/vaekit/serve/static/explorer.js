// The explorer page: a latent map, live decoding, sliders, interpolation, and reading a drawing.
// Everything model-side happens on the server (see /docs); this file only draws and asks.
"use strict";

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const POINT_ALPHA = 0.6;  // the map's dots and the legend's swatches
const $ = (id) => document.getElementById(id);
const state = { model: null, map: null, z: null, a: null, b: null, drawn: null, bounds: null };

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response;
}

function label() {
  return state.model.n_classes ? Number($("label").value) : null;
}

function query(params) {
  const parts = Object.entries(params).filter(([, v]) => v !== null && v !== undefined);
  return parts.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
}

// Put a new image into <img id=…> only once it has decoded, so that no image on the page is ever
// broken or half-loaded: the new element replaces the old one. Returns the new element.
async function show(id, url) {
  const img = $(id).cloneNode(false);
  img.src = url;
  await img.decode();
  img.hidden = false;
  const old = $(id);
  old.replaceWith(img);
  if (old.src.startsWith("blob:")) URL.revokeObjectURL(old.src);
  return img;
}

// --- the map ------------------------------------------------------------------------------

function colourOf(label) {
  return COLOURS[(label ?? 0) % COLOURS.length];
}

function nameOf(label) {  // the class's name (user text: always set as text, never as HTML)
  return state.model.class_names[label] ?? String(label);
}

function buildLegend() {  // one swatch per label present among the dots, or "unlabelled"
  const { points, labels } = state.map;
  const present = labels ? [...new Set(labels)].sort((p, q) => p - q) : [null];
  for (const l of points.length ? present : []) {
    const item = document.createElement("li");
    const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
    swatch.style.backgroundColor = colourOf(l);
    swatch.style.opacity = POINT_ALPHA;
    item.dataset.label = l === null ? "" : String(l);
    const name = Object.assign(document.createElement("span"),
      { textContent: l === null ? "unlabelled" : nameOf(l) });
    item.append(swatch, name);
    $("legend").append(item);
  }
  $("axis-u").textContent = `${state.map.axis_titles[0]} →`;
  $("axis-v").textContent = `${state.map.axis_titles[1]} →`;
}

function positionOf(z) {  // (u, v) of a latent, as the server's projection defines it
  const d = z.map((v, k) => v - state.map.centre[k]);
  return state.map.axes.map((axis) => axis.reduce((s, a, k) => s + a * d[k], 0));
}

function latentAt(u, v) {  // centre + u·axis₁ + v·axis₂
  return state.map.centre.map((c, k) => c + u * state.map.axes[0][k] + v * state.map.axes[1][k]);
}

function computeBounds() {  // the dots and at least the prior's range (the server's)
  const [[ulo, uhi], [vlo, vhi]] = state.map.prior_range;
  let lo = [ulo, vlo], hi = [uhi, vhi];
  for (const [u, v] of state.map.points) {
    lo = [Math.min(lo[0], u), Math.min(lo[1], v)];
    hi = [Math.max(hi[0], u), Math.max(hi[1], v)];
  }
  const pad = 0.05 * Math.max(hi[0] - lo[0], hi[1] - lo[1]);
  state.bounds = { lo: [lo[0] - pad, lo[1] - pad], hi: [hi[0] + pad, hi[1] + pad] };
}

function toCanvas(u, v) {
  const c = $("map"), { lo, hi } = state.bounds;
  return [(u - lo[0]) / (hi[0] - lo[0]) * c.width, (1 - (v - lo[1]) / (hi[1] - lo[1])) * c.height];
}

function fromCanvas(x, y) {
  const c = $("map"), { lo, hi } = state.bounds;
  return [lo[0] + x / c.width * (hi[0] - lo[0]), lo[1] + (1 - y / c.height) * (hi[1] - lo[1])];
}

function marker(ctx, z, colour, text) {
  if (!z) return;
  const [x, y] = toCanvas(...positionOf(z));
  ctx.strokeStyle = colour; ctx.fillStyle = colour; ctx.lineWidth = 2.5;
  ctx.beginPath(); ctx.moveTo(x - 8, y); ctx.lineTo(x + 8, y);
  ctx.moveTo(x, y - 8); ctx.lineTo(x, y + 8); ctx.stroke();
  if (text) { ctx.font = "bold 13px system-ui"; ctx.fillText(text, x + 7, y - 7); }
}

function drawMap() {
  const c = $("map"), ctx = c.getContext("2d");
  ctx.fillStyle = "white"; ctx.fillRect(0, 0, c.width, c.height);
  const [ox, oy] = toCanvas(0, 0);
  ctx.strokeStyle = "#ddd"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(ox, 0); ctx.lineTo(ox, c.height);
  ctx.moveTo(0, oy); ctx.lineTo(c.width, oy); ctx.stroke();
  ctx.globalAlpha = POINT_ALPHA;
  state.map.points.forEach(([u, v], i) => {
    const [x, y] = toCanvas(u, v);
    ctx.fillStyle = colourOf(state.map.labels ? state.map.labels[i] : null);
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  ctx.globalAlpha = 1;
  if (state.a && state.b) {
    const [ax, ay] = toCanvas(...positionOf(state.a)), [bx, by] = toCanvas(...positionOf(state.b));
    ctx.strokeStyle = "#555"; ctx.setLineDash([4, 4]);
    ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke(); ctx.setLineDash([]);
  }
  marker(ctx, state.a, "#555", "A");
  marker(ctx, state.b, "#555", "B");
  marker(ctx, state.drawn, "#0057d9", "drawn");
  marker(ctx, state.z, "#d00000", "");
}

// --- decoding, throttled so that dragging stays live -----------------------------------------

let inFlight = false, again = false;

async function decode() {
  if (inFlight) { again = true; return; }
  inFlight = true;
  try {
    const z = state.z.map((v) => v.toFixed(4)).join(",");
    const response = await api(`/api/decode?${query({ z, label: label() })}`);
    const img = await show("decoded", URL.createObjectURL(await response.blob()));
    img.dataset.z = z;
    $("decoded-wait").hidden = true;
    showError("");
  } catch (error) {
    showError(error.message);
  } finally {
    inFlight = false;
    if (again) { again = false; decode(); }
  }
}

function setZ(z) {
  const [low, high] = state.model.latent_limit;
  state.z = z.map((v) => Math.max(low, Math.min(high, v)));
  $("z-text").textContent = "z = (" + state.z.map((v) => v.toFixed(2)).join(", ") + ")";
  document.querySelectorAll("#sliders input").forEach((s, k) => { s.value = state.z[k]; });
  drawMap();
  decode();
}

function buildSliders() {
  const box = $("sliders");
  if (state.model.latent_dim <= 2) return;
  const [min, max] = state.model.latent_range;  // the prior's 0.1% and 99.9% quantiles
  for (let k = 0; k < state.model.latent_dim; k++) {
    const name = "z" + String(k + 1).replace(/\d/g, (d) => "₀₁₂₃₄₅₆₇₈₉"[d]);  // z₁, z₂, …
    const row = document.createElement("label");
    const slider = Object.assign(document.createElement("input"),
      { type: "range", min, max, step: "any", value: 0 });
    slider.setAttribute("aria-label", name);
    slider.addEventListener("input", () => {
      const z = state.z.slice(); z[k] = Number(slider.value); setZ(z);
    });
    const title = Object.assign(document.createElement("span"), { className: "dim", textContent: name });
    row.append(title, slider);
    box.append(row);
  }
}

async function sampleLatent() {  // a draw from the run's prior, made by the server
  try {
    setZ((await (await api(`/api/sample?${query({ label: label() })}`)).json()).z);
  } catch (error) {
    showError(error.message);
  }
}

// --- drawing and reading an image -----------------------------------------------------------

// The drawing canvas has the run's image shape, DRAW_SIZE pixels on its longer side; the pen is
// PEN_PIXELS of the run's pixels wide, white for a grey run, the colour chosen for a colour one.
const DRAW_SIZE = 280, PEN_PIXELS = 2.2;

function setUpDrawing() {
  const c = $("draw"), ctx = c.getContext("2d");
  const [channels, height, width] = state.model.image_shape;
  const scale = DRAW_SIZE / Math.max(height, width);  // canvas pixels per image pixel
  c.width = Math.round(width * scale); c.height = Math.round(height * scale);
  $("pen-box").hidden = channels !== 3;
  const pen = () => (channels === 3 ? $("pen").value : "white");
  const clear = () => { ctx.fillStyle = "black"; ctx.fillRect(0, 0, c.width, c.height); };
  clear();
  let last = null;
  const point = (e) => { const r = c.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  c.addEventListener("pointerdown", (e) => { last = point(e); c.setPointerCapture(e.pointerId); });
  c.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = point(e);
    ctx.strokeStyle = pen(); ctx.lineWidth = PEN_PIXELS * scale; ctx.lineCap = "round";
    ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
    last = p;
  });
  const stop = () => { last = null; };
  c.addEventListener("pointerup", stop);
  c.addEventListener("pointerleave", stop);
  $("clear").addEventListener("click", () => { clear(); $("score").textContent = ""; });
  $("read").addEventListener("click", () => {  // the drawing at the run's image size
    const small = Object.assign(document.createElement("canvas"), { width, height });
    const sctx = small.getContext("2d");
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(c, 0, 0, width, height);
    analyse(small.toDataURL("image/png"));
  });
  $("upload").addEventListener("change", () => {
    const file = $("upload").files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => analyse(reader.result);
    reader.readAsDataURL(file);
  });
}

async function analyse(dataUrl) {
  $("score").textContent = "reading…";
  try {
    const response = await api("/api/analyse", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image: dataUrl, label: label() }),
    });
    const result = await response.json();
    await show("reconstruction", result.reconstruction);
    $("score").textContent =
      `log p(x) ≈ ${result.log_likelihood.toFixed(1)} nats — ${result.reading}`;
    state.drawn = result.z;
    drawMap();
    showError("");
  } catch (error) {
    $("score").textContent = "";
    showError(error.message);
  }
}

// --- start ----------------------------------------------------------------------------------

function describeData() {  // the page in the words of the run's data
  const m = state.model, [channels, height, width] = m.image_shape;
  $("draw-title").textContent = m.digits ? "Draw a digit" : "Draw or upload an image";
  $("dots").textContent = m.held_out
    ? `Dots are ${m.held_out} images' posterior means, coloured by label.`
    : "No held-out images of this run were found: the map has no dots.";
  const kind = channels === 3 ? "colour" : "grey";
  $("upload-what").textContent = m.uploads_resized
    ? `or upload a PNG/JPEG (brought to ${width}×${height}, ${kind})`
    : `or upload a ${width}×${height} PNG/JPEG (read as ${kind})`;
}

async function start() {
  state.model = await (await api("/api/model")).json();
  state.map = await (await api("/api/map")).json();
  const m = state.model;
  $("about").textContent = (m.data ? `${m.data}: ` : "") + `${m.latent_dim}-d latent, ${m.likelihood} decoder, ` +
    `${m.image_shape[1]}×${m.image_shape[2]} images` +
    (m.n_classes ? `, conditional on ${m.n_classes} classes` : "") +
    `; scores are importance-weighted log p(x) estimates (k = ${m.score_samples}).`;
  if (m.n_classes) {
    for (let l = 0; l < m.n_classes; l++) $("label").append(new Option(nameOf(l), String(l)));
    $("label-box").hidden = false;
    $("label").addEventListener("change", decode);
  }
  describeData();
  computeBounds();
  buildLegend();
  buildSliders();
  const c = $("map");
  let dragging = false;
  const pick = (e) => {
    const r = c.getBoundingClientRect();
    const [u, v] = fromCanvas((e.clientX - r.left) * c.width / r.width,
                              (e.clientY - r.top) * c.height / r.height);
    setZ(latentAt(u, v));
  };
  c.addEventListener("pointerdown", (e) => { dragging = true; c.setPointerCapture(e.pointerId); pick(e); });
  c.addEventListener("pointermove", (e) => { if (dragging) pick(e); });
  c.addEventListener("pointerup", () => { dragging = false; });
  $("sample").addEventListener("click", sampleLatent);
  $("set-a").addEventListener("click", () => { state.a = state.z.slice(); interpolateReady(); });
  $("set-b").addEventListener("click", () => { state.b = state.z.slice(); interpolateReady(); });
  $("interpolate").addEventListener("click", interpolate);
  $("traverse").addEventListener("click", traverse);
  setUpDrawing();
  setZ(latentAt(0, 0));
  document.body.dataset.ready = "true";
}

function interpolateReady() {
  $("interpolate").disabled = !(state.a && state.b);
  drawMap();
}

async function interpolate() {
  try {
    const join = (z) => z.map((v) => v.toFixed(4)).join(",");
    const response = await api(`/api/interpolate?${query({
      a: join(state.a), b: join(state.b), steps: 10, label: label() })}`);
    await show("strip", URL.createObjectURL(await response.blob()));
    showError("");
  } catch (error) {
    showError(error.message);
  }
}

async function traverse() {
  try {
    const base = state.z.map((v) => v.toFixed(4)).join(",");
    const response = await api(`/api/traverse?${query({
      dim: $("traverse-dim").value, base, steps: 9, label: label() })}`);
    await show("traversal", URL.createObjectURL(await response.blob()));
    showError("");
  } catch (error) {
    showError(error.message);
  }
}

start().catch((error) => showError(error.message));
