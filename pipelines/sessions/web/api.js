// What the dashboard's pages share: where the API is (<api>: the page's origin unless ?api=URL), the
// refresh period (?every= seconds), and GET with the API key this tab keeps (sessionStorage).
"use strict";

window.framegraphApi = (function () {
  const query = new URLSearchParams(location.search);
  const api = (query.get("api") || location.origin).replace(/\/$/, "");

  function headers() {
    const key = sessionStorage.getItem("framegraph-api-key");
    return key ? { Authorization: "Bearer " + key } : {};
  }

  async function getJSON(path) {
    const response = await fetch(api + path, { headers: headers(), cache: "no-store" });
    if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
    return response.json();
  }

  /** The refresh period in ms: ?every= seconds, else `seconds`, never under 0.2 s. */
  const every = (seconds) => Math.max(0.2, Number(query.get("every")) || seconds) * 1000;

  return { query, api, headers, getJSON, every };
})();
