// Level meters for the page: what the microphone sends and what the person hears of the bot.
//
// framegraphMeter.watch(track, onLevel) runs an AudioWorklet (its code is in
// this file, loaded from a Blob: nothing is fetched) that calls onLevel(dbfs,
// atMs) every 10 ms with the track's level. app.js uses the two meters to
// time, at the ear, how long the person waited from the end of their speech
// to the bot's first audible sound, and reports it to the server (an RTVI
// client-message), which keeps it in its own histogram beside its own figure.
"use strict";

window.framegraphMeter = (() => {
  const WORKLET = `
    class Level extends AudioWorkletProcessor {
      constructor() { super(); this.sum = 0; this.n = 0; }
      process(inputs) {
        const samples = inputs[0] && inputs[0][0];
        if (samples) {
          for (let i = 0; i < samples.length; i++) this.sum += samples[i] * samples[i];
          this.n += samples.length;
        }
        if (this.n >= sampleRate / 100) {
          this.port.postMessage(Math.sqrt(this.sum / this.n));
          this.sum = 0; this.n = 0;
        }
        return true;
      }
    }
    registerProcessor("framegraph-level", Level);`;
  let context = null;
  let ready = null;

  async function watch(track, onLevel) {
    if (!context) {
      context = new AudioContext();
      ready = context.audioWorklet.addModule(URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" })));
    }
    await ready;
    if (context.state !== "running") await context.resume();
    const node = new AudioWorkletNode(context, "framegraph-level");
    const source = context.createMediaStreamSource(new MediaStream([track]));
    source.connect(node);
    node.port.onmessage = (e) => onLevel(20 * Math.log10(e.data + 1e-9), performance.timeOrigin + performance.now());
    return () => {
      source.disconnect();
      node.port.onmessage = null;
    };
  }

  return { watch };
})();
