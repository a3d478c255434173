// The dashboard's history: sessions and turns per hour, and speech-end-to-first-audio p50/p95 over time.
//
// Reads GET <api>/history?hours=N (N from ?hours=, default 24) every `every` seconds (?every=, default 10)
// and draws it twice: an SVG chart built here (no library, no CDN) and a table of the hours with any
// activity, the text fallback. <api> is the page's origin unless ?api=URL; the API key is the one the
// sessions dashboard keeps for this tab (sessionStorage). Server data is written with textContent only.
// window.historyPanel exposes the last reply, for tests and for the console.
"use strict";

(function () {
  const { query, getJSON } = window.framegraphApi;
  const hours = Math.min(336, Math.max(1, Math.round(Number(query.get("hours")) || 24)));
  const every = window.framegraphApi.every(10);
  const panel = (window.historyPanel = { rows: [], refreshes: 0, error: null });
  const SVG = "http://www.w3.org/2000/svg";
  const W = 720, TOP = 10, BAR_H = 90, GAP = 30, LAT_H = 80, LEFT = 48, RIGHT = 10;

  const fetchHistory = () => getJSON(`/history?hours=${hours}`);

  const ms = (s) => (s == null ? "" : `${Math.round(s * 1000)} ms`);
  const hourLabel = (iso) => iso.slice(5, 13).replace("T", " ") + ":00";

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text != null) node.textContent = text;
    return node;
  }

  function drawChart(rows) {
    const svg = document.getElementById("history-chart");
    const height = TOP + BAR_H + GAP + LAT_H + 20;
    svg.setAttribute("viewBox", `0 0 ${W} ${height}`);
    svg.replaceChildren();
    const step = (W - LEFT - RIGHT) / rows.length;
    const x = (i) => LEFT + i * step;
    const most = Math.max(1, ...rows.map((r) => Math.max(r.turns, r.sessions)));
    svg.append(el("text", { x: 2, y: TOP + 10, class: "axis" }, String(most)));
    svg.append(el("text", { x: 2, y: TOP + BAR_H, class: "axis" }, "0"));
    rows.forEach((r, i) => {
      for (const [kind, value, offset] of [["turns", r.turns, 0], ["sessions", r.sessions, 0.5]]) {
        if (!value) continue;
        const h = (value / most) * BAR_H;
        const bar = el("rect", { x: x(i) + offset * step * 0.9, y: TOP + BAR_H - h, width: step * 0.45, height: h,
          class: kind });
        bar.append(el("title", {}, `${hourLabel(r.hour)}: ${value} ${kind}`));
        svg.append(bar);
      }
    });
    const base = TOP + BAR_H + GAP;
    const slowest = Math.max(0.1, ...rows.map((r) => r.latency_p95_s || 0));
    svg.append(el("text", { x: 2, y: base + 10, class: "axis" }, ms(slowest)));
    svg.append(el("text", { x: 2, y: base + LAT_H, class: "axis" }, "0 ms"));
    for (const [field, cls] of [["latency_p50_s", "p50"], ["latency_p95_s", "p95"]]) {
      const points = rows.map((r, i) => (r[field] == null ? null
        : [x(i) + step / 2, base + LAT_H - (r[field] / slowest) * LAT_H]));
      const drawn = points.filter(Boolean);
      if (drawn.length) svg.append(el("polyline", { points: drawn.map((p) => p.join(",")).join(" "), class: cls }));
      drawn.forEach(([px, py]) => svg.append(el("circle", { cx: px, cy: py, r: 2.5, class: cls })));
    }
    svg.append(el("text", { x: LEFT, y: height - 4, class: "axis" }, hourLabel(rows[0].hour) + " UTC"));
    svg.append(el("text", { x: W - RIGHT, y: height - 4, class: "axis", "text-anchor": "end" },
      hourLabel(rows[rows.length - 1].hour)));
  }

  function drawTable(rows) {
    const body = document.querySelector("#history tbody");
    body.replaceChildren();
    const active = rows.filter((r) => r.sessions || r.turns || r.latency_samples);
    if (active.length === 0) {
      const row = body.insertRow();
      row.className = "empty";
      const td = row.insertCell();
      td.colSpan = 5;
      td.textContent = `nothing in the last ${hours} h`;
      return;
    }
    for (const r of active.reverse()) { // newest first
      const row = body.insertRow();
      row.dataset.hour = r.hour;
      for (const [cls, text] of [["hour", hourLabel(r.hour)], ["sessions", String(r.sessions)],
        ["turns", String(r.turns)], ["p50", ms(r.latency_p50_s)], ["p95", ms(r.latency_p95_s)]]) {
        const td = row.insertCell();
        td.className = cls;
        td.textContent = text;
      }
    }
  }

  async function refresh() {
    try {
      const reply = await fetchHistory();
      panel.rows = reply.rows;
      panel.error = null;
      document.getElementById("history-problem").hidden = true;
      document.getElementById("history-hours").textContent = `last ${hours} h`;
      drawChart(reply.rows);
      drawTable(reply.rows);
    } catch (err) {
      panel.error = String(err.message || err);
      const p = document.getElementById("history-problem");
      p.hidden = false;
      p.textContent = "history: " + panel.error;
    }
    panel.refreshes += 1;
    setTimeout(refresh, every);
  }

  refresh();
})();
