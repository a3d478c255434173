// The users page: who opened sessions, their usage today, and (click a user) their sessions, memory and usage.
//
// Read-only. Users are found in GET <api>/sessions (every page, following next_cursor; a session with no
// user is skipped), then GET /users/{id}, /users/{id}/usage?since=, /users/{id}/sessions and
// /users/{id}/memory. <api> is the page's origin unless ?api=URL; refreshed every `every` seconds. An API
// key typed in the form is sent as a bearer token (sessionStorage, this tab only). Everything the server
// sent is written with textContent: user data never becomes markup. window.usersPage exposes the last data.
"use strict";

(function () {
  const { query, getJSON } = window.framegraphApi;
  const every = window.framegraphApi.every(2);
  const MAX_PAGES = 10;
  const page = (window.usersPage = { users: [], selected: query.get("user"), detail: null, refreshes: 0, error: null });

  async function userIds() {
    const ids = new Set();
    let cursor = null;
    for (let n = 0; n < MAX_PAGES; n++) {
      const params = new URLSearchParams({ limit: "100" });
      if (cursor) params.set("cursor", cursor);
      const reply = await getJSON("/sessions?" + params);
      reply.items.forEach((s) => s.user && ids.add(s.user));
      cursor = reply.next_cursor;
      if (!cursor) break;
    }
    return [...ids].sort();
  }

  function startOf(period) {
    const now = new Date();
    const day = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), period === "month" ? 1 : now.getUTCDate());
    return day / 1000;
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function fill(tableId, rows, draw) {
    const body = document.querySelector(`#${tableId} tbody`);
    body.replaceChildren();
    rows.forEach((item) => draw(body.insertRow(), item));
  }

  const round = (x) => (x === undefined ? "0" : String(Math.round(x * 1e6) / 1e6));

  function shown(value) {
    if (Array.isArray(value)) return value.join(", ");
    if (value && typeof value === "object") return Object.entries(value).map(([k, v]) => `${k} (${v})`).join(", ");
    return String(value);
  }

  async function refresh() {
    try {
      const ids = await userIds();
      page.users = await Promise.all(ids.map(async (id) => ({
        ...(await getJSON(`/users/${encodeURIComponent(id)}`)),
        today: (await getJSON(`/users/${encodeURIComponent(id)}/usage?since=${startOf("day")}`)).totals,
      })));
      fill("users", page.users, (row, u) => {
        row.dataset.user = u.id;
        const name = cell(row, u.id, "user");
        name.tabIndex = 0;
        name.onclick = () => { page.selected = u.id; refresh(); };
        cell(row, String(u.sessions), "sessions");
        cell(row, new Date(u.last_seen_at * 1000).toISOString(), "seen");
        cell(row, round(u.today.tokens), "tokens");
        cell(row, round(u.today.characters), "characters");
        cell(row, round(u.today.cost), "cost");
      });
      document.getElementById("user-count").textContent = String(page.users.length);
      if (page.selected) await showUser(page.selected);
      page.refreshes += 1;
      page.error = null;
      document.getElementById("problem").hidden = true;
      document.getElementById("refreshed").textContent = "refreshed " + new Date().toLocaleTimeString();
    } catch (e) {
      page.error = String(e);
      const problem = document.getElementById("problem");
      problem.textContent = page.error;
      problem.hidden = false;
    }
  }

  async function showUser(id) {
    const path = `/users/${encodeURIComponent(id)}`;
    const [sessions, memory, usage] = await Promise.all([
      getJSON(path + "/sessions?limit=100"), getJSON(path + "/memory"), getJSON(path + `/usage?since=${startOf("month")}`),
    ]);
    page.detail = { id, sessions: sessions.items, memory, usage };
    document.getElementById("detail").hidden = false;
    document.getElementById("detail-user").textContent = id;
    document.getElementById("memory-version").textContent = `version ${memory.version}`;
    fill("user-sessions", sessions.items, (row, s) => {
      row.dataset.session = s.id;
      cell(row, s.id.slice(0, 8));
      cell(row, s.agent);
      cell(row, s.state, "state");
      cell(row, String(s.turns), "turns");
      cell(row, Object.entries(s.usage || {}).map(([k, v]) => `${k}=${round(v)}`).join(" "), "usage");
    });
    fill("memory", Object.entries(memory.fields), (row, [name, value]) => {
      row.dataset.field = name;
      cell(row, name);
      cell(row, shown(value), "value");
    });
    fill("usage", Object.entries(usage.counts), (row, [key, value]) => { cell(row, key); cell(row, round(value), "count"); });
  }

  document.getElementById("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("framegraph-api-key", document.getElementById("api-key").value);
    refresh();
  });
  refresh();
  setInterval(refresh, every);
})();
