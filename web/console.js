// socialpulse live console: one Server-Sent Events stream (/api/v1/stream) carries every
// checkpoint's changed KPIs; series and alerts come from /api/v1/series and /api/v1/alerts.
// Plain DOM and SVG, no library: the page is a few cards, one line chart and a list.
"use strict";

const COLORS = ["#c62828", "#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f"];
const state = { brands: {}, order: [], checkpoint: 0, minute: null, series: {}, spark: {}, alerts: new Map() };

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v, digits) {
  return v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toFixed(digits);
}
function pct(v, digits) {
  return v === null || v === undefined || !isFinite(v) ? "–" : (v * 100).toFixed(digits) + "%";
}
// (return - spend) / spend as a multiple of the spend: "2.35×", "1520×".
function multiple(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  return (Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2)) + "×";
}
function color(brand) {
  const i = state.order.indexOf(brand);
  return COLORS[(i < 0 ? 0 : i) % COLORS.length];
}

// ---- brand cards ---------------------------------------------------------------------------
const ROWS = [
  ["share_of_voice", "Share of voice", (b) => pct(b.share_of_voice, 1)],
  ["emv_1h", "EMV, last hour", (b) => fmt(b.last_1h && b.last_1h.emv, 2)],
  ["leads_1h", "Leads, last hour", (b) => fmt(b.last_1h && b.last_1h.leads, 0)],
  ["roi_24h", "ROI (24 h vs spend)", (b) => (b.daily_spend ? multiple(b.roi_24h) : "no spend set")],
  ["unique_actors_1h", "Unique actors, 1 h", (b) => fmt(b.unique_actors_1h, 0)],
  ["zscore", "Negative z-score", (b) => fmt(b.spike && b.spike.zscore, 2)],
];

function card(brand) {
  let c = document.querySelector(`.card[data-brand="${CSS.escape(brand)}"]`);
  if (c) return c;
  c = el("article", { class: "card", "data-brand": brand });
  const h = el("h3");
  h.append(el("span", { class: "name" }, brand), el("span", { class: "badge", hidden: "" }, "ALERT"));
  const ri = el("div", { class: "ri" });
  ri.append(el("span", { class: "big", "data-kpi": "reputation_index" }, "–"),
            el("span", { class: "trend", "data-kpi": "reputation_trend_1h" }, ""));
  const label = el("div", { class: "label" }, "Reputation index (−100…100)");
  const spark = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  spark.setAttribute("class", "spark");
  spark.setAttribute("viewBox", "0 0 200 36");
  spark.setAttribute("preserveAspectRatio", "none");
  const dl = el("dl", { class: "kv" });
  for (const [key, name] of ROWS) dl.append(el("dt", {}, name), el("dd", { "data-kpi": key }, "–"));
  c.append(h, ri, label, spark, dl);
  const all = [...document.querySelectorAll("#brands .card")];
  const next = all.find((x) => x.dataset.brand > brand);
  document.getElementById("brands").insertBefore(c, next || null);
  return c;
}

function renderCard(brand) {
  const b = state.brands[brand];
  const c = card(brand);
  const ri = c.querySelector('[data-kpi="reputation_index"]');
  ri.textContent = fmt(b.reputation_index, 1);
  const t = b.reputation_trend_1h;
  const trend = c.querySelector('[data-kpi="reputation_trend_1h"]');
  trend.textContent = t === null || t === undefined ? "" : (t >= 0 ? "▲ +" : "▼ ") + t.toFixed(1) + " in 1 h";
  trend.className = "trend " + (t > 0 ? "up" : t < 0 ? "down" : "");
  for (const [key, , f] of ROWS) c.querySelector(`[data-kpi="${key}"]`).textContent = f(b);
  const active = !!(b.spike && b.spike.active);
  c.classList.toggle("alerting", active);
  const badge = c.querySelector(".badge");
  badge.hidden = !active;
  if (active) badge.textContent = "ALERT · severity " + fmt(b.spike.severity, 0);
}

function renderSpark(brand) {
  const c = card(brand);
  const svg = c.querySelector("svg.spark");
  const pts = (state.spark[brand] || []).filter((p) => p[1] !== null);
  svg.textContent = "";
  if (pts.length < 2) return;
  const ys = pts.map((p) => p[1]);
  const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
  const x0 = pts[0][0], xs = pts[pts.length - 1][0] - x0 || 1;
  const d = pts.map((p, i) => (i ? "L" : "M") + ((p[0] - x0) / xs * 200).toFixed(1) + " " +
                               (34 - (p[1] - lo) / span * 32).toFixed(1)).join(" ");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", d);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", color(brand));
  path.setAttribute("stroke-width", "1.5");
  svg.append(path);
}

// ---- chart ---------------------------------------------------------------------------------
function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function renderChart() {
  const chart = document.getElementById("chart");
  chart.textContent = "";
  const W = 760, H = 240, L = 48, R = 10, T = 10, B = 22;
  const lines = state.order.map((b) => [b, (state.series[b] || []).filter((p) => p[1] !== null)]);
  const all = lines.flatMap(([, pts]) => pts);
  if (all.length === 0) {
    const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
    t.textContent = "waiting for the first closed minute…";
    chart.append(t);
    return;
  }
  const tmax = Math.max(...all.map((p) => p[0])), tmin = tmax - 59 * 60000;
  let lo = Math.min(...all.map((p) => p[1])), hi = Math.max(...all.map((p) => p[1]));
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.08; hi += pad; lo -= pad;
  const x = (t) => L + (t - tmin) / (tmax - tmin) * (W - L - R);
  const y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const t = svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" });
    t.textContent = Math.abs(hi - lo) < 5 ? v.toFixed(2) : v.toFixed(0);
    chart.append(t);
  }
  for (let m = 0; m <= 59; m += 15) {
    const t = svg("text", { x: x(tmin + m * 60000), y: H - 6, "text-anchor": m ? "middle" : "start" });
    t.textContent = new Date(tmin + m * 60000).toISOString().substring(11, 16);
    chart.append(t);
  }
  for (const [brand, pts] of lines) {
    const shown = pts.filter((p) => p[0] >= tmin);
    if (shown.length === 0) continue;
    const d = shown.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join(" ");
    chart.append(svg("path", { d, fill: "none", stroke: color(brand), "stroke-width": 2, "data-brand": brand }));
  }
  const legend = document.getElementById("legend");
  legend.textContent = "";
  for (const brand of state.order) {
    const s = el("span");
    const i = el("i");
    i.style.background = color(brand);
    s.append(i, document.createTextNode(brand));
    legend.append(s);
  }
}

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

async function refreshSeries() {
  const kpi = document.getElementById("kpi").value;
  try {
    await Promise.all(state.order.map(async (b) => {
      const q = "/api/v1/series?brand=" + encodeURIComponent(b) + "&minutes=60&kpi=";
      state.series[b] = (await getJson(q + kpi)).points;
      state.spark[b] = kpi === "reputation_index" ? state.series[b]
                                                  : (await getJson(q + "reputation_index")).points;
      renderSpark(b);
    }));
    renderChart();
  } catch (e) {
    console.warn("series:", e.message);  // the next closed minute retries
  }
}

// ---- alerts --------------------------------------------------------------------------------
function explanation(x) {
  if (!x) return "";
  const names = (list) => (list || []).map((i) => i.name).join(", ");
  const parts = [];
  if (x.channels && x.channels.length) parts.push("channels: " + names(x.channels));
  if (x.types && x.types.length) parts.push("types: " + names(x.types));
  if (x.tags && x.tags.length) parts.push("topics: " + names(x.tags));
  if (x.authors && x.authors.length) parts.push("loudest: " + x.authors.map((a) => a.id + " (reach " + a.reach + ")").join(", "));
  return parts.join(" · ");
}

function addAlert(a) {
  const key = a.brand + "|" + a.episode_start + "|" + a.episode;
  if (state.alerts.has(key)) return;
  state.alerts.set(key, a);
  const list = document.getElementById("alerts");
  const none = list.querySelector(".none");
  if (none) none.remove();
  const li = el("li", { class: a.episode, "data-brand": a.brand, "data-episode": a.episode });
  const title = a.episode === "started"
    ? `${a.brand}: ${a.kind.replace("_", " ")} — severity ${a.severity}, z = ${fmt(a.zscore, 1)}`
    : `${a.brand}: alert ended`;
  li.append(el("div", { class: "what" }, title),
            el("div", { class: "when" }, "minute " + a.bucket_start.substring(0, 16).replace("T", " ") +
                                          " UTC" + (a.replay ? " (replayed history)" : "")));
  const why = explanation(a.explanation);
  if (why) li.append(el("div", { class: "why" }, why));
  const items = [...list.children];
  const next = items.find((x) => x.dataset.start < a.bucket_start);
  li.dataset.start = a.bucket_start;
  list.insertBefore(li, next || null);
}

async function loadAlerts() {
  try {
    for (const a of (await getJson("/api/v1/alerts")).alerts) addAlert(a);
  } catch (e) {
    console.warn("alerts:", e.message);
  }
}

// ---- the stream ----------------------------------------------------------------------------
function apply(ev) {
  if (ev.full) {
    state.brands = ev.brands;
    loadAlerts();
  } else {
    for (const [b, changed] of Object.entries(ev.brands)) {
      state.brands[b] = Object.assign(state.brands[b] || {}, changed);
    }
  }
  for (const a of ev.alerts) addAlert(a);
  state.order = Object.keys(state.brands).sort();
  for (const b of state.order) renderCard(b);
  const p = ev.pipeline;
  document.getElementById("p-eps").textContent = fmt(p.events_per_second, 0);
  document.getElementById("p-lag").textContent = fmt(p.lag_messages, 0);
  document.getElementById("p-wmdelay").textContent =
    p.watermark_delay_seconds === null ? "–" : fmt(p.watermark_delay_seconds, 1) + " s";
  document.getElementById("p-dlq").textContent = fmt(p.dlq_per_second, 1);
  const cp = document.getElementById("p-checkpoint");
  cp.textContent = "#" + ev.checkpoint + " at " + ev.checkpoint_time.substring(11, 19);
  cp.dataset.value = String(ev.checkpoint);
  document.getElementById("p-watermark").textContent = ev.watermark ? ev.watermark.substring(0, 19).replace("T", " ") : "–";
  state.checkpoint = ev.checkpoint;
  const minute = ev.watermark ? ev.watermark.substring(0, 16) : null;
  if (ev.full || minute !== state.minute) {
    state.minute = minute;
    refreshSeries();
  }
}

function connect() {
  const status = document.getElementById("connection");
  const es = new EventSource("/api/v1/stream");
  es.addEventListener("open", () => { status.dataset.state = "live"; status.textContent = "live"; });
  es.addEventListener("error", () => {
    status.dataset.state = "error";
    status.textContent = "reconnecting…";
    // A refused stream (503 while state restores) is not retried by EventSource itself.
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  });
  es.addEventListener("checkpoint", (e) => apply(JSON.parse(e.data)));
}

document.getElementById("kpi").addEventListener("change", refreshSeries);
connect();
