// bench/browser.py's ears in the page: level meters on the microphone track and the bot's track.
//
// Installed before any page script runs (Page.addScriptToEvaluateOnNewDocument),
// so it works the same on framegraph's own page and on a bare page talking to
// plain pipecat. It wraps getUserMedia (the microphone as the page sends it,
// after Chrome's echo canceller, noise suppression and gain control) and
// RTCPeerConnection (the bot's incoming track, and the data channel's RTVI
// messages). The page's AudioWorklet meter (transports/web/meter.js, which
// the benchmark installs first) measures each track's level every 10 ms; a bot
// element that the page has muted counts as silence, since that is what the
// person hears. Times are epoch milliseconds (performance.timeOrigin + now),
// so the benchmark can set them beside the server's clock.
"use strict";
(() => {
  if (!navigator.mediaDevices) return; // not a secure context (about:blank)
  const now = () => performance.timeOrigin + performance.now();
  const probe = (window.benchProbe = { mic: [], bot: [], rtvi: [], reports: [], micAt: null, errors: [], peers: [] });
  // The bot's track's jitter buffer as Chrome reports it: mean delay of the samples played, and its target (ms).
  probe.jitterBuffer = async () => {
    for (const peer of probe.peers.slice().reverse()) {
      for (const s of (await peer.getStats()).values()) {
        if (s.type === "inbound-rtp" && s.kind === "audio" && s.jitterBufferEmittedCount) {
          return { delay: (1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount,
            target: (1000 * s.jitterBufferTargetDelay) / s.jitterBufferEmittedCount,
            minimum: (1000 * (s.jitterBufferMinimumDelay || 0)) / s.jitterBufferEmittedCount };
        }
      }
    }
    return null;
  };
  function botMuted() {
    const elements = [...document.querySelectorAll("audio")].filter((a) => a.srcObject);
    return elements.length > 0 && elements.every((a) => a.muted || a.paused);
  }

  // The page's own meter (transports/web/meter.js, installed before this script): dBFS every 10 ms.
  const meters = window.framegraphMeter;
  function meter(track, into, ear) {
    meters.watch(track, (db, at) => into.push([at, ear && botMuted() ? -180 : db]))
      .catch((err) => probe.errors.push(String(err)));
  }

  const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await getUserMedia(constraints);
    probe.micAt = now();
    meter(stream.getAudioTracks()[0], probe.mic, false);
    return stream;
  };

  function listen(channel) {
    channel.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      try {
        const msg = JSON.parse(event.data);
        if (msg.label === "rtvi-ai" && msg.type !== "server-message") probe.rtvi.push([now(), msg.type, msg.data || {}]);
      } catch {
        // not JSON: pings and the like
      }
    });
  }

  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const peer = new Native(...args);
    probe.peers.push(peer);
    peer.addEventListener("track", (event) => event.track.kind === "audio" && meter(event.track, probe.bot, true));
    peer.addEventListener("datachannel", (event) => listen(event.channel));
    const create = peer.createDataChannel.bind(peer);
    peer.createDataChannel = (...a) => {
      const channel = create(...a);
      listen(channel);
      const send = channel.send.bind(channel);
      channel.send = (data) => { // the page's own reports of what it heard
        if (typeof data === "string" && data.includes('"speech-end-to-heard"')) {
          probe.reports.push([now(), JSON.parse(data).data.d.speech_end_to_heard_ms]);
        }
        return send(data);
      };
      return channel;
    };
    return peer;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
