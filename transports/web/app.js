// framegraph's web page: talk to the agent over WebRTC with nothing but the browser.
//
// The page asks the server for a session (POST /sessions: an id and a resume
// token, kept in localStorage so a reload resumes it), then a plain
// RTCPeerConnection posts its offer to /sessions/{id}/offer with the token as
// a bearer (pipecat's SmallWebRTC signalling), sends the microphone, plays
// the bot, and keeps a data channel for pipecat's RTVI messages and a ping
// every second (the server drops a peer it stops hearing).
//
// What the person sees: one bubble per utterance; the bot's words appear as
// they are heard (revealed while its voice is audible, each sentence complete
// once the server says it was spoken), cut off where an interruption cut
// them; speech the agent did not understand is shown as such; the transcript
// scrolls to the newest line; the state follows the bot (listening,
// thinking, speaking). On bot-interrupted the page mutes the bot until it
// starts speaking again, so nothing of a cut-off answer is heard.
//
// The bot never talks over the person: while the microphone (after Chrome's
// echo canceller) is loud, the bot's audio is muted at once, without waiting
// for the agent to hear the speech and interrupt (about 250 ms later); when
// the person is quiet again the bot plays on, unless the agent interrupted
// it meanwhile. A cough or a knock mutes the bot for its own length and
// DUCK_RELEASE_MS more, and interrupts nothing: the agent's VAD decides that.
//
// Losing the connection: "reconnecting…" shows within a second (the ICE state,
// the data channel closing, or the bot's audio packets stopping, which the
// server sends even in silence); a retry follows after 1 s, then 2, 4, ... up
// to 30 s, resuming the same session with its id and token (the server keeps
// a dropped session for its grace period, 5 minutes by default, and says
// "session-restored" with the turns it kept). After 10 failed attempts the
// page stops and says so; "Retry now" tries at once. A session the server
// has ended is forgotten and the next try starts a new one.
//
// Meters (meter.js) on the microphone and on the bot's audio time what the
// person waited, from the end of their speech to the bot's first audible
// sound, and report it (RTVI client-message "speech-end-to-heard") so the
// server's metrics hold the figure at the ear beside their own.
// With an API key on the server, open the page as /?key=KEY.
"use strict";

const PING_MS = 1000;
const OFFER_TIMEOUT_MS = 10000;
const INTERRUPTED_GRACE_MS = 3000;
const SILENT_PEER_MS = 1000; // no bot audio packets this long: reconnecting
const FIRST_RETRY_S = 1;
const MAX_RETRY_S = 30;
const MAX_ATTEMPTS = 10;
const BOT_LOUD_DBFS = -45; // the bot's voice as played
// The microphone after Chrome's processing: speech ends where it sinks under this.
// bench/browser.py: -55 dBFS put the end within about 25 ms of the speech's end in the
// spoken WAV (its energy 10 dB over a -60 dBFS room) for espeak speech; -45 cut it early.
const MIC_LOUD_DBFS = -55;
// The microphone over this level for DUCK_MS mutes the bot; quiet for DUCK_RELEASE_MS lets it play on.
// bench/browser.py: the bot silent at the ear about 50 ms after a barge-in's onset instead of 250-300 ms.
// In a noisy room the level rises with the room: it is never under the microphone's noise floor
// plus DUCK_OVER_FLOOR_DB, so a steady fan or hum does not keep the bot muted. The floor follows a
// quieter level at once and a louder one over DUCK_FLOOR_RISE_S (a time constant): a room that
// turns loud is learned in a few seconds, while the first second of speech hardly moves it.
const DUCK_DBFS = -45;
const DUCK_OVER_FLOOR_DB = 15;
const DUCK_FLOOR_RISE_S = 2;
const DUCK_MS = 30;
const DUCK_RELEASE_MS = 150;
const USER_SPOKE_MS = 200; // this much loud microphone since the bot last spoke is a user utterance
const BOT_GAP_MS = 300; // the bot silent this long, then audible: a new answer starts
const WORDS_PER_SEC = 2.9; // reveal pace while the bot is audible (espeak-ng at 175 words a minute)
const SESSION_KEY = "framegraph-session";
const HEARD_MESSAGE = "speech-end-to-heard";

const ui = {
  connect: document.getElementById("connect"),
  disconnect: document.getElementById("disconnect"),
  retry: document.getElementById("retry"),
  state: document.getElementById("state"),
  transcript: document.getElementById("transcript"),
  audio: document.getElementById("bot-audio"),
};

// What the page is doing, for people in the console and for tests.
const framegraph = (window.framegraph = {
  state: "idle", activity: "listening", history: [], transcript: [], messages: [], heard: [], restored: null,
});
const KEPT_MESSAGES = 200;

let mic = null;
let pc = null;
let channel = null;
let pingTimer = null;
let retryTimer = null;
let interruptedTimer = null;
let watchTimer = null;
let stopMeters = [];
let attempt = 0;
let wanted = false;
const apiKey = new URLSearchParams(location.search).get("key");

// -- the session: {id, token}, kept across reconnections and page reloads ------------------

function savedSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

function forgetSession() {
  localStorage.removeItem(SESSION_KEY);
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
  if (!response.ok) throw new Refused(response.status);
  const created = await response.json();
  const kept = { id: created.id, token: created.token };
  localStorage.setItem(SESSION_KEY, JSON.stringify(kept));
  return (framegraph.session = kept);
}

class Refused extends Error {
  constructor(status) {
    super(
      status === 503 ? "the agent is busy right now"
        : status === 401 || status === 403 ? "the agent refused this page (is an API key needed?)"
          : status === 404 ? "the conversation had ended; starting a new one"
            : `the agent answered with an error (${status})`,
    );
    this.status = status;
  }
}

// A sentence for a person, never the browser's own ("Failed to fetch").
function humanReason(err) {
  if (err instanceof Refused) return err.message;
  if (err && (err.name === "TimeoutError" || err.name === "AbortError")) return "the agent did not answer in time";
  if (err instanceof TypeError) return "the agent cannot be reached (it may be restarting, or the network is down)";
  return err && err.message ? err.message : String(err);
}

// -- what the page shows -------------------------------------------------------------------

function setState(state, text) {
  framegraph.state = state;
  framegraph.history.push({ state, text, at: Date.now() });
  ui.state.dataset.state = state;
  ui.state.textContent = text;
  ui.retry.hidden = !(state === "reconnecting" || state === "failed") || !wanted;
}

const ACTIVITY_TEXT = { listening: "listening", thinking: "thinking…", speaking: "speaking" };

// listening / thinking / speaking, shown while connected.
function setActivity(activity) {
  if (framegraph.activity === activity) return;
  framegraph.activity = activity;
  framegraph.history.push({ state: framegraph.state, activity, at: Date.now() });
  ui.state.dataset.activity = activity;
  if (framegraph.state === "connected") ui.state.textContent = `connected; ${ACTIVITY_TEXT[activity]}`;
}

function scrollDown() {
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function addLine(who, text, className = who) {
  const li = document.createElement("li");
  li.className = className;
  li.textContent = text;
  ui.transcript.appendChild(li);
  const line = { who, text, li };
  framegraph.transcript.push(line);
  scrollDown();
  return line;
}

function setLine(line, text) {
  line.text = text;
  line.li.textContent = text;
  scrollDown();
}

// The bot is muted while it is interrupted (until it starts speaking again) or while the person speaks.
const mute = { interrupted: false, ducked: false };

function silenceBot(silent) {
  mute.interrupted = silent;
  ui.audio.muted = mute.interrupted || mute.ducked;
}

function duckBot(ducked) {
  if (ducked === mute.ducked) return;
  mute.ducked = ducked;
  if (ducked && ear.botAudible) framegraph.ducks = (framegraph.ducks || 0) + 1; // the bot was heard, then muted
  ui.audio.muted = mute.interrupted || mute.ducked;
}

// -- the bot's words, as they are heard --------------------------------------------------

// The reply being spoken: its words as the LLM wrote them, those the server
// says were spoken (bot-tts-text), and those shown so far.
let reply = null;

function newReply() {
  reply = { line: addLine("bot", ""), words: [], spoken: 0, shown: 0, audibleMs: 0, done: false };
  framegraph.replies = (framegraph.replies || 0) + 1;
}

function showWords(n) {
  if (!reply || n <= reply.shown) return;
  reply.shown = Math.min(n, reply.words.length);
  setLine(reply.line, reply.words.slice(0, reply.shown).join(" "));
}

function revealTick(stepMs) {
  if (!reply || reply.done) return;
  if (ear.botAudible) {
    reply.audibleMs += stepMs;
    showWords(Math.max(reply.shown, Math.floor((reply.audibleMs / 1000) * WORDS_PER_SEC) + 1));
  } else if (reply.finishing && performance.now() - ear.botLastLoud > BOT_GAP_MS) {
    showWords(Math.max(reply.spoken, reply.words.length));
    reply.done = true;
  }
}

function botText(text, spoken) {
  if (!reply || reply.done) newReply();
  const words = text.split(/\s+/).filter(Boolean);
  if (spoken) {
    reply.spoken += words.length;
    if (reply.spoken > reply.words.length) reply.words.push(...words.slice(words.length - (reply.spoken - reply.words.length)));
    showWords(reply.spoken);
  } else {
    reply.words.push(...words);
  }
}

function botCut() {
  if (!reply || reply.done) return;
  reply.words = reply.words.slice(0, reply.shown);
  setLine(reply.line, reply.line.text ? `${reply.line.text} …` : "…");
  reply.line.li.classList.add("cut");
  reply.done = true;
}

// -- the meters: speech end to heard, and the bot's audible state -------------------------

const ear = { micLoudMs: 0, micLastLoud: 0, micLoudNow: false, botAudible: false, botLastLoud: -1e9, duckRun: 0, duckQuiet: 0, floor: null };

function onMicLevel(db, at) {
  // Levels come every 10 ms.
  ear.floor = ear.floor === null || db < ear.floor ? db : ear.floor + (db - ear.floor) / (DUCK_FLOOR_RISE_S * 100);
  framegraph.duckLevel = Math.max(DUCK_DBFS, ear.floor + DUCK_OVER_FLOOR_DB);
  if (db > framegraph.duckLevel) {
    ear.duckRun += 10;
    ear.duckQuiet = 0;
    if (ear.duckRun >= DUCK_MS) duckBot(true);
  } else {
    ear.duckRun = 0;
    ear.duckQuiet += 10;
    if (ear.duckQuiet >= DUCK_RELEASE_MS) duckBot(false);
  }
  ear.micLoudNow = db > MIC_LOUD_DBFS;
  if (!ear.micLoudNow) return;
  ear.micLastLoud = at;
  if (!ear.botAudible) ear.micLoudMs += 10;
}

function onBotLevel(db, at) {
  const loud = db > BOT_LOUD_DBFS && !ui.audio.muted;
  const now = performance.now();
  if (loud && !ear.botAudible && now - ear.botLastLoud > BOT_GAP_MS) answerHeard(at);
  if (loud) ear.botLastLoud = now;
  ear.botAudible = loud || now - ear.botLastLoud < BOT_GAP_MS;
  if (ear.botAudible) setActivity("speaking");
  else if (framegraph.activity === "speaking") setActivity("listening");
}

// The bot became audible: if the user had spoken and stopped, report how long they waited.
function answerHeard(at) {
  const spoke = ear.micLoudMs >= USER_SPOKE_MS && !ear.micLoudNow;
  ear.micLoudMs = 0;
  if (!spoke || !channel || channel.readyState !== "open") return;
  const waited = Math.round(at - ear.micLastLoud);
  if (waited <= 0 || waited > 30000) return;
  framegraph.heard.push(waited);
  channel.send(JSON.stringify({
    label: "rtvi-ai", type: "client-message", id: `page-heard-${Date.now()}`,
    data: { t: HEARD_MESSAGE, d: { speech_end_to_heard_ms: waited } },
  }));
}

// -- RTVI --------------------------------------------------------------------------------

// pipecat's RTVI: the agent answers client-ready with bot-ready. The page draws
// the avatar, so it asks for its poses (the agent sends them to no one else).
function sayClientReady(ch) {
  ch.send(JSON.stringify({
    label: "rtvi-ai", type: "client-ready", id: `page-${Date.now()}`,
    data: { version: "1.0.0", about: { library: "framegraph-page" } },
  }));
  ch.send(JSON.stringify({
    label: "rtvi-ai", type: "client-message", id: `page-poses-${Date.now()}`,
    data: { t: "avatar-poses", d: { send: true } },
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
      setState("connected", `connected; ${ACTIVITY_TEXT[framegraph.activity]}`);
      break;
    case "server-message":
      if (data.type === "session-restored") {
        framegraph.restored = data;
        const turns = Number(data.turns) || 0;
        addLine("system", `session restored (${turns} ${turns === 1 ? "turn" : "turns"} kept)`, "system");
      }
      break;
    case "user-stopped-speaking":
      if (framegraph.activity !== "speaking") setActivity("thinking");
      break;
    case "user-transcription":
      if (!data.final) break;
      if (data.understood === false) addLine("user", "(not understood)", "user not-understood");
      else addLine("user", data.text);
      if (framegraph.activity !== "speaking") setActivity("thinking");
      break;
    case "bot-interrupted":
      silenceBot(true);
      botCut();
      break;
    case "bot-started-speaking":
      silenceBot(false);
      break;
    case "bot-stopped-speaking":
      if (reply) reply.finishing = true;
      break;
    case "bot-llm-started":
      newReply();
      break;
    case "bot-llm-text":
      if (data.text) botText(data.text, false);
      break;
    case "bot-tts-text":
      if (data.text) botText(data.text, true);
      break;
  }
}

// -- the connection ----------------------------------------------------------------------

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

// The bot's audio packets keep coming while the call is up (silence included):
// when they stop for SILENT_PEER_MS the page says "reconnecting…" at once, and
// gives the connection INTERRUPTED_GRACE_MS to come back before it retries.
function watchPackets(peer) {
  let last = -1;
  let since = performance.now();
  let warned = false;
  clearInterval(watchTimer);
  watchTimer = setInterval(async () => {
    if (peer !== pc || framegraph.state !== "connected" && !warned) return;
    let received = 0;
    (await peer.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") received = s.packetsReceived;
    });
    const now = performance.now();
    if (received !== last) {
      last = received;
      since = now;
      if (warned) {
        warned = false;
        setState("connected", `connected; ${ACTIVITY_TEXT[framegraph.activity]}`);
      }
      return;
    }
    if (!warned && now - since > SILENT_PEER_MS) {
      warned = true;
      setState("reconnecting", "reconnecting… (nothing heard from the agent)");
    } else if (warned && now - since > SILENT_PEER_MS + INTERRUPTED_GRACE_MS) {
      lost("the connection dropped");
    }
  }, 250);
}

async function connect() {
  clearTimeout(retryTimer);
  setState(attempt ? "reconnecting" : "connecting", attempt ? `reconnecting… (attempt ${attempt} of ${MAX_ATTEMPTS})` : "connecting");
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
      if (event.track.kind === "audio") window.framegraphMeter.watch(event.track, onBotLevel).then((stop) => stopMeters.push(stop));
    };
    window.framegraphMeter.watch(mic.getAudioTracks()[0], onMicLevel).then((stop) => stopMeters.push(stop));
    if (window.framegraphFace) window.framegraphFace.attach(peer, mic); // face hook (face.js): playout delay, mic level
    const ch = (channel = peer.createDataChannel("chat", { ordered: true }));
    ch.onopen = () => {
      sayClientReady(ch);
      pingTimer = setInterval(() => ch.readyState === "open" && ch.send("ping"), PING_MS);
    };
    ch.onmessage = onMessage;
    ch.onclose = () => peer === pc && lost("the connection closed");
    peer.onconnectionstatechange = () => {
      if (peer !== pc) return;
      const s = peer.connectionState;
      clearTimeout(interruptedTimer);
      if (s === "connected") {
        attempt = 0;
        ui.disconnect.disabled = false;
        setState("connected", "connected");
        watchPackets(peer);
      } else if (s === "disconnected") {
        setState("reconnecting", "reconnecting… (the connection was interrupted)");
        interruptedTimer = setTimeout(() => peer === pc && lost("the connection was interrupted"), INTERRUPTED_GRACE_MS);
      } else if (s === "failed" || s === "closed") {
        lost("the connection was lost");
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
    if (!response.ok) throw new Refused(response.status);
    const answer = await response.json();
    if (peer !== pc) return;
    await peer.setRemoteDescription(answer);
  } catch (err) {
    if (err && err.name === "NotAllowedError") {
      wanted = false;
      teardown();
      setState("failed", "microphone permission denied: allow the microphone for this page, then Connect");
      ui.connect.disabled = false;
      return;
    }
    lost(humanReason(err));
  }
}

function teardown() {
  clearInterval(pingTimer);
  clearInterval(watchTimer);
  clearTimeout(interruptedTimer);
  pingTimer = watchTimer = null;
  for (const stop of stopMeters.splice(0)) stop();
  const old = pc;
  pc = channel = null;
  if (old) old.close();
  silenceBot(false);
  duckBot(false);
  botCut();
  setActivity("listening");
}

// The connection is gone: retry after 1 s, 2 s, 4 s, ... at most 30 s; give up after MAX_ATTEMPTS.
function lost(reason) {
  teardown();
  if (!wanted) return;
  clearTimeout(retryTimer);
  if (attempt >= MAX_ATTEMPTS) {
    setState("failed", `${reason}. Gave up after ${MAX_ATTEMPTS} attempts: check that the agent is running, then press Retry now.`);
    return;
  }
  attempt += 1;
  let left = Math.min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (attempt - 1));
  const tick = () => {
    if (!wanted) return;
    if (left <= 0) {
      connect();
      return;
    }
    setState("reconnecting", `${reason}; reconnecting in ${left} s (attempt ${attempt} of ${MAX_ATTEMPTS})`);
    left -= 1;
    retryTimer = setTimeout(tick, 1000);
  };
  tick();
}

setInterval(() => revealTick(50), 50);

ui.connect.addEventListener("click", () => {
  wanted = true;
  attempt = 0;
  ui.connect.disabled = true;
  connect();
});

ui.retry.addEventListener("click", () => {
  if (!wanted) return;
  if (framegraph.state === "failed") attempt = 0;
  teardown();
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
