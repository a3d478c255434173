// The sessions dashboard: polls the server's JSON API and redraws the live and disconnected sessions.
//
// Reads GET <api>/health and GET <api>/sessions?state=...&limit=100 (following next_cursor) every
// `every` seconds; <api> is the page's origin unless the query string gives ?api=URL. An API key
// typed in the form is sent as a bearer token and kept for this tab only (sessionStorage).
// Everything the server sent is written with textContent: session data never becomes markup.
// window.dashboard exposes the last data and refresh count, for tests and for the console.
"use strict";

(function () {
  const { getJSON } = window.framegraphApi;
  const every = window.framegraphApi.every(2);
  const MAX_PAGES = 10; // at most 1000 sessions of a state on screen
  const state = (window.dashboard = { live: [], disconnected: [], health: null, refreshes: 0, error: null });

  async function sessionsIn(stateName) {
    let items = [];
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page++) {
      const params = new URLSearchParams({ state: stateName, limit: "100" });
      if (cursor) params.set("cursor", cursor);
      const reply = await getJSON("/sessions?" + params);
      items = items.concat(reply.items);
      cursor = reply.next_cursor;
      if (!cursor) break;
    }
    return items;
  }

  function ago(unixSeconds) {
    if (unixSeconds == null) return "";
    const s = Math.max(0, Date.now() / 1000 - unixSeconds);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    return `${(s / 3600).toFixed(1)} h ago`;
  }

  function latencies(values) {
    return Object.entries(values || {})
      .map(([name, secs]) => `${name} ${Math.round(secs * 1000)} ms`)
      .join(", ");
  }

  function errors(list) {
    if (!list || list.length === 0) return "";
    const last = list[list.length - 1];
    return (list.length > 1 ? `(${list.length}) ` : "") + last.message;
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function draw(tableId, sessions) {
    const body = document.querySelector(`#${tableId} tbody`);
    body.replaceChildren();
    document.getElementById(`${tableId}-count`).textContent = String(sessions.length);
    if (sessions.length === 0) {
      const row = body.insertRow();
      row.className = "empty";
      cell(row, "none").colSpan = 8;
      return;
    }
    for (const s of sessions) {
      const row = body.insertRow();
      row.dataset.session = s.id;
      cell(row, s.id.slice(0, 8), "id").title = s.id;
      cell(row, s.agent);
      cell(row, s.state, "state").dataset.state = s.state;
      cell(row, String(s.turns), "turns");
      cell(row, latencies(s.latencies), "latencies");
      cell(row, s.owner);
      cell(row, ago(s.state === "DISCONNECTED" ? s.disconnected_at : s.created_at));
      const e = cell(row, errors(s.errors), "errors");
      e.title = (s.errors || []).map((x) => x.message).join("\n");
    }
  }

  function drawHealth(health) {
    const store = document.getElementById("store");
    store.dataset.ok = String(!!health.store_ok);
    store.textContent = health.store_ok ? "store: ok" : "store: DOWN";
    document.getElementById("counts").textContent =
      `active ${health.active} · disconnected ${health.disconnected} · total ${health.total}`;
    const load = document.getElementById("load"); // the server's load level (docs/backpressure.md)
    const level = health.load ? health.load.level : "unknown";
    load.dataset.level = level;
    load.textContent = `load: ${level}`;
    load.title = health.load
      ? Object.entries(health.load.measured).map(([k, v]) => `${k} ${v}`).join(", ") + ` (for ${health.load.for_s} s)`
      : "";
  }

  function showProblem(text) {
    const p = document.getElementById("problem");
    p.hidden = !text;
    p.textContent = text || "";
  }

  async function refresh() {
    try {
      const [health, starting, active, disconnected] = await Promise.all([
        getJSON("/health"),
        sessionsIn("STARTING"),
        sessionsIn("ACTIVE"),
        sessionsIn("DISCONNECTED"),
      ]);
      Object.assign(state, { health, live: starting.concat(active), disconnected, error: null });
      drawHealth(health);
      draw("live", state.live);
      draw("disconnected", disconnected);
      showProblem(null);
      document.getElementById("refreshed").textContent = "refreshed " + new Date().toLocaleTimeString();
    } catch (err) {
      state.error = String(err.message || err);
      showProblem("cannot reach the server: " + state.error);
    }
    state.refreshes += 1;
    setTimeout(refresh, every);
  }

  document.getElementById("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = document.getElementById("api-key").value.trim();
    if (key) sessionStorage.setItem("framegraph-api-key", key);
    else sessionStorage.removeItem("framegraph-api-key");
  });

  refresh();
})();
