// The agent's face and introduction on framegraph's page (docs/avatar.md).
//
// What it shows: what the agent is and what it understands (GET /api/agent:
// its description and, for a closed-domain agent, its phrases), the
// microphone level, whether the bot is listening, thinking or speaking, and,
// when the agent has an avatar that sends poses, its face: a canvas drawn
// from ARKit blendshapes, as processors/avatar/renderer.py draws the video.
//
// Timing: the server sends each avatar-pose message when the audio sample
// it belongs to goes out (pipelines/av_sync.py), so a pose of utterance u at
// t ms arrives at about (when u's first sample went out) + t. The page
// anchors each utterance at the earliest arrival - t of its poses (later
// arrivals were only delayed), and shows pose t at anchor + t + the audio's
// playout delay (the WebRTC jitter buffer, from the audio receiver's stats),
// so the mouth moves with the voice the page plays, not ahead of it. Poses
// of utterance 0 (idle, blinks, the ease after an interruption) are shown
// on arrival; on bot-interrupted every queued pose of the interrupted speech
// is dropped, and late ones of it are ignored.
//
// The hook: app.js calls framegraphFace.attach(peer, micStream) for each
// connection and framegraphFace.onMessage(msg) for each RTVI message.
"use strict";

(() => {
  const NAMES = [
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight",
    "eyeWideRight", "jawForward", "jawRight", "jawLeft", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
    "mouthRight", "mouthLeft", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp",
    "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft",
    "noseSneerRight", "tongueOut",
  ];
  const COLORS = {
    background: "rgb(38,50,72)", skin: "rgb(240,200,170)", shade: "rgb(214,170,142)", lips: "rgb(196,84,92)",
    mouth: "rgb(70,20,30)", teeth: "rgb(246,246,240)", tongue: "rgb(222,110,120)", eye: "rgb(252,252,252)",
    iris: "rgb(60,90,140)", brow: "rgb(90,60,40)",
  };
  const POINTS = 9;
  const STATS_MS = 1000;
  const STATE_TEXT = { listening: "listening", thinking: "thinking", speaking: "speaking" };

  const root = document.getElementById("agent-face");
  const face = (window.framegraphFace = {
    state: { bot: "listening", jaw: 0, shown: 0, dropped: 0, interruptions: 0, playoutMs: 0, micLevel: 0, info: null },
    attach,
    onMessage,
  });

  // The layout: introduction, status and microphone, face.
  root.innerHTML = `
    <div class="face-intro"><p class="face-description"></p><div class="face-phrases" hidden>
      <p>It understands exactly these:</p><ul></ul></div></div>
    <div class="face-status"><span class="face-bot" data-bot="listening">listening</span>
      <label>microphone <meter class="face-mic" min="0" max="1" value="0"></meter></label></div>
    <canvas class="face-canvas" width="256" height="256" hidden></canvas>`;
  const ui = {
    description: root.querySelector(".face-description"),
    phrases: root.querySelector(".face-phrases"),
    bot: root.querySelector(".face-bot"),
    mic: root.querySelector(".face-mic"),
    canvas: root.querySelector(".face-canvas"),
  };
  const ctx = ui.canvas.getContext("2d");

  fetch("/api/agent")
    .then((r) => (r.ok ? r.json() : null))
    .then((info) => info && introduce(info))
    .catch(() => {});

  function introduce(info) {
    face.state.info = info;
    ui.description.textContent = info.description || info.name;
    if (info.phrases && info.phrases.length) {
      const list = ui.phrases.querySelector("ul");
      for (const phrase of info.phrases) {
        const li = document.createElement("li");
        li.textContent = phrase;
        list.appendChild(li);
      }
      ui.phrases.hidden = false;
    }
    if (info.avatar) {
      ui.canvas.hidden = false;
      draw(new Float32Array(NAMES.length));
      requestAnimationFrame(tick);
    }
  }

  // Bot state

  function setBot(state) {
    face.state.bot = state;
    ui.bot.dataset.bot = state;
    ui.bot.textContent = STATE_TEXT[state];
  }

  // Poses

  const queue = []; // {u, t, w} in arrival order
  const anchors = new Map(); // utterance -> earliest (arrival - t), ms
  let interruptedUpTo = 0; // utterances at or below this were interrupted

  function decode(b64) {
    const raw = atob(b64);
    const w = new Float32Array(NAMES.length);
    for (let i = 0; i < w.length; i++) w[i] = raw.charCodeAt(i) / 255;
    return w;
  }

  function onPose(data) {
    const now = performance.now();
    const w = decode(data.w);
    if (data.u === 0) {
      show(w);
      return;
    }
    if (data.u <= interruptedUpTo) {
      face.state.dropped += 1;
      return;
    }
    const base = now - data.t;
    anchors.set(data.u, Math.min(anchors.has(data.u) ? anchors.get(data.u) : Infinity, base));
    queue.push({ u: data.u, t: data.t, w });
  }

  function tick(now) {
    let latest = null;
    while (queue.length) {
      const p = queue[0];
      if (anchors.get(p.u) + p.t + face.state.playoutMs > now) break;
      latest = queue.shift();
    }
    if (latest) show(latest.w);
    requestAnimationFrame(tick);
  }

  function interrupted() {
    face.state.interruptions += 1;
    face.state.dropped += queue.length;
    for (const u of anchors.keys()) interruptedUpTo = Math.max(interruptedUpTo, u);
    for (const p of queue) interruptedUpTo = Math.max(interruptedUpTo, p.u);
    queue.length = 0;
  }

  function onMessage(msg) {
    const data = msg.data || {};
    switch (msg.type) {
      case "server-message":
        if (data.type === "avatar-pose") onPose(data);
        break;
      case "bot-interrupted":
        interrupted();
        setBot("listening");
        break;
      case "bot-started-speaking":
        setBot("speaking");
        break;
      case "bot-stopped-speaking":
        setBot("listening");
        break;
      case "user-stopped-speaking":
        setBot("thinking");
        break;
      case "user-transcription":
        if (data.final && face.state.bot !== "speaking") setBot("thinking");
        break;
    }
  }

  // The connection: the audio's playout delay, the microphone's level

  let statsTimer = null;
  let meterTimer = null;

  function attach(peer, mic) {
    clearInterval(statsTimer);
    let last = null;
    statsTimer = setInterval(async () => {
      if (peer.connectionState === "closed") return clearInterval(statsTimer);
      const stats = await peer.getStats();
      stats.forEach((s) => {
        if (s.type !== "inbound-rtp" || s.kind !== "audio" || !s.jitterBufferEmittedCount) return;
        if (last && s.jitterBufferEmittedCount > last.jitterBufferEmittedCount) {
          const delay = (s.jitterBufferDelay - last.jitterBufferDelay) /
            (s.jitterBufferEmittedCount - last.jitterBufferEmittedCount);
          face.state.playoutMs = 1000 * delay;
        }
        last = { jitterBufferDelay: s.jitterBufferDelay, jitterBufferEmittedCount: s.jitterBufferEmittedCount };
      });
    }, STATS_MS);
    if (mic && !meterTimer) meter(mic);
  }

  function meter(mic) {
    const audio = new AudioContext();
    const analyser = audio.createAnalyser();
    analyser.fftSize = 1024;
    audio.createMediaStreamSource(mic).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const x of samples) sum += x * x;
      const db = 20 * Math.log10(Math.sqrt(sum / samples.length) + 1e-9);
      face.state.micLevel = Math.max(0, Math.min(1, (db + 60) / 60)); // -60 dBFS .. 0 dBFS
      ui.mic.value = face.state.micLevel;
    }, 50);
  }

  // Drawing (the same face as processors/avatar/renderer.py)

  function show(w) {
    face.state.shown += 1;
    face.state.jaw = w[NAMES.indexOf("jawOpen")];
    draw(w);
  }

  function draw(weights) {
    const w = {};
    NAMES.forEach((n, i) => (w[n] = weights[i]));
    const s = ui.canvas.width;
    ctx.fillStyle = COLORS.background;
    ctx.fillRect(0, 0, s, s);
    ellipse(0.14, 0.44, 0.05, 0.09, COLORS.shade);
    ellipse(0.86, 0.44, 0.05, 0.09, COLORS.shade);
    ellipse(0.5, 0.5, 0.36, 0.44, COLORS.skin);
    line([[0.5, 0.47], [0.47, 0.58], [0.52, 0.59]], COLORS.shade, 0.012);
    for (const [side, cx, out] of [["Right", 0.36, -1], ["Left", 0.64, 1]]) {
      eye(w, side, cx, out);
      brow(w, side, cx, out);
    }
    mouth(w);
  }

  function ellipse(cx, cy, rx, ry, fill) {
    const s = ui.canvas.width;
    ctx.fillStyle = fill;
    ctx.beginPath();
    ctx.ellipse(cx * s, cy * s, rx * s, ry * s, 0, 0, 2 * Math.PI);
    ctx.fill();
  }

  function line(points, stroke, width) {
    const s = ui.canvas.width;
    ctx.strokeStyle = stroke;
    ctx.lineWidth = Math.max(1, width * s);
    ctx.beginPath();
    points.forEach(([x, y], i) => (i ? ctx.lineTo(x * s, y * s) : ctx.moveTo(x * s, y * s)));
    ctx.stroke();
  }

  function polygon(points, fill) {
    const s = ui.canvas.width;
    ctx.fillStyle = fill;
    ctx.beginPath();
    points.forEach(([x, y], i) => (i ? ctx.lineTo(x * s, y * s) : ctx.moveTo(x * s, y * s)));
    ctx.closePath();
    ctx.fill();
  }

  function eye(w, side, cx, out) {
    const cy = 0.42;
    const opening = 0.045 * (1 + 0.5 * w["eyeWide" + side] - 0.4 * w["eyeSquint" + side]) * (1 - w["eyeBlink" + side]);
    if (opening < 0.006) {
      line([[cx - 0.075, cy], [cx + 0.075, cy]], COLORS.brow, 0.01);
      return;
    }
    ellipse(cx, cy, 0.075, opening, COLORS.eye);
    const gx = out * (w["eyeLookOut" + side] - w["eyeLookIn" + side]) * 0.04;
    const gy = (w["eyeLookDown" + side] - w["eyeLookUp" + side]) * 0.025;
    const r = Math.min(0.028, opening);
    ellipse(cx + gx, cy + gy, r, r, COLORS.iris);
  }

  function brow(w, side, cx, out) {
    const down = 0.03 * w["browDown" + side];
    const innerY = 0.335 - 0.05 * w.browInnerUp + down;
    const outerY = 0.345 - 0.05 * w["browOuterUp" + side] + down * 0.5;
    line([[cx - out * 0.06, innerY], [cx + out * 0.085, outerY]], COLORS.brow, 0.022);
  }

  function mouth(w) {
    const cx = 0.5, cy = 0.72;
    const smile = (w.mouthSmileLeft + w.mouthSmileRight) / 2;
    const frown = (w.mouthFrownLeft + w.mouthFrownRight) / 2;
    const stretch = (w.mouthStretchLeft + w.mouthStretchRight) / 2;
    const press = (w.mouthPressLeft + w.mouthPressRight) / 2;
    const round = Math.max(w.mouthPucker, w.mouthFunnel);
    const halfWidth = 0.11 * (1 + 0.35 * smile + 0.3 * stretch - 0.45 * round);
    const shift = 0.03 * (w.mouthLeft - w.mouthRight) + 0.02 * (w.jawLeft - w.jawRight);
    const cornerY = cy - 0.03 * smile + 0.03 * frown;
    const closed = Math.min(1, press + w.mouthClose * 2);
    const upperOpen = (0.02 * w.jawOpen + 0.04 * (w.mouthUpperUpLeft + w.mouthUpperUpRight) / 2 + 0.02 * w.mouthFunnel) *
      (1 - closed);
    const lowerOpen = (0.16 * w.jawOpen + 0.04 * (w.mouthLowerDownLeft + w.mouthLowerDownRight) / 2 +
      0.02 * w.mouthFunnel) * (1 - closed);
    const upperLip = 0.02 * (1 - 0.6 * w.mouthRollUpper) * (1 + 0.5 * round);
    const lowerLip = 0.024 * (1 - 0.6 * w.mouthRollLower) * (1 + 0.5 * round);
    const power = 0.5 + (1 - round);
    const xs = [], bulge = [];
    for (let i = 0; i < POINTS; i++) {
      const x = -1 + (2 * i) / (POINTS - 1);
      xs.push(cx + shift + x * halfWidth);
      bulge.push(Math.pow(Math.max(0, 1 - Math.pow(Math.abs(x), 2 / power)), power / 2));
    }
    const curve = (k) => xs.map((x, i) => [x, cornerY + (cy - cornerY) * bulge[i] + k * bulge[i]]);
    const topIn = curve(-upperOpen), bottomIn = curve(lowerOpen);
    polygon(curve(-(upperOpen + upperLip)).concat(curve(lowerOpen + lowerLip).reverse()), COLORS.lips);
    if (upperOpen + lowerOpen > 0.004) {
      polygon(topIn.concat(bottomIn.slice().reverse()), COLORS.mouth);
      const teeth = Math.min(0.018, (upperOpen + lowerOpen) * 0.35);
      polygon(topIn.concat(curve(-upperOpen + teeth).reverse()), COLORS.teeth);
      if (w.tongueOut > 0.05) ellipse(cx, cy + lowerOpen * 0.8, 0.05, 0.04 * w.tongueOut, COLORS.tongue);
    } else {
      line(topIn, COLORS.mouth, 0.008);
    }
  }
})();
