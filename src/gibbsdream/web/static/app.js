// The gibbsdream page: pick a model, paint a hole or set up chains, run a job, watch it live.
// Plain JavaScript with no libraries, so the page works offline; everything talks to this server.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 150;

const state = {
  models: [],
  limits: {},
  model: null,
  source: null, // image jobs: {ref: "test:3" or a PNG data URL, canvas: W x H pixels}
  hole: null, // Uint8Array(H * W), 1 = fill in
  job: null, // {id, kind, trace: {mean, low, high}, timer}
  lastJob: null,
  autoCaption: "", // the caption field's text when the page filled it in from a gallery image
};

// ---- helpers ----------------------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("cannot reach the gibbsdream server; is it still running?");
  }
  let data = {};
  try { data = await response.json(); } catch (err) { /* an empty or non-JSON body */ }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not show that image"));
    img.src = src;
  });
}

function randomSeed() { return Math.floor(Math.random() * 1e9); }

function intValue(id) {
  const text = $(id).value.trim();
  return /^-?\d+$/.test(text) ? parseInt(text, 10) : text;
}

// ---- models -----------------------------------------------------------------------------------

// The samplers and annealing kinds the server offers (its sampler registry); the page's own
// options label the built-in samplers, and a sampler the page does not know is shown by its summary.
function fillChoices(samplers, anneals) {
  if (Array.isArray(samplers) && samplers.length) {
    const select = $("i-sampler");
    const labels = new Map([...select.options].map((o) => [o.value, o.textContent]));
    select.replaceChildren(...samplers.map((s) => new Option(labels.get(s.name) || `${s.name}: ${s.summary}`, s.name)));
  }
  if (Array.isArray(anneals) && anneals.length) {
    for (const id of ["i-anneal", "s-anneal"]) $(id).replaceChildren(...anneals.map((a) => new Option(a, a)));
  }
}

async function start() {
  document.querySelectorAll(".dice").forEach((b) => b.addEventListener("click", () => {
    $(b.dataset.for).value = randomSeed();
  }));
  try {
    const data = await api("/api/models");
    state.models = data.models;
    state.limits = data.limits;
    fillChoices(data.samplers, data.anneals);
    if (!$("i-block").value) $("i-block").value = data.block;  // the library's default schedule
    if (data.defaults) {  // the library's defaults, defined once there
      $("i-mask-schedule").value = data.defaults.mask_schedule;
      $("i-choice-temperature").value = data.defaults.choice_temperature;
      $("i-block-select").value = data.defaults.block_select;
      $("s-replicas").value = data.defaults.replicas;
      state.defaultSteps = data.defaults.steps;  // per sampler: confidence decoding takes fewer
    }
  } catch (err) {
    showError(err.message);
    return;
  }
  for (const m of state.models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} (${m.kind === "image" ? "images" : "strings"})`;
    $("model").appendChild(option);
  }
  $("i-steps").max = $("s-steps").max = state.limits.max_steps;
  $("s-chains").max = state.limits.max_chains;
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted && state.models.some((m) => m.name === wanted)) $("model").value = wanted;
  $("model").addEventListener("change", () => chooseModel($("model").value));
  setUpPainting();
  setUpImageControls();
  setUpStringControls();
  await chooseModel($("model").value);
}

async function chooseModel(name) {
  showError("");
  stopPolling();
  const m = state.models.find((x) => x.name === name);
  state.model = m;
  if (!m) return;
  $("image-ui").hidden = m.kind !== "image";
  $("string-ui").hidden = m.kind !== "strings";
  if (m.kind === "image") {
    $("model-about").textContent = `Orderless NADE, ${m.description}`;
    $("caption-row").hidden = !m.caption;
    if (!m.caption) $("i-caption").value = "";
    await showGallery(m);
  } else {
    $("model-about").textContent = `RBM over ${m.positions} characters, ${m.hidden} hidden units`;
    const init = $("s-init");
    init.innerHTML = "";
    for (const name of m.inits) {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      init.appendChild(option);
    }
    init.value = "uniform";
    $("s-clamp-label").textContent = m.clamp === "prefix" ? "Clamped prefix" : "Clamped suffix";
    clearStringOutput();
  }
}

// ---- image: source and hole --------------------------------------------------------------------

async function showGallery(m) {
  const gallery = $("gallery");
  gallery.innerHTML = "";
  state.hole = new Uint8Array(m.width * m.height);
  resetImageOutput();
  const data = await api(`/api/models/${encodeURIComponent(m.name)}/images`).catch((err) => {
    showError(err.message);
    return {images: []};
  });
  // The caption field offers the gallery's captions; picking an image fills in its first one,
  // unless the user has written their own.
  const offered = $("caption-list");
  offered.innerHTML = "";
  const seen = new Set();
  if ($("i-caption").value === state.autoCaption) $("i-caption").value = "";  // the last model's, not the user's
  state.autoCaption = "";
  for (const item of data.images) {
    const img = document.createElement("img");
    const captions = item.captions || [];
    img.src = item.png;
    img.alt = item.id;
    img.title = `${data.split === "test" ? "held-out" : data.split} image ${item.id.split(":")[1]}`
      + (captions.length ? `: ${captions[0]}` : "");
    img.dataset.ref = item.id;
    img.addEventListener("click", () => useSource(item.id, item.png, img, captions[0]));
    gallery.appendChild(img);
    for (const text of captions) {
      if (seen.has(text)) continue;
      seen.add(text);
      const option = document.createElement("option");
      option.value = text;
      offered.appendChild(option);
    }
  }
  const first = gallery.querySelector("img");
  if (first) {
    await useSource(first.dataset.ref, first.src, first, (data.images[0].captions || [])[0]);
    await setMask("centre");
  } else {
    // No built-in images: start from a mid-gray canvas until something is uploaded.
    const blank = document.createElement("canvas");
    blank.width = m.width; blank.height = m.height;
    const ctx = blank.getContext("2d");
    ctx.fillStyle = "#888"; ctx.fillRect(0, 0, m.width, m.height);
    await useSource(blank.toDataURL("image/png"), blank.toDataURL("image/png"), null);
  }
}

async function useSource(ref, png, thumb, caption) {
  const m = state.model;
  const field = $("i-caption");
  if (m.caption && caption && (!field.value.trim() || field.value === state.autoCaption)) {
    field.value = state.autoCaption = caption;
  }
  const img = await loadImage(png);
  const canvas = document.createElement("canvas");
  canvas.width = m.width; canvas.height = m.height;
  canvas.getContext("2d").drawImage(img, 0, 0);
  state.source = {ref, canvas};
  document.querySelectorAll(".gallery img").forEach((x) => x.classList.toggle("chosen", x === thumb));
  drawPaint();
}

async function uploadFile(file) {
  showError("");
  $("upload-note").textContent = "";
  if (!file) return;
  const m = state.model;
  const dataUrl = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("the browser could not read that file"));
    reader.readAsDataURL(file);
  });
  try {
    const data = await api(`/api/models/${encodeURIComponent(m.name)}/upload`, {data: dataUrl});
    await useSource(data.png, data.png, null);
    $("upload-note").textContent = `${file.name}: ${data.note}`;
  } catch (err) {
    showError(err.message);
  }
}

function holeRows() {
  const m = state.model;
  const rows = [];
  for (let y = 0; y < m.height; y++) rows.push(Array.from(state.hole.slice(y * m.width, (y + 1) * m.width)));
  return rows;
}

async function setMask(spec) {
  const m = state.model;
  showError("");
  try {
    const data = await api(`/api/models/${encodeURIComponent(m.name)}/mask`, {spec, seed: intValue("i-seed")});
    state.hole = Uint8Array.from(data.hole.flat());
    drawPaint();
  } catch (err) {
    showError(err.message);
  }
}

let stripes = null;

function holePattern(ctx) {
  // Diagonal magenta and white stripes: unlike a flat colour, they cannot be mistaken for pixels.
  if (!stripes) {
    stripes = document.createElement("canvas");
    stripes.width = stripes.height = 8;
    const s = stripes.getContext("2d");
    s.fillStyle = "rgba(255, 255, 255, 0.85)";
    s.fillRect(0, 0, 8, 8);
    s.strokeStyle = "rgb(214, 36, 150)";
    s.lineWidth = 2.5;
    for (const offset of [-8, 0, 8]) {
      s.beginPath();
      s.moveTo(offset, 8);
      s.lineTo(offset + 8, 0);
      s.stroke();
    }
  }
  return ctx.createPattern(stripes, "repeat");
}

function paintScale() {
  const m = state.model;
  return Math.max(1, Math.ceil(320 / Math.max(m.width, m.height)));
}

function drawPaint() {
  const m = state.model;
  if (!m || m.kind !== "image" || !state.source) return;
  const canvas = $("paint");
  const s = paintScale();
  if (canvas.width !== m.width * s || canvas.height !== m.height * s) {
    canvas.width = m.width * s;
    canvas.height = m.height * s;
    canvas.style.aspectRatio = `${m.width} / ${m.height}`;
  }
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(state.source.canvas, 0, 0, canvas.width, canvas.height);
  ctx.fillStyle = holePattern(ctx);
  let count = 0;
  for (let y = 0; y < m.height; y++) {
    for (let x = 0; x < m.width; x++) {
      if (state.hole[y * m.width + x]) {
        ctx.fillRect(x * s, y * s, s, s);
        count++;
      }
    }
  }
  $("hole-count").textContent = `${count} of ${m.width * m.height} pixels to fill`;
}

function setUpPainting() {
  const canvas = $("paint");
  let drawing = false, last = null, anchor = null, before = null;

  const cellOf = (event) => {
    const m = state.model;
    const box = canvas.getBoundingClientRect();
    const x = Math.floor(((event.clientX - box.left) / box.width) * m.width);
    const y = Math.floor(((event.clientY - box.top) / box.height) * m.height);
    return [Math.min(m.width - 1, Math.max(0, x)), Math.min(m.height - 1, Math.max(0, y))];
  };
  const tool = () => document.querySelector("input[name=tool]:checked").value;
  const dab = ([cx, cy], value) => {
    const m = state.model;
    const size = parseInt($("brush").value, 10);
    const low = -Math.floor((size - 1) / 2), high = low + size - 1;
    for (let dy = low; dy <= high; dy++) {
      for (let dx = low; dx <= high; dx++) {
        // Sizes up to 3 are squares; larger brushes are round.
        if (size > 3 && dx * dx + dy * dy > (size / 2) ** 2) continue;
        const x = cx + dx, y = cy + dy;
        if (x >= 0 && y >= 0 && x < m.width && y < m.height) state.hole[y * m.width + x] = value;
      }
    }
  };
  const stroke = (from, to, value) => {
    // Every cell on the segment, so a quick drag leaves no gaps.
    const n = Math.max(Math.abs(to[0] - from[0]), Math.abs(to[1] - from[1]), 1);
    for (let i = 0; i <= n; i++) {
      dab([Math.round(from[0] + ((to[0] - from[0]) * i) / n), Math.round(from[1] + ((to[1] - from[1]) * i) / n)], value);
    }
  };
  const box = (a, b) => {
    const m = state.model;
    state.hole = before.slice();
    for (let y = Math.min(a[1], b[1]); y <= Math.max(a[1], b[1]); y++) {
      for (let x = Math.min(a[0], b[0]); x <= Math.max(a[0], b[0]); x++) state.hole[y * m.width + x] = 1;
    }
  };

  canvas.addEventListener("pointerdown", (event) => {
    if (!state.model || state.model.kind !== "image" || event.button > 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    last = anchor = cellOf(event);
    before = state.hole.slice();
    if (tool() === "box") box(anchor, anchor);
    else stroke(last, last, tool() === "eraser" ? 0 : 1);
    drawPaint();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const here = cellOf(event);
    if (tool() === "box") box(anchor, here);
    else stroke(last, here, tool() === "eraser" ? 0 : 1);
    last = here;
    drawPaint();
  });
  const end = () => { drawing = false; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
}

// ---- image: jobs ---------------------------------------------------------------------------------

function setUpImageControls() {
  $("upload").addEventListener("change", (event) => uploadFile(event.target.files[0]));
  $("mask-centre").addEventListener("click", () => setMask("centre"));
  $("mask-random").addEventListener("click", () => setMask("random:0.3"));
  $("mask-clear").addEventListener("click", () => { state.hole.fill(0); drawPaint(); });
  $("i-run").addEventListener("click", runImageJob);
  $("i-cancel").addEventListener("click", cancelJob);
  $("i-sampler").addEventListener("change", showSamplerFields);
  showSamplerFields();
}

// A steps field still at the last sampler's default follows the new sampler's default.
function followDefaultSteps(previous, sampler) {
  const defaults = state.defaultSteps || {};
  if (previous in defaults && sampler in defaults && intValue("i-steps") === defaults[previous]) {
    $("i-steps").value = defaults[sampler];
  }
}

// Each sampler's own settings are shown only while it is chosen.
function showSamplerFields() {
  const sampler = $("i-sampler").value;
  followDefaultSteps(state.shownSampler, sampler);
  state.shownSampler = sampler;
  const gibbs = sampler === "gibbs" || sampler === "ancestral-gibbs";
  $("block-row").hidden = !(gibbs || sampler === "mh");
  $("block-select-row").hidden = !gibbs;
  $("mask-schedule-row").hidden = $("choice-row").hidden = sampler !== "confidence";
}

function resetImageOutput() {
  $("frame").removeAttribute("src");
  $("gif").hidden = $("gif-caption").hidden = true;
  $("gif").removeAttribute("src");
  $("dl-png").hidden = $("dl-gif").hidden = true;
  $("i-bar").style.width = "0";
  $("i-status").textContent = "Paint a hole, then press Inpaint.";
  plot($("i-plot"), {mean: [], low: [], high: []}, "mean log-probability of the redrawn pixels");
}

async function runImageJob() {
  const m = state.model;
  showError("");
  stopPolling();
  resetImageOutput();
  const body = {
    model: m.name,
    image: state.source.ref,
    mask: holeRows(),
    sampler: $("i-sampler").value,
    temperature: $("i-temperature").value,
    anneal: $("i-anneal").value,
    block: $("i-block").value,
    steps: intValue("i-steps"),
    seed: intValue("i-seed"),
  };
  if (!$("block-select-row").hidden) body.block_select = $("i-block-select").value;
  if (body.sampler === "confidence") {
    body.mask_schedule = $("i-mask-schedule").value;
    body.choice_temperature = $("i-choice-temperature").value;
  }
  if (m.caption && $("i-caption").value.trim()) body.caption = $("i-caption").value;
  await runJob(body, "image");
}

// ---- strings ---------------------------------------------------------------------------------------

function setUpStringControls() {
  $("s-run").addEventListener("click", runStringJob);
  $("s-cancel").addEventListener("click", cancelJob);
  $("s-sampler").addEventListener("change", () => {
    const exchange = $("s-sampler").value === "replica-exchange";
    $("replicas-row").hidden = !exchange;
    $("final-row").hidden = exchange;  // replica exchange ends on a sample
    // it samples one temperature (its ladder does the annealing): an annealed one's end is kept
    const temperature = $("s-temperature");
    if (exchange && temperature.value.includes(":")) temperature.value = temperature.value.split(":").pop().trim();
  });
}

function clearStringOutput() {
  $("samples").querySelector("tbody").innerHTML = "";
  $("s-bar").style.width = "0";
  $("s-status").textContent = "Choose settings, then press Dream.";
  plot($("s-plot"), {mean: [], low: [], high: []}, "free energy (mean, and lowest to highest chain)");
}

async function runStringJob() {
  const m = state.model;
  showError("");
  stopPolling();
  clearStringOutput();
  const body = {
    model: m.name,
    chains: intValue("s-chains"),
    steps: intValue("s-steps"),
    temperature: $("s-temperature").value,
    anneal: $("s-anneal").value,
    init: $("s-init").value,
    final: $("s-final").value,
    seed: intValue("s-seed"),
    sampler: $("s-sampler").value,
  };
  if (body.sampler === "replica-exchange") {
    body.replicas = intValue("s-replicas");
    delete body.final;
  }
  body[m.clamp] = $("s-clamp").value;
  await runJob(body, "strings");
}

function showSamples(samples, higherIsBetter) {
  const body = $("samples").querySelector("tbody");
  body.innerHTML = "";
  // Best first: the trace's direction comes with it (free energy: lower is better).
  const sign = higherIsBetter ? -1 : 1;
  const sorted = samples.slice().sort((a, b) => sign * ((a.energy ?? sign * Infinity) - (b.energy ?? sign * Infinity)));
  const best = sorted.length ? sorted[0].energy : null;
  for (const s of sorted) {
    const row = document.createElement("tr");
    if (s.energy === best) row.className = "best";
    const chain = document.createElement("td");
    chain.textContent = s.chain + 1;
    chain.className = "muted";
    const text = document.createElement("td");
    text.className = "text";
    text.textContent = s.text;
    if (s.in_training_data) {
      const mark = document.createElement("span");
      mark.className = "known";
      mark.textContent = "in training data";
      text.appendChild(mark);
    }
    const energy = document.createElement("td");
    energy.className = "num";
    energy.textContent = s.energy === null ? "" : s.energy.toFixed(2);
    row.append(chain, text, energy);
    body.appendChild(row);
  }
}

// ---- running and polling ------------------------------------------------------------------------------

function controls(kind) {
  const p = kind === "image" ? "i" : "s";
  return {run: $(`${p}-run`), cancel: $(`${p}-cancel`), bar: $(`${p}-bar`), status: $(`${p}-status`), plot: $(`${p}-plot`)};
}

async function runJob(body, kind) {
  const c = controls(kind);
  c.run.disabled = true;
  try {
    const data = await api("/api/jobs", body);
    state.job = {id: data.id, kind, trace: {mean: [], low: [], high: []}, timer: null};
    state.lastJob = data.id;
    c.cancel.disabled = false;
    c.status.textContent = "starting ...";
    poll();
  } catch (err) {
    showError(err.message);
    c.run.disabled = false;
  }
}

function stopPolling() {
  if (state.job && state.job.timer) clearTimeout(state.job.timer);
  if (state.job) {
    const c = controls(state.job.kind);
    c.run.disabled = false;
    c.cancel.disabled = true;
  }
  state.job = null;
}

async function cancelJob() {
  if (!state.job) return;
  try {
    await api(`/api/jobs/${state.job.id}/cancel`, {});
  } catch (err) {
    showError(err.message);
  }
}

async function poll() {
  const job = state.job;
  if (!job) return;
  let data;
  try {
    data = await api(`/api/jobs/${job.id}?since=${job.trace.mean.length}`);
  } catch (err) {
    showError(err.message);
    stopPolling();
    return;
  }
  if (state.job !== job) return; // another job started meanwhile
  const c = controls(job.kind);
  // The rows returned start where ours end, unless a previous poll's answer was lost.
  for (const key of ["mean", "low", "high"]) {
    job.trace[key].length = data.trace.start;
    job.trace[key].push(...data.trace[key]);
  }
  const share = data.steps ? Math.min(1, data.step / data.steps) : 0;
  c.bar.style.width = `${(100 * share).toFixed(1)}%`;
  const seconds = data.seconds === null ? "" : ` in ${data.seconds.toFixed(1)} s`;
  const words = {queued: "waiting for a free worker", running: "running", done: "done", cancelled: "cancelled", failed: "failed"};
  c.status.textContent = `${words[data.state] || data.state}: step ${data.step} of ${data.steps}${seconds}`;
  const mixing = data.result && data.result.diagnostics;
  if (mixing) {  // have the chains mixed? (R-hat and effective sample size of the trace)
    c.status.textContent += `. ${mixing.text}` + (mixing.warning ? `. Warning: ${mixing.warning}` : "");
  }
  if (job.kind === "image") {
    if (data.frame) $("frame").src = data.frame;
    plot(c.plot, job.trace, "mean log-probability of the redrawn pixels");
  } else {
    if (data.samples) showSamples(data.samples, data.trace.higher_is_better);
    plot(c.plot, job.trace, "free energy (mean, and lowest to highest chain)");
  }
  if (data.state === "failed") showError(data.error);
  if (data.state === "done" && job.kind === "image") {
    $("dl-png").href = data.result.png;
    $("dl-png").download = `inpainted-${job.id.slice(0, 6)}.png`;
    $("dl-gif").href = $("gif").src = data.result.gif;
    $("dl-gif").download = `chain-${job.id.slice(0, 6)}.gif`;
    $("dl-png").hidden = $("dl-gif").hidden = $("gif").hidden = $("gif-caption").hidden = false;
  }
  if (["done", "cancelled", "failed"].includes(data.state)) {
    document.body.dataset.lastJobState = data.state;
    stopPolling();
    return;
  }
  job.timer = setTimeout(poll, POLL_MS);
}

// ---- plots ------------------------------------------------------------------------------------------

function plot(canvas, trace, label) {
  // Draw at the size the canvas is shown, in device pixels, so text stays crisp and readable.
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth || 600, H = Math.round(Math.min(220, Math.max(160, W * 0.42)));
  if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const left = 56, right = 12, top = 22, bottom = 30;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  ctx.fillStyle = "#667085";
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillText(label, left, 14);
  const n = trace.mean.length;
  const values = [];
  for (const key of ["mean", "low", "high"]) for (const v of trace[key]) if (v !== null) values.push(v);
  if (n < 1 || !values.length) return;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const pad = 0.05 * (hi - lo);
  lo -= pad; hi += pad;
  const xs = (i) => left + ((W - left - right) * i) / Math.max(1, n - 1);
  const ys = (v) => top + ((H - top - bottom) * (hi - v)) / (hi - lo);
  // axes and ticks
  ctx.strokeStyle = "#d9dee7";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, top); ctx.lineTo(left, H - bottom); ctx.lineTo(W - right, H - bottom);
  ctx.stroke();
  ctx.fillStyle = "#667085";
  ctx.textAlign = "right";
  const span = hi - lo - 2 * pad;
  const digits = span >= 10 ? 0 : span >= 1 ? 1 : span >= 0.1 ? 2 : 3; // enough to tell the ticks apart
  for (const v of [hi - pad, (hi + lo) / 2, lo + pad]) ctx.fillText(v.toFixed(digits), left - 6, ys(v) + 4);
  ctx.textAlign = "center";
  ctx.fillText("0", xs(0), H - bottom + 16);
  ctx.textAlign = "right";
  ctx.fillText(String(n - 1), W - right, H - bottom + 16);
  ctx.textAlign = "center";
  ctx.fillText("step", (left + W - right) / 2, H - bottom + 16);
  ctx.textAlign = "left";
  // lowest-to-highest band, then the mean
  const band = [];
  for (let i = 0; i < n; i++) if (trace.low[i] !== null && trace.high[i] !== null) band.push(i);
  if (band.length > 1 && band.some((i) => trace.high[i] - trace.low[i] > 1e-9)) {
    ctx.fillStyle = "rgba(59, 91, 219, 0.15)";
    ctx.beginPath();
    band.forEach((i, k) => (k ? ctx.lineTo(xs(i), ys(trace.high[i])) : ctx.moveTo(xs(i), ys(trace.high[i]))));
    band.slice().reverse().forEach((i) => ctx.lineTo(xs(i), ys(trace.low[i])));
    ctx.closePath();
    ctx.fill();
  }
  ctx.strokeStyle = "#3b5bdb";
  ctx.lineWidth = 1.6;
  ctx.beginPath();
  let moved = false;
  for (let i = 0; i < n; i++) {
    const v = trace.mean[i];
    if (v === null) { moved = false; continue; }
    if (moved) ctx.lineTo(xs(i), ys(v)); else ctx.moveTo(xs(i), ys(v));
    moved = true;
  }
  ctx.stroke();
}

// For tests and the curious: the painted hole and the last job's id.
window.gibbsdream = {holeRows, get lastJob() { return state.lastJob; }, get model() { return state.model; }};

start();
