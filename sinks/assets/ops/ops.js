// The operations page: reads the JSON endpoints under /api/ (docs/operations-page.md) and
// draws them. Every array it keeps is trimmed to the history window and every table is
// replaced, not appended to, so the page can stay open for hours in bounded memory.
"use strict";
(function () {
  const LIVE_EVERY_MS = 1000;
  const SLOW_EVERY_MS = 5000;
  const MAX_POINTS = 3600;
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  const state = {
    config: null,
    sequence: null,
    history: 900,
    time: [],
    series: new Map(), // id -> {meta, totals, rate, errors, p50, p99}
    cpu: [],
    memory: [],
    charts: {},
    chartKey: "",
    systemChart: null,
  };

  const $ = (id) => document.getElementById(id);

  function status(text) {
    $("status").textContent = text || "";
  }

  async function getJSON(url, options) {
    const response = await fetch(url, Object.assign({ cache: "no-store" }, options || {}));
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const error = new Error((body && body.error) || response.status + " " + response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // ---- formatting ----
  const integer = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });

  function fmtDuration(ns) {
    if (ns === null || ns === undefined) return "–";
    if (ns < 1e3) return integer.format(ns) + " ns";
    if (ns < 1e6) return decimal.format(ns / 1e3) + " µs";
    if (ns < 1e9) return decimal.format(ns / 1e6) + " ms";
    return decimal.format(ns / 1e9) + " s";
  }

  function fmtBytes(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return decimal.format(value) + " " + units[unit];
  }

  function fmtPercent(ratio) {
    return ratio === null || ratio === undefined ? "–" : decimal.format(ratio * 100) + " %";
  }

  function fmtTime(text) {
    if (!text) return "–";
    return text.replace("T", " ").replace(/(\.\d{3})\d*Z$/, "$1Z");
  }

  function fmtLabels(labels) {
    const parts = Object.entries(labels || {}).map(([k, v]) => k + "=" + v);
    return parts.length ? "{" + parts.join(", ") + "}" : "";
  }

  function fmtFields(fields) {
    if (!fields) return "";
    if (Array.isArray(fields)) return fields.map((p) => p[0] + "=" + JSON.stringify(p[1])).join(" ");
    return Object.entries(fields).map(([k, v]) => k + "=" + JSON.stringify(v)).join(" ");
  }

  // ---- DOM helpers (text only: captured arguments are never parsed as HTML) ----
  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) td.className = className;
    return td;
  }

  function row(cells, attributes) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c);
    for (const [k, v] of Object.entries(attributes || {})) tr.setAttribute(k, v);
    return tr;
  }

  function fill(tableId, rows, empty) {
    const body = $(tableId).tBodies[0];
    if (rows.length === 0 && empty) {
      const td = cell(empty, "muted");
      td.colSpan = $(tableId).tHead.rows[0].cells.length;
      body.replaceChildren(row([td], { class: "empty" }));
    } else {
      body.replaceChildren(...rows);
    }
  }

  function notice(id, text) {
    const p = $(id);
    p.textContent = text || "";
    p.hidden = !text;
  }

  // ---- live data ----
  function trim() {
    if (state.time.length === 0) return;
    const oldest = state.time[state.time.length - 1] - state.history;
    let drop = 0;
    while (drop < state.time.length && (state.time[drop] <= oldest || state.time.length - drop > MAX_POINTS)) {
      drop += 1;
    }
    if (drop === 0) return;
    state.time.splice(0, drop);
    state.cpu.splice(0, drop);
    state.memory.splice(0, drop);
    for (const s of state.series.values()) {
      for (const key of ["rate", "errors", "p50", "p99"]) s[key].splice(0, drop);
    }
  }

  const toMs = (ns) => (ns === null ? null : ns / 1e6);
  const toPercent = (r) => (r === null ? null : r * 100);

  function applyLive(live) {
    if (live.reset) {
      state.time = [];
      state.cpu = [];
      state.memory = [];
      state.series = new Map();
    }
    const before = state.time.length;
    state.time.push(...live.time);
    state.cpu.push(...live.system.cpu_percent);
    state.memory.push(...live.system.memory_percent);
    const seen = new Set();
    for (const c of live.callsites) {
      seen.add(c.id);
      let s = state.series.get(c.id);
      if (!s) {
        const pad = () => new Array(before).fill(null);
        s = { rate: pad(), errors: pad(), p50: pad(), p99: pad() };
        state.series.set(c.id, s);
      }
      s.meta = c;
      s.totals = c.totals;
      s.rate.push(...c.calls_per_second);
      s.errors.push(...c.error_ratio.map(toPercent));
      s.p50.push(...c.p50_ns.map(toMs));
      s.p99.push(...c.p99_ns.map(toMs));
    }
    for (const id of [...state.series.keys()]) {
      if (!seen.has(id)) state.series.delete(id);
    }
    if (live.sequence !== null) state.sequence = live.sequence;
    state.history = live.history_seconds || state.history;
    trim();
    drawCharts();
    drawStages(live);
    drawSystem(live);
    $("updated").textContent = live.updated_at ? "updated " + fmtTime(live.updated_at) : "waiting for the first window";
  }

  function chartWidth(el) {
    return Math.max(280, Math.floor(el.clientWidth || 400));
  }

  function makeChart(el, labels, valueFormat) {
    const series = [{}].concat(labels.map((label, i) => ({
      label: label,
      stroke: COLORS[i % COLORS.length],
      width: 1.5,
      spanGaps: false,
      value: (u, v) => (v === null || v === undefined ? "–" : valueFormat(v)),
    })));
    return new uPlot({
      width: chartWidth(el),
      height: 200,
      series: series,
      scales: { x: { time: true } },
      axes: [{}, { size: 60 }],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    }, null, el);
  }

  function drawCharts() {
    const ids = [...state.series.keys()].sort();
    const key = ids.join("\n");
    const specs = [
      ["chart-rate", "rate", (v) => decimal.format(v) + "/s"],
      ["chart-errors", "errors", (v) => decimal.format(v) + " %"],
      ["chart-p50", "p50", (v) => decimal.format(v) + " ms"],
      ["chart-p99", "p99", (v) => decimal.format(v) + " ms"],
    ];
    if (key !== state.chartKey) {
      for (const chart of Object.values(state.charts)) chart.destroy();
      state.charts = {};
      const labels = ids.map((id) => {
        const meta = state.series.get(id).meta;
        return meta.name + fmtLabels(meta.labels);
      });
      for (const [elementId, , format] of specs) {
        if (ids.length > 0) state.charts[elementId] = makeChart($(elementId), labels, format);
      }
      state.chartKey = key;
    }
    for (const [elementId, field] of specs) {
      const chart = state.charts[elementId];
      if (!chart) continue;
      const data = [state.time.slice()].concat(ids.map((id) => state.series.get(id)[field].slice()));
      chart.setData(data);
      const el = $(elementId);
      el.setAttribute("data-points", String(state.time.length));
      el.setAttribute("data-series", String(ids.length));
    }
  }

  function drawStages(live) {
    const rows = [];
    const ids = [...state.series.keys()].sort();
    for (const id of ids) {
      const s = state.series.get(id);
      const t = s.totals;
      const lastRate = s.rate.length ? s.rate[s.rate.length - 1] : null;
      rows.push(row([
        cell(s.meta.name + fmtLabels(s.meta.labels), "stage"),
        cell(s.meta.module, "muted"),
        cell(integer.format(t.calls), "num calls"),
        cell(integer.format(t.errors), "num"),
        cell(integer.format(t.panics), "num"),
        cell(fmtPercent(t.error_ratio), "num"),
        cell(lastRate === null ? "–" : decimal.format(lastRate), "num"),
        cell(fmtDuration(t.p50_ns), "num"),
        cell(fmtDuration(t.p99_ns), "num"),
        cell(fmtDuration(t.max_ns), "num"),
      ], { "data-stage": s.meta.name, "data-calls": String(t.calls) }));
    }
    fill("stages", rows, "no calls yet");
    const untracked = $("untracked");
    untracked.hidden = !live.untracked_callsites;
    untracked.textContent = live.untracked_callsites
      ? live.untracked_callsites + " more callsites are counted but not drawn (limit of the OpsSink)"
      : "";
    $("history-note").textContent = "(last " + Math.round(state.history / 60) + " min, live)";
  }

  function gaugeValue(g) {
    if (g.name.endsWith("_percent")) return decimal.format(g.value) + " %";
    if (g.name.endsWith("_bytes")) return fmtBytes(g.value);
    return decimal.format(g.value);
  }

  function drawSystem(live) {
    fill("system", live.system.gauges
      .filter((g) => g.name !== "system_cpu_core_usage_percent")
      .map((g) => row([cell(g.name + fmtLabels(g.labels)), cell(gaugeValue(g), "num")], { "data-gauge": g.name })),
    "no system gauges (no SystemSampler runs)");
    const p = live.pipeline || {};
    const lines = [
      ["events recorded", integer.format(p.events_recorded || 0)],
      ["events dropped", integer.format(p.events_dropped || 0)],
      ["notices dropped", integer.format(p.notices_dropped || 0)],
      ["drain cycle", fmtDuration(p.drain_cycle_ns)],
      ["drain lag (window end to page)", fmtDuration(p.snapshot_delay_ns)],
      ["queue high water", integer.format(p.queue_high_water || 0)],
      ["SDK memory", fmtBytes(p.memory_bytes || 0)],
      ["threads", integer.format(p.threads || 0)],
      ["audit entries queued", integer.format(p.audit_queued || 0)],
      ["drain panics", integer.format(p.drain_panics || 0)],
    ];
    fill("pipeline", lines.map(([k, v]) => row([cell(k), cell(v, "num")], { "data-metric": k })));
    fill("sinks", live.sinks.map((s) => row([
      cell(s.name),
      cell(s.health, "state " + s.health),
      cell(integer.format(s.backlog), "num"),
      cell(integer.format(s.errors), "num"),
      cell(integer.format(s.dropped_batches), "num"),
      cell(integer.format(s.lost_events), "num"),
      cell(s.reason || s.last_error || ""),
    ], { "data-sink": s.name })), "no sinks reported yet");
    const el = $("chart-system");
    if (!state.systemChart && state.time.length > 0) {
      state.systemChart = makeChart(el, ["CPU", "memory"], (v) => decimal.format(v) + " %");
    }
    if (state.systemChart) {
      state.systemChart.setData([state.time.slice(), state.cpu.slice(), state.memory.slice()]);
      el.setAttribute("data-points", String(state.time.length));
    }
  }

  async function pollLive() {
    try {
      const url = "/api/live" + (state.sequence === null ? "" : "?after=" + state.sequence);
      applyLive(await getJSON(url));
      status("");
    } catch (error) {
      status("live data: " + error.message);
    }
    setTimeout(pollLive, LIVE_EVERY_MS);
  }

  // ---- health ----
  async function refreshHealth() {
    const config = state.config;
    if (config.health) {
      try {
        const report = await getJSON("/api/health/now");
        const badge = $("overall");
        badge.textContent = "health: " + report.status;
        badge.className = "badge " + report.status;
        fill("health-now", report.components.map((c) => row([
          cell(c.name),
          cell(c.status, "state " + c.status),
          cell(c.reason || ""),
          cell(fmtTime(c.checked_at)),
        ], { "data-component": c.name })), "no components");
      } catch (error) {
        notice("health-missing", "health now: " + error.message);
      }
    }
    if (config.store) {
      try {
        const stored = await getJSON("/api/health?since=24h&limit=50");
        fill("health-history", stored.history.map((h) => row([
          cell(fmtTime(h.time)), cell(h.component), cell(h.status, "state " + h.status), cell(h.reason || ""),
        ])), "no changes stored in the last 24 hours");
      } catch (error) {
        notice("health-missing", "health history: " + error.message);
      }
    }
  }

  // ---- alerts ----
  async function ack(id, button) {
    button.disabled = true;
    try {
      await getJSON("/api/alerts/" + encodeURIComponent(id) + "/ack", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ by: "operations page" }),
      });
      status("alert " + id + " acknowledged");
    } catch (error) {
      status("acknowledging alert " + id + ": " + error.message);
    }
    refreshAlerts();
  }

  async function refreshAlerts() {
    const config = state.config;
    if (config.alerts) {
      try {
        const alerts = await getJSON("/api/alerts/live");
        fill("alerts-live", alerts.map((a) => {
          const actions = cell("");
          if (config.ack && a.state === "firing") {
            const button = document.createElement("button");
            button.type = "button";
            button.textContent = "Ack";
            button.className = "ack";
            button.addEventListener("click", () => ack(String(a.id), button));
            actions.appendChild(button);
          } else if (a.acked_by) {
            actions.textContent = "by " + a.acked_by;
          }
          return row([
            cell(a.id), cell(a.rule), cell(a.state, "state " + a.state), cell(a.severity),
            cell(a.summary), cell(fmtTime(a.fired_at || a.started_at)), actions,
          ], { "data-alert": String(a.id), "data-state": a.state });
        }), "no alert is pending or firing");
      } catch (error) {
        notice("alerts-missing", "alerts: " + error.message);
      }
    }
    if (config.store) {
      try {
        const stored = (await getJSON("/api/alerts?all=true")).slice(0, 20);
        fill("alerts-recent", stored.map((a) => row([
          cell(a.rule), cell(a.state, "state " + a.state), cell(a.severity), cell(a.message),
          cell(fmtTime(a.started)), cell(fmtTime(a.resolved)), cell(a.acked_by || ""),
        ])), "no alerts stored");
      } catch (error) {
        notice("alerts-missing", "stored alerts: " + error.message);
      }
    }
  }

  // ---- slow and failed calls ----
  function correlationCell(id) {
    const td = cell("");
    if (id) {
      const a = document.createElement("a");
      a.href = "#trace-section";
      a.textContent = id;
      a.addEventListener("click", (e) => {
        e.preventDefault();
        openTrace(id);
      });
      td.appendChild(a);
    }
    return td;
  }

  function clickable(tr, correlation) {
    if (correlation) {
      tr.classList.add("clickable");
      tr.addEventListener("click", (e) => {
        if (e.target.tagName !== "A") openTrace(correlation);
      });
    }
    return tr;
  }

  async function refreshCalls() {
    try {
      const slow = await getJSON("/api/slow?top=20&since=1h");
      fill("slow", slow.map((e) => clickable(row([
        cell(fmtTime(e.start)), cell(e.callsite), cell(e.outcome, "state " + e.outcome),
        cell(fmtDuration(e.duration_ns), "num"), cell(e.error_kind || ""),
        cell(fmtFields(e.fields), "fields"), correlationCell(e.correlation),
      ], e.correlation ? { "data-correlation": e.correlation } : {}), e.correlation)),
      "no calls stored in the last hour");
      const groups = await getJSON("/api/errors?since=1h");
      fill("errors", groups.slice(0, 50).map((g) => {
        const e = g.latest || {};
        return clickable(row([
          cell(g.callsite), cell(g.outcome, "state " + g.outcome), cell(g.kind || ""),
          cell(integer.format(g.count), "num"), cell(fmtTime(e.start)),
          cell(fmtDuration(e.duration_ns), "num"), cell(fmtFields(e.fields), "fields"),
          correlationCell(e.correlation),
        ], e.correlation ? { "data-correlation": e.correlation } : {}), e.correlation);
      }), "no failures in the last hour");
      notice("store-missing", "");
    } catch (error) {
      notice("store-missing", "stored calls: " + error.message);
    }
  }

  async function refreshCallgraph() {
    try {
      const graph = await getJSON("/api/callgraph");
      const edges = graph.edges.slice().sort((a, b) => b.count - a.count).slice(0, 50);
      fill("callgraph", edges.map((e) => row([
        cell(e.from), cell(e.to), cell(e.kind), cell(integer.format(e.count), "num"),
        cell(fmtDuration(e.total_ns), "num"),
      ])), "no edges yet: no stored call ran inside or after another of the same unit of work");
    } catch (error) {
      fill("callgraph", [], "call graph: " + error.message);
    }
  }

  // ---- unit of work ----
  async function openTrace(id) {
    const section = $("trace-section");
    section.hidden = false;
    $("trace-id").textContent = id;
    $("trace-message").textContent = "loading…";
    fill("trace", []);
    try {
      const trace = await getJSON("/api/trace/" + encodeURIComponent(id));
      fill("trace", trace.entries.map((entry) => {
        if (entry.type === "event") {
          return row([
            cell(fmtTime(entry.start)), cell("event"), cell(entry.callsite),
            cell(entry.outcome + (entry.error_kind ? " (" + entry.error_kind + ")" : "")),
            cell(fmtDuration(entry.duration_ns), "num"),
            cell(fmtFields(entry.fields) + " [" + entry.reason + "]", "fields"),
          ], { "data-type": "event" });
        }
        if (entry.type === "audit") {
          return row([
            cell(fmtTime(entry.timestamp)), cell("audit"), cell(entry.operation),
            cell(entry.outcome || ""), cell(entry.duration_ns === null ? "" : fmtDuration(entry.duration_ns), "num"),
            cell("in: " + entry.inputs.join(", ") + " out: " + entry.outputs.join(", ") +
              (entry.actor ? " by " + entry.actor : ""), "fields"),
          ], { "data-type": "audit" });
        }
        return row([
          cell(fmtTime(entry.time)), cell("notice"), cell(entry.source), cell(entry.level), cell(""),
          cell(entry.message, "fields"),
        ], { "data-type": "notice" });
      }));
      $("trace-message").textContent = trace.entries.length + " entries in time order";
    } catch (error) {
      $("trace-message").textContent = error.message;
    }
    section.scrollIntoView({ block: "start" });
  }

  // ---- audit trail ----
  async function lookupAudit(id) {
    $("audit-message").textContent = "looking up…";
    fill("audit", []);
    try {
      const trail = await getJSON("/api/audit/" + encodeURIComponent(id));
      fill("audit", trail.entries.map((e) => row([
        cell(e.id), cell(e.direction), cell(e.depth, "num"), cell(fmtTime(e.timestamp)), cell(e.operation),
        cell(e.inputs.join(", ")), cell(e.outputs.join(", ")), cell(e.actor || ""),
        correlationCell(e.correlation),
      ], { "data-direction": e.direction })));
      $("audit-message").textContent = trail.entries.length + " entries in the lineage of " + trail.id;
    } catch (error) {
      $("audit-message").textContent = error.message;
    }
  }

  // ---- start ----
  function every(ms, f) {
    const run = async () => {
      try {
        await f();
      } finally {
        setTimeout(run, ms);
      }
    };
    run();
  }

  async function start() {
    $("trace-close").addEventListener("click", () => {
      $("trace-section").hidden = true;
    });
    $("audit-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const id = $("audit-id").value.trim();
      if (id) lookupAudit(id);
    });
    window.addEventListener("resize", () => {
      for (const [id, chart] of Object.entries(state.charts)) {
        chart.setSize({ width: chartWidth($(id)), height: 200 });
      }
      if (state.systemChart) state.systemChart.setSize({ width: chartWidth($("chart-system")), height: 200 });
    });
    let config;
    for (;;) {
      try {
        config = await getJSON("/api/config");
        break;
      } catch (error) {
        status("cannot read /api/config: " + error.message + "; trying again");
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
    state.config = config;
    if (config.history_seconds) state.history = config.history_seconds;
    notice("live-missing", config.live ? "" : "This process feeds no OpsSink to the page: no live charts.");
    notice("store-missing", config.store ? "" : "This process has no SQLite store configured: no slow calls, failures, traces or audit trails.");
    notice("alerts-missing", config.alerts ? "" : "This process runs no alert engine for the page.");
    notice("health-missing", config.health ? "" : "This process gives the page no health registry.");
    $("audit-section").hidden = !config.store;
    if (config.live) pollLive();
    if (config.health || config.store) every(SLOW_EVERY_MS, refreshHealth);
    if (config.alerts || config.store) every(SLOW_EVERY_MS, refreshAlerts);
    if (config.store) every(SLOW_EVERY_MS, refreshCalls);
    $("callgraph-section").hidden = !config.store;
    if (config.store) every(SLOW_EVERY_MS * 6, refreshCallgraph);
  }

  start();
})();
