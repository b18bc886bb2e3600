// lipspeech serve's page: a clip uploaded to /api/speak, or the camera streamed to /ws/live.
// URL parameters: token (the server's access token), live=N (start the camera at once and end after N
// frames), example=NAME (speak that example clip at once), report=1 (post the page's measurements and
// the PCM it received to /api/report).
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const $ = (id) => document.getElementById(id);
const RATE = 16000, SAMPLES_PER_FRAME = 640, FRAME_MS = 40, MAX_QUEUE = 0.12;

function withToken(path) {
  return token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path;
}

function say(el, text, error = false) {
  el.textContent = text;
  el.classList.toggle("error", error);
}

function percentile(xs, q) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const k = (s.length - 1) * q / 100, lo = Math.floor(k), hi = Math.ceil(k);
  return s[lo] + (s[hi] - s[lo]) * (k - lo);
}

async function report(body) {
  if (params.get("report") !== "1") return;
  await fetch(withToken("/api/report"), {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)});
}

// ------------------------------------------------------------------ the model
let info = null;
async function loadInfo() {
  const r = await fetch(withToken("/api/info"));
  if (!r.ok) { say($("model"), await r.text(), true); return; }
  info = await r.json();
  $("model").textContent = `model ${info.model} · vocoder ${info.vocoder} · clips up to ${info.max_upload_mb} MB and `
    + `${info.max_seconds} s · ` + (info.streaming
      ? `streaming: chunks of ${info.chunk_frames} + ${info.lookahead_frames} look-ahead frames`
        + (info.decoder_lookahead_frames ? ` (decoder: ${info.decoder_lookahead_frames})` : "")
      : "not a streaming model: clips only");
  for (const name of info.examples) {
    const b = document.createElement("button");
    b.textContent = name;
    b.addEventListener("click", () => speakClip(name, null));
    $("examples").append(b, " ");
    $("examples").hidden = false;
  }
  if (!info.streaming) {
    $("live-go").disabled = true;
    say($("live-msg"), info.live_error, true);
  }
}

// ------------------------------------------------------------------ a clip
function drawF0(f0) {
  const c = $("clip-f0"), g = c.getContext("2d");
  c.width = c.clientWidth; c.height = c.clientHeight;
  const top = Math.max(300, ...f0) * 1.1;
  g.strokeStyle = "#ff5a36"; g.lineWidth = 2;
  g.beginPath();
  let pen = false;
  f0.forEach((hz, i) => {
    const x = (i + 0.5) / f0.length * c.width, y = c.height * (1 - hz / top);
    if (hz > 0 && pen) g.lineTo(x, y); else if (hz > 0) g.moveTo(x, y);
    pen = hz > 0;
  });
  g.stroke();
  $("clip-f0-scale").textContent = `F0 (orange) from 0 to ${top.toFixed(0)} Hz; mel bins low to high, bottom to top`;
}

$("clip-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const file = $("clip-file").files[0];
  if (!file) { say($("clip-msg"), "choose a video first", true); return; }
  speakClip(file.name, file);
});

async function speakClip(name, file) {
  const form = new FormData();
  if (file) form.append("video", file);
  say($("clip-msg"), `speaking ${name}…`);
  $("clip-go").disabled = true;
  const t0 = performance.now();
  try {
    const url = file ? "/api/speak" : "/api/speak?example=" + encodeURIComponent(name);
    const r = await fetch(withToken(url), {method: "POST", body: form});
    const res = (r.headers.get("Content-Type") || "").includes("json") ? await r.json() : {error: await r.text()};
    if (!r.ok) { say($("clip-msg"), res.error || `error ${r.status}`, true); $("clip-out").hidden = true; return; }
    const s = res.seconds;
    say($("clip-msg"), `${name}: ${res.frames} frames (${res.duration.toFixed(2)} s) in ${s.total.toFixed(2)} s on `
      + `the server (decode ${s.decode.toFixed(2)}, mouth crops ${s.roi.toFixed(2)}, model ${s.model.toFixed(2)}, `
      + `vocoder ${s.vocoder.toFixed(2)} s; real-time factor ${res.rtf}), ${((performance.now() - t0) / 1000).toFixed(2)} s `
      + `with the upload`);
    $("clip-out").hidden = false;
    $("clip-audio").src = res.audio;
    $("clip-crops").src = res.crops;
    $("clip-mel").src = res.mel;
    drawF0(res.f0);
    $("clip-audio").play().catch(() => {});
    if (params.get("report") === "1") {
      const loaded = (el, ev) => new Promise((ok) => el.addEventListener(ev, ok, {once: true}));
      await Promise.all([loaded($("clip-crops"), "load"), loaded($("clip-mel"), "load"),
                         loaded($("clip-audio"), "loadedmetadata")]);
      await report({kind: "clip", name, frames: res.frames, crops_width: $("clip-crops").naturalWidth,
                    mel_width: $("clip-mel").naturalWidth, audio_seconds: $("clip-audio").duration,
                    f0_frames: res.f0.length, message: $("clip-msg").textContent});
    }
  } catch (e) {
    say($("clip-msg"), `the server did not answer: ${e}`, true);
  } finally {
    $("clip-go").disabled = false;
  }
}

// ------------------------------------------------------------------ live
let live = null;

function logEvent(line) {
  const li = document.createElement("li");
  li.textContent = line;
  $("live-events").prepend(li);
}

function logSkip(L) {
  if (performance.now() - L.lastSkipLog < 2000) return;
  L.lastSkipLog = performance.now();
  logEvent(`audio came in a burst: skipped to catch up (${(L.skipped / RATE).toFixed(2)} s skipped so far)`);
}

function setState(text, cls) {
  $("live-state").textContent = text;
  $("live-state").className = cls;
}

async function startLive(maxFrames) {
  const msg = $("live-msg");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {frameRate: {ideal: 25}}, audio: false});
  } catch (e) {
    say(msg, `no camera: ${e.message || e}`, true);
    return;
  }
  const video = $("live-video");
  video.srcObject = stream;
  stream.getVideoTracks()[0].addEventListener("ended", () => {  // unplugged, or taken by another program
    say(msg, "the camera stopped", true);
    if (live && live.ws.readyState === WebSocket.OPEN) live.ws.send("end");
    if (live) live.ended = true;
  });
  await video.play();
  const ctx = new AudioContext({sampleRate: RATE});
  await ctx.resume();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(withToken(`${scheme}//${location.host}/ws/live`));
  ws.binaryType = "arraybuffer";
  const L = live = {ws, ctx, stream, video, sent: 0, captureAt: [], samples: 0, playHead: 0, latencies: [],
                    pcm: [], skipped: 0, unheard: 0, sendMs: [], queueMs: [], lastSkipLog: 0, running: false, ended: false,
                    chain: Promise.resolve(), maxFrames};
  const canvas = document.createElement("canvas");
  const maxSide = 1280;

  function capture(now) {
    if (!L.running || L.ended) return;
    if (now >= L.nextDue - 5) {  // 25 frames a second, whatever the camera's rate
      L.nextDue = Math.max(L.nextDue + FRAME_MS, now - FRAME_MS);
      const k = Math.min(1, maxSide / Math.max(video.videoWidth, video.videoHeight));
      canvas.width = Math.round(video.videoWidth * k); canvas.height = Math.round(video.videoHeight * k);
      canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
      L.captureAt.push(now);
      L.sent += 1;
      const blob = new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.9));
      const last = L.maxFrames && L.sent >= L.maxFrames;
      L.chain = L.chain.then(() => blob).then((b) => b.arrayBuffer()).then((buf) => {
        L.sendMs.push(performance.now() - now);  // capture to sent: the JPEG's encoding and the queue before it
        if (ws.readyState === WebSocket.OPEN) ws.send(buf);
        if (last && ws.readyState === WebSocket.OPEN) ws.send("end");
      });
      if (last) { L.ended = true; return; }
    }
    schedule();
  }
  function schedule() {
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback((now) => capture(now));
    else setTimeout(() => capture(performance.now()), 10);
  }

  function play(data) {
    const view = new DataView(data);
    const n = view.getUint32(0, true);
    const spoken = [];
    for (let i = 0; i < n; i++) spoken.push(view.getUint32(4 + 4 * i, true));
    const pcm = new Int16Array(data.slice(4 + 4 * n));
    L.pcm.push(pcm);
    if (!pcm.length) return;
    // at most MAX_QUEUE s waits to be played: a burst after a stall (the server catching up) would
    // otherwise delay everything after it for good; its excess is skipped, as live drops frames
    let startAt = Math.max(L.playHead, ctx.currentTime + 0.01);
    const excess = startAt + pcm.length / RATE - (ctx.currentTime + MAX_QUEUE);
    const skip = excess > 0 ? Math.min(pcm.length, Math.round(excess * RATE)) : 0;
    L.skipped += skip;
    L.queueMs.push(1000 * (startAt - ctx.currentTime));  // how long this audio waits to be played
    if (skip) logSkip(L);
    if (skip < pcm.length) {
      const buf = ctx.createBuffer(1, pcm.length - skip, RATE);
      const ch = buf.getChannelData(0);
      for (let i = skip; i < pcm.length; i++) ch[i - skip] = pcm[i] / 32768;
      const src = ctx.createBufferSource();
      src.buffer = buf;
      src.connect(ctx.destination);
      src.start(startAt);
      L.playHead = startAt + (pcm.length - skip) / RATE;
    }
    // the moment a spoken frame's last sample is heard, on performance.now()'s clock
    const ts = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : {};
    const nowCtx = ts.performanceTime ? ts.contextTime : ctx.currentTime;
    const nowPerf = ts.performanceTime ? ts.performanceTime : performance.now();
    const out = 1000 * (ctx.outputLatency || 0);
    for (const f of spoken) {
      const k = (f + 1) * SAMPLES_PER_FRAME - 1 - L.samples - skip;  // its last sample in what is played
      if (k < 0) { L.unheard += 1; continue; }
      const at = startAt + k / RATE;
      if (L.captureAt[f] !== undefined) L.latencies.push(nowPerf + 1000 * (at - nowCtx) + out - L.captureAt[f]);
    }
    L.samples += pcm.length;
    if (L.latencies.length) {
      $("live-latency").textContent = `capture to playback p50 ${percentile(L.latencies, 50).toFixed(0)} ms, `
        + `p95 ${percentile(L.latencies, 95).toFixed(0)} ms (${L.latencies.length} frames)`;
    }
  }

  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") { play(ev.data); return; }
    const m = JSON.parse(ev.data);
    if (m.error) {
      say(msg, m.error, true);
      setState("stopped", "");
      report({kind: "live-error", error: m.error, shown: msg.textContent});
      return;
    }
    if (m.ready) {
      const a = m.algorithmic_ms;
      $("live-design").textContent = `${a.total.toFixed(0)} ms (model ${a.model.toFixed(0)}, mouth crops `
        + `${a.roi.toFixed(0)}, vocoder ${a.vocoder.toFixed(0)})`;
      say(msg, "streaming: speak to the camera");
      L.running = true;
      L.nextDue = performance.now();
      schedule();
    }
    if (m.event) logEvent(m.event);
    if (m.state) {
      const s = m.state;
      if (s.behind_ms > 200) setState(`falling behind (${s.behind_ms} ms; ${s.dropped} frames dropped)`, "behind");
      else if (!s.face) setState("no face in view: silence", "noface");
      else setState("face in view: speaking", "speaking");
      if (m.crop) $("live-crop").src = m.crop;
    }
    if (m.done) finishLive(m.done);
  };
  ws.onclose = () => {  // after "done" (finishLive), or early: busy, not streaming, the server gone
    if (L.finished) return;
    stopCamera(L);
    setState("stopped", "");
    if (!msg.classList.contains("error")) say(msg, "the server closed the stream", true);
  };
  ws.onerror = () => say(msg, "the connection to the server failed", true);
  $("live-go").textContent = "Stop";
}

function stopCamera(L) {
  L.running = false;
  L.ended = true;
  L.stream.getTracks().forEach((t) => t.stop());
  $("live-go").textContent = "Start the camera";
  if (live === L) live = null;
}

async function finishLive(done) {
  const L = live;
  if (!L) return;
  L.finished = true;
  stopCamera(L);
  setState("ended", "");
  say($("live-msg"), `${done.frames} frames, ${done.spoken} with a face, ${done.dropped} dropped; server real-time `
    + `factor ${done.rtf.toFixed(2)}`);
  const pcm = new Int16Array(L.pcm.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of L.pcm) { pcm.set(p, at); at += p.length; }
  let bin = "";
  const bytes = new Uint8Array(pcm.buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  await report({kind: "live", frames_sent: L.sent, latencies_ms: L.latencies, done, skipped_samples: L.skipped,
                unheard_frames: L.unheard,
                p50_ms: percentile(L.latencies, 50), p95_ms: percentile(L.latencies, 95), pcm: btoa(bin),
                output_latency_ms: 1000 * (L.ctx.outputLatency || 0), user_agent: navigator.userAgent,
                capture_to_sent_p50_ms: percentile(L.sendMs, 50), audio_wait_p50_ms: percentile(L.queueMs, 50)});
  L.ws.close();
}

$("live-go").addEventListener("click", () => {
  if (live) {
    if (live.ws.readyState === WebSocket.OPEN) live.ws.send("end");
    live.ended = true;
  } else {
    startLive(0);
  }
});

loadInfo().then(() => {
  const n = parseInt(params.get("live") || "0", 10);
  if (n > 0 && info && info.streaming) startLive(n);
  if (params.get("example") && info) speakClip(params.get("example"), null);
});
