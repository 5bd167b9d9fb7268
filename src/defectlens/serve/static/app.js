// defectlens upload page. Plain browser JavaScript: no build step, no CDN, works offline.
// Every client-supplied string (file names, reasons, comments, operators) reaches the page through
// textContent or element properties, never innerHTML, and through safeText first.
"use strict";

const KEY_STORE = "defectlens-api-key";
const OPERATOR_STORE = "defectlens-operator";
const state = { model: null, threshold: null, shown: [] };

function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Characters that change how the text around them reads without showing themselves: bidi embeddings,
// overrides, isolates and marks (part_\u202Egnp.exe would read as part_exe.png), C0/C1 controls, line and
// paragraph separators. Each is shown as its code point, so the operator sees that something is there.
const HIDDEN = /[\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u2028-\u202E\u2066-\u2069\uFEFF]/g;

function safeText(value) {
  return String(value === null || value === undefined ? "" : value).replace(HIDDEN, (c) =>
    "[U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "]");
}

// A frame the gate would not let the model judge (status "needs_review") is neither a decision nor an
// error: it has its own wording and colour, and the tally counts it apart.
const NOT_JUDGED = "Not judged — needs review";

function tally(body) {
  return body.ok + " judged, " + body.needs_review + " need review, " + body.errors + " failed";
}

function setStatus(text, isError) {
  $("status").textContent = safeText(text);
  $("status").className = isError ? "error" : "";
}

// --- calls to the API (with the key when one was entered) ---------------------------------------
async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({ "X-Defectlens-Client": "page" }, opts.headers || {});
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) opts.headers["X-API-Key"] = key;
  const response = await fetch(path, opts);
  if (response.status === 401) {
    const body = await response.json().catch(() => null);
    askForKey(Boolean(key));
    throw new Error(errorText(body, response));
  }
  return response;
}

// A missing key and a wrong one read differently (the service says which in its 401).
function askForKey(wasSent) {
  $("key-panel").hidden = false;
  $("key-message").textContent = wasSent
    ? "API key not accepted: enter the key this service was started with"
    : "This service needs an API key: enter it";
  $("key-panel").classList.toggle("refused", wasSent);
  $("api-key").focus();
}

function errorText(body, response) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  return "HTTP " + response.status;
}

// --- the decision shown at the slider's threshold --------------------------------------------
// Mirrors defectlens.core.decision.decide for binary models: the positive (defect) class when its
// probability reaches the threshold (p >= threshold), else the other class. The probability is the one the
// service computed (defect_probability), never re-derived here. Models with more than two classes keep the
// server's decision (the most probable class); the slider is hidden for them.
function isBinary() {
  const m = state.model;
  return Boolean(m && m.classes.length === 2 && m.positive_class && m.threshold !== null);
}

function defectProbability(result) {
  if (typeof result.defect_probability === "number") return result.defect_probability;
  return result.probabilities[state.model.positive_class];
}

function labelAt(result, threshold) {
  if (!isBinary()) return result.prediction;
  const pos = state.model.positive_class;
  const neg = state.model.classes.find((c) => c !== pos);
  return defectProbability(result) >= threshold ? pos : neg;
}

// a probability to 0.1 %, a threshold as set (5 %, 12.5 %); a non-breaking space keeps the unit with its number
const percent = (p) => (100 * p).toFixed(1) + "\u00a0%";
const thresholdPercent = (t) => String(Number((100 * t).toFixed(1))) + "\u00a0%";

// What the card says about the decision: for a binary model the defect probability against the threshold
// in force (never "defect, confidence 18.5 %": that is the probability of the class shown, not of a defect).
function decisionText(result, label) {
  if (!isBinary()) return "confidence " + percent(result.probabilities[label]) + " (probability of " + label + ")";
  const p = defectProbability(result);
  const side = p >= state.threshold ? "at or above" : "below";
  return state.model.positive_class + " probability " + percent(p) + " is " + side + " the threshold " +
    thresholdPercent(state.threshold);
}

// --- model ----------------------------------------------------------------------------------
// A stored threshold or temperature to 4 significant digits (0.10102643442970272 -> "0.101").
const short = (x) => (typeof x === "number" ? String(Number(x.toPrecision(4))) : "none");

async function loadModel() {
  const response = await api("/v1/model");
  const model = await response.json();
  if (!response.ok) throw new Error(errorText(model, response));
  state.model = model;
  const metrics = model.metrics || {};
  const acc = typeof metrics.accuracy === "number" ? ", validation accuracy " + metrics.accuracy.toFixed(3) : "";
  $("model-info").textContent = model.arch + " · classes " + model.classes.join(", ") + " · threshold " +
    short(model.threshold) + " · T " + short(model.temperature) + acc +
    " · model " + String(model.model_id).slice(0, 12);
  $("key-panel").hidden = true;
  if (isBinary()) {
    $("threshold-box").hidden = false;
    $("threshold-note").hidden = false;
    $("positive-name").textContent = model.positive_class;
    setThreshold(model.threshold);
  }
}

function setThreshold(value) {
  state.threshold = Number(value);
  $("threshold").value = String(value);
  $("threshold-value").textContent = state.threshold.toFixed(2);
  relabel();
}

// --- upload and results -----------------------------------------------------------------------
async function upload(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  if ($("explain").checked) form.append("explain", "true");
  setStatus("inspecting " + files.length + " image(s)…");
  try {
    const response = await api("/v1/predict", { method: "POST", body: form });
    const body = await response.json();
    if (!body.results) throw new Error(errorText(body, response));
    // the new batch goes on top, its files in the order given
    const batch = body.results.map((r, i) => ({ result: r, preview: URL.createObjectURL(files[i]) }));
    state.shown.unshift(...batch);
    renderResults();
    setStatus(tally(body) + " (" + body.latency_ms.toFixed(0) + " ms)", body.ok + body.needs_review === 0);
    loadRecent();
    loadDrift();
  } catch (err) {
    setStatus(err.message, true);
  }
}

function bars(result) {
  const box = el("div", { className: "bars" });
  for (const name of state.model.classes) {
    const p = result.probabilities[name] || 0;
    const fill = el("div", { className: "fill" });
    fill.style.width = (100 * p).toFixed(1) + "%";
    box.append(el("div", { className: "bar" }, el("span", {}, name), el("div", { className: "track" }, fill),
      el("span", {}, (100 * p).toFixed(1) + "%")));
  }
  return box;
}

function fileName(text, tag, className) {
  const shown = safeText(text);
  return el(tag, { className: className, title: shown, dir: "ltr" }, shown);
}

// The decision comes first in a card, above the images: on an 800x600 line PC it is in view after an upload.
function card(item) {
  const r = item.result;
  const node = el("article", { className: "result" }, fileName(r.file, "h3", "file"));
  node.dataset.inspectionId = String(r.inspection_id);
  const images = el("div", { className: "images" }, el("img", { src: item.preview, alt: "upload" }));
  if (r.overlay_png) images.append(el("img", { src: "data:image/png;base64," + r.overlay_png, alt: "Grad-CAM" }));
  if (r.status === "needs_review") {
    node.classList.add("needs-review");
    node.append(el("div", { className: "head" }, el("span", { className: "decision review" }, NOT_JUDGED)),
      el("p", { className: "note review" }, safeText(r.reason)), images);
    node.append(el("div", { className: "meta" }, "no class given · inspection #" + r.inspection_id + gateScore(r) +
      " · " + r.latency_ms.toFixed(1) + " ms"));
    return node;
  }
  if (r.status !== "ok") {
    node.append(el("div", { className: "head" }, el("span", { className: "decision error" }, "error " + r.http_status)),
      el("p", { className: "note" }, safeText(r.reason)), images);
    return node;
  }
  node.append(el("div", { className: "head" }, el("span", { className: "decision" }), el("span", { className: "relabelled" })));
  node.append(el("p", { className: "probability" }), images, bars(r));
  node.append(el("div", { className: "meta" }, "inspection #" + r.inspection_id + " · " + r.latency_ms.toFixed(1) +
    " ms · decided at threshold " + short(r.threshold)));
  if (r.gate && r.gate.flagged) {  // --gate warn: decided, but the gate flagged the frame
    node.append(el("p", { className: "note review" }, "flagged for review: " + r.gate.reasons.join("; ")));
  }
  if (r.explain_method) node.append(el("p", { className: "note" }, "overlay: " + safeText(r.explain_method)));
  if (r.explain_note) node.append(el("p", { className: "note" }, r.explain_note));
  return node;
}

function gateScore(r) {
  const g = r.gate;
  if (!g || typeof g.ood_score !== "number") return "";
  return " · OOD score " + g.ood_score.toFixed(2) + (typeof g.ood_threshold === "number" ? " (flags above " + g.ood_threshold.toFixed(2) + ")" : "");
}

// The log's decision cell: the class, "Not judged — needs review" with the reason, or the error.
function outcomeText(row) {
  if (row.status === "ok") return row.prediction;
  if (row.status === "needs_review") return NOT_JUDGED + ": " + safeText(row.reason);
  return "error: " + safeText(row.reason);
}

function renderResults() {
  const box = $("results");
  box.replaceChildren(...state.shown.map((item) => { item.node = card(item); return item.node; }));
  relabel();
}

function relabel() {
  for (const item of state.shown) {
    const r = item.result;
    if (r.status !== "ok" || !item.node) continue;
    const label = isBinary() ? labelAt(r, state.threshold) : r.prediction;
    const decision = item.node.querySelector(".decision");
    decision.textContent = label;
    decision.classList.toggle("positive", label === state.model.positive_class);
    item.node.querySelector(".probability").textContent = decisionText(r, label);
    const moved = label !== r.prediction ? "(logged as " + r.prediction + " at threshold " + short(r.threshold) + ")" : "";
    item.node.querySelector(".relabelled").textContent = moved;
  }
}

// --- recent inspections and verdicts ------------------------------------------------------------
async function loadRecent() {
  try {
    const response = await api("/v1/inspections?limit=15");
    const page = await response.json();
    if (!response.ok) throw new Error(errorText(page, response));
    $("recent").tBodies[0].replaceChildren(...page.items.map(recentRow));
  } catch (err) {
    setStatus(err.message, true);
  }
}

function recentRow(row) {
  const p = row.defect_probability === null ? "" : row.defect_probability.toFixed(3);
  const tr = el("tr", {}, el("td", {}, row.id),
    el("td", { className: "time" }, row.created_utc.slice(0, 19).replace("T", " ")),
    fileName(row.client_name, "td", "file"),
    el("td", { className: "outcome " + row.status.replace("_", "-") }, outcomeText(row)), el("td", {}, p));
  tr.dataset.inspectionId = String(row.id);
  const review = el("td", { className: "review" });
  if (row.verdict) {
    showVerdict(review, row);
  } else if (row.status === "ok" || row.status === "needs_review") {
    reviewControls(review, row);
  }
  tr.append(review);
  return tr;
}

// A recorded verdict replaces the buttons; "change" brings them back (each verdict is kept in the history).
function showVerdict(cell, row) {
  const who = row.operator ? " by " + safeText(row.operator) : "";
  const text = row.verdict + (row.verdict_label ? " → " + row.verdict_label : "") + who;
  cell.replaceChildren(el("span", { className: "verdict" }, text), " ",
    el("button", { type: "button", className: "change", onclick: () => reviewControls(cell, row) }, "change"));
}

function reviewControls(cell, row) {
  // a frame not judged is reviewed by giving its class; an override never repeats the predicted class
  const others = state.model.classes.filter((c) => c !== row.prediction);
  const choice = el("select", { title: "true class" }, ...others.map((c) => el("option", { value: c }, c)));
  cell.replaceChildren();
  if (row.status === "ok") {
    cell.append(el("button", { type: "button", className: "confirm", onclick: () => verdict_(row.id, "confirmed") }, "Confirm"), " ");
  }
  cell.append(choice, el("button", { type: "button", className: "override", onclick: () => verdict_(row.id, "overridden", choice.value) }, "Override"));
}

async function verdict_(id, verdict, label) {
  const operator = $("operator").value.trim();
  if (!operator) {
    setStatus("enter your name as operator (beside Refresh) before recording a verdict", true);
    $("operator").focus();
    return;
  }
  try {
    const response = await api("/v1/inspections/" + encodeURIComponent(id) + "/verdict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ verdict: verdict, label: label || null, operator: operator }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(errorText(body, response));
    setStatus("inspection #" + id + " " + verdict + (label ? " as " + label : "") + " by " + operator);
    loadRecent();
  } catch (err) {
    setStatus(err.message, true);
  }
}

// The log as CSV: fetched with the key (a plain link could not send it), then saved from a blob.
async function downloadCsv() {
  try {
    const response = await api("/v1/inspections.csv");
    if (!response.ok) throw new Error(errorText(await response.json().catch(() => null), response));
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: "inspections.csv", hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    setStatus("inspection log downloaded as inspections.csv");
  } catch (err) {
    setStatus(err.message, true);
  }
}

// --- the drift panel: the drift watch's gauges, read from /metrics ----------------------------------
function driftGauges(text) {
  const out = { checks: {}, unavailable: [] };
  for (const line of text.split("\n")) {
    const m = /^(defectlens_drift_[a-z_]+)(?:\{([^}]*)\})? ([-+0-9.eEinfNa]+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const part of (m[2] || "").matchAll(/(\w+)="([^"]*)"/g)) labels[part[1]] = part[2];
    const value = Number(m[3]);
    if (m[1] === "defectlens_drift_severity") (out.checks[labels.check] ||= {}).severity = value;
    else if (m[1] === "defectlens_drift_value") Object.assign(out.checks[labels.check] ||= {}, { value: value, kind: labels.kind });
    else if (m[1] === "defectlens_drift_unavailable" && value === 1) out.unavailable.push(labels.statistic);
    else out[m[1].slice("defectlens_drift_".length)] = value;
  }
  return out;
}

function renderDrift(g) {
  const state = $("drift-state");
  const filled = (g.window_images || 0) + " of " + (g.window_size || 0) + " frames";
  state.textContent = g.alarm === 1 ? "ALARM: the stream has drifted (" + filled + ")" : "no drift (" + filled + ")";
  state.className = "drift-state" + (g.alarm === 1 ? " alarm" : "");
  const rows = Object.entries(g.checks).sort((a, b) => (b[1].severity || 0) - (a[1].severity || 0));
  $("drift-checks").tBodies[0].replaceChildren(...rows.map(([name, c]) => {
    const sev = Math.max(0, Math.min(1, c.severity || 0));
    const value = c.kind === "psi" ? "PSI " + (c.value || 0).toFixed(3) : "p " + (c.value || 0).toExponential(1);
    const fill = el("div", { className: "fill" + (sev >= 1 ? " alarm" : "") });
    fill.style.width = (100 * sev).toFixed(0) + "%";
    return el("tr", {}, el("td", {}, safeText(name)), el("td", {}, value),
      el("td", {}, el("div", { className: "track" }, fill)));
  }));
  const note = $("drift-unavailable");
  note.hidden = g.unavailable.length === 0;
  note.textContent = "Not watched for this model: " + g.unavailable.join(", ");
}

async function loadDrift() {
  try {
    const response = await api("/metrics");
    if (response.ok) renderDrift(driftGauges(await response.text()));
  } catch (err) {
    // the panel stays as it was; the status line reports API errors of the page's own actions
  }
}

// --- wiring --------------------------------------------------------------------------------------
async function start() {
  try {
    await loadModel();
    await loadRecent();
    await loadDrift();
  } catch (err) {
    setStatus(err.message, true);
  }
}

function wire() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => { upload(Array.from(e.target.files)); e.target.value = ""; });
  drop.addEventListener("click", (e) => { if (e.target === drop) $("files").click(); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("files").click(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    upload(Array.from(e.dataTransfer.files));
  });
  $("threshold").addEventListener("input", (e) => setThreshold(e.target.value));
  $("threshold-reset").addEventListener("click", () => setThreshold(state.model.threshold));
  $("refresh").addEventListener("click", loadRecent);
  $("download-csv").addEventListener("click", downloadCsv);
  $("drift-refresh").addEventListener("click", loadDrift);
  setInterval(loadDrift, 15000);
  $("operator").value = localStorage.getItem(OPERATOR_STORE) || "";
  $("operator").addEventListener("input", (e) => localStorage.setItem(OPERATOR_STORE, e.target.value.trim()));
  $("key-panel").addEventListener("submit", (e) => {  // the button, or Enter in the field
    e.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("api-key").value);
    start();
  });
}

document.addEventListener("DOMContentLoaded", () => { wire(); start(); });
