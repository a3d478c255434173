// framegraph's web page: talk to the agent over WebRTC with nothing but the browser.
//
// The page asks the server for a session (POST /sessions: an id and a resume
// token, kept in sessionStorage), then a plain RTCPeerConnection posts its
// offer to /sessions/{id}/offer with the token as a bearer (pipecat's
// SmallWebRTC signalling), sends the microphone, plays the bot, and keeps a
// data channel for messages: a ping every second (the server drops a peer it
// stops hearing), the live transcript, and bot-interrupted, on which the page
// silences the bot's audio until it starts speaking again, so nothing of a
// cut-off answer is heard. A lost connection is retried after 1 s, then 2, 4,
// ... up to 30 s, each step shown in the state line; each retry resumes the
// same session with its id and token (the server keeps a dropped session for
// its grace period, 5 minutes by default, and restores its conversation), and
// the page starts a new session when the server answers that it has ended.
// With an API key on the server, open the page as /?key=KEY.
"use strict";

const PING_MS = 1000;
const OFFER_TIMEOUT_MS = 10000;
const INTERRUPTED_GRACE_MS = 3000;
const FIRST_RETRY_S = 1;
const MAX_RETRY_S = 30;

const ui = {
  connect: document.getElementById("connect"),
  disconnect: document.getElementById("disconnect"),
  state: document.getElementById("state"),
  transcript: document.getElementById("transcript"),
  audio: document.getElementById("bot-audio"),
};

// What the page is doing, for people in the console and for tests.
const framegraph = (window.framegraph = { state: "idle", history: [], transcript: [], messages: [] });
const KEPT_MESSAGES = 200;

let mic = null;
let pc = null;
let pingTimer = null;
let retryTimer = null;
let interruptedTimer = null;
let attempt = 0;
let wanted = false;
const SESSION_KEY = "framegraph-session";
const apiKey = new URLSearchParams(location.search).get("key");

// Our session ({id, token}), kept across reconnections and page reloads.
function savedSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
  framegraph.session = null;
}

async function session() {
  const saved = savedSession();
  if (saved && saved.id && saved.token) return (framegraph.session = saved);
  const response = await fetch("/sessions", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}) },
    body: "{}",
    signal: AbortSignal.timeout(OFFER_TIMEOUT_MS),
  });
  if (!response.ok) throw new Error(`the agent refused a session (${response.status})`);
  const created = await response.json();
  const kept = { id: created.id, token: created.token };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(kept));
  return (framegraph.session = kept);
}

function setState(state, text) {
  framegraph.state = state;
  framegraph.history.push({ state, text, at: Date.now() });
  ui.state.dataset.state = state;
  ui.state.textContent = text;
}

function addLine(who, text) {
  const li = document.createElement("li");
  li.className = who;
  li.textContent = text;
  ui.transcript.appendChild(li);
  framegraph.transcript.push({ who, text });
}

function silenceBot(silent) {
  ui.audio.muted = silent;
}

// pipecat's RTVI: the agent answers client-ready with bot-ready.
function sayClientReady(channel) {
  channel.send(JSON.stringify({
    label: "rtvi-ai", type: "client-ready", id: `page-${Date.now()}`,
    data: { version: "1.0.0", about: { library: "framegraph-page" } },
  }));
}

function onMessage(event) {
  if (typeof event.data !== "string") return;
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch {
    return;
  }
  if (msg.type === "signalling" && msg.message && msg.message.type === "peerLeft") {
    lost("the agent closed the connection");
    return;
  }
  if (msg.label !== "rtvi-ai") return;
  if (window.framegraphFace) window.framegraphFace.onMessage(msg); // face hook (face.js): poses, speaking state
  framegraph.messages.push({ type: msg.type, at: Date.now() });
  if (framegraph.messages.length > KEPT_MESSAGES) framegraph.messages.shift();
  const data = msg.data || {};
  switch (msg.type) {
    case "bot-ready":
      setState("connected", "connected; the agent is listening");
      break;
    case "bot-interrupted":
      silenceBot(true);
      break;
    case "bot-started-speaking":
      silenceBot(false);
      break;
    case "user-input":
      if (data.final) addLine("user", data.text);
      break;
    case "bot-tts-text":
      addLine("bot", data.text);
      break;
  }
}

function iceGathered(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (peer.iceGatheringState !== "complete") return;
      peer.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 2000); // host candidates are enough on a LAN
  });
}

async function connect() {
  clearTimeout(retryTimer);
  setState(attempt ? "reconnecting" : "connecting", attempt ? `reconnecting (attempt ${attempt})` : "connecting");
  try {
    if (!mic) {
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    }
    const peer = (pc = new RTCPeerConnection());
    peer.addTransceiver(mic.getAudioTracks()[0], { direction: "sendrecv" });
    peer.ontrack = (event) => {
      ui.audio.srcObject = event.streams[0] || new MediaStream([event.track]);
    };
    if (window.framegraphFace) window.framegraphFace.attach(peer, mic); // face hook (face.js): playout delay, mic level
    const channel = peer.createDataChannel("chat", { ordered: true });
    channel.onopen = () => {
      sayClientReady(channel);
      pingTimer = setInterval(() => channel.readyState === "open" && channel.send("ping"), PING_MS);
    };
    channel.onmessage = onMessage;
    channel.onclose = () => peer === pc && lost("the data channel closed");
    peer.onconnectionstatechange = () => {
      if (peer !== pc) return;
      const s = peer.connectionState;
      clearTimeout(interruptedTimer);
      if (s === "connected") {
        attempt = 0;
        ui.disconnect.disabled = false;
        setState("connected", "connected");
      } else if (s === "disconnected") {
        setState("connecting", "connection interrupted; waiting for it to come back");
        interruptedTimer = setTimeout(() => peer === pc && lost("the connection was interrupted"), INTERRUPTED_GRACE_MS);
      } else if (s === "failed" || s === "closed") {
        lost(`the connection ${s}`);
      }
    };
    await peer.setLocalDescription(await peer.createOffer());
    await iceGathered(peer);
    const ours = await session();
    const response = await fetch(`/sessions/${encodeURIComponent(ours.id)}/offer`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${ours.token}` },
      body: JSON.stringify({ sdp: peer.localDescription.sdp, type: peer.localDescription.type }),
      signal: AbortSignal.timeout(OFFER_TIMEOUT_MS),
    });
    if (response.status === 404) forgetSession(); // ended or expired: the next try starts a new one
    if (!response.ok) throw new Error(`the agent refused the call (${response.status})`);
    const answer = await response.json();
    if (peer !== pc) return;
    await peer.setRemoteDescription(answer);
  } catch (err) {
    if (err && err.name === "NotAllowedError") {
      wanted = false;
      teardown();
      setState("failed", "microphone permission denied");
      return;
    }
    lost(err && err.message ? err.message : String(err));
  }
}

function teardown() {
  clearInterval(pingTimer);
  clearTimeout(interruptedTimer);
  pingTimer = null;
  const old = pc;
  pc = null;
  if (old) old.close();
  silenceBot(false);
}

// The connection is gone: retry after 1 s, 2 s, 4 s, ... at most 30 s.
function lost(reason) {
  teardown();
  if (!wanted) return;
  attempt += 1;
  let left = Math.min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (attempt - 1));
  const tick = () => {
    if (!wanted) return;
    if (left <= 0) {
      connect();
      return;
    }
    setState("reconnecting", `${reason}; reconnecting in ${left} s (attempt ${attempt})`);
    left -= 1;
    retryTimer = setTimeout(tick, 1000);
  };
  tick();
}

ui.connect.addEventListener("click", () => {
  wanted = true;
  attempt = 0;
  ui.connect.disabled = true;
  connect();
});

ui.disconnect.addEventListener("click", () => {
  wanted = false;
  forgetSession();
  clearTimeout(retryTimer);
  teardown();
  ui.connect.disabled = false;
  ui.disconnect.disabled = true;
  setState("idle", "not connected");
});
