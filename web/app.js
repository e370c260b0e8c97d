// Tutti browser client: microphone + camera to the server over WebRTC, speech and captions back.
"use strict";
const $ = (id) => document.getElementById(id);
let pc = null, stream = null, statsTimer = null, meters = null;
window.tutti = { captions: "", events: 0, connected: false };
window.tutti.micEnabled = () => !!stream && stream.getAudioTracks().every((t) => t.enabled);
// A token from the page's address (https://HOST/#token=...), for servers started with --token or
// --token-secret-file; it stays in the fragment, which browsers never send to a server.
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const auth = token ? { Authorization: `Bearer ${token}` } : {};

// An error already in words for the person using the page (others are shown as "Error: ...").
class Worded extends Error {}

// The server's answer as JSON, or an Error that says in words why it refused.
async function ask(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...auth, ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const words = response.status === 401 ? "this server needs a valid token in the page's address (#token=...)"
      : response.status === 503 ? "the server is full; try again shortly" : body.error || response.statusText;
    throw new Worded(`Refused: ${words}`);
  }
  return body;
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const d of devices) {
    const select = d.kind === "audioinput" ? $("mic") : d.kind === "videoinput" ? $("camera") : null;
    if (!select || [...select.options].some((o) => o.value === d.deviceId)) continue;
    select.add(new Option(d.label || `${d.kind} ${select.options.length + 1}`, d.deviceId));
  }
}

// The status line is a polite live region: a screen reader announces each change, so it changes only
// when the state does.
function say(text) { if ($("status").textContent !== text) $("status").textContent = text; }

// getUserMedia's refusals, in words.
function deviceError(e) {
  if (e.name === "NotAllowedError") return "Microphone or camera access was refused: allow it in the browser's site settings.";
  if (e.name === "NotFoundError") return "No microphone (or the chosen camera) was found.";
  if (e.name === "NotReadableError") return "The microphone or camera is in use by another program.";
  return `Error: ${e.message}`;
}

async function start() {
  $("start").disabled = true;
  say("Connecting…");
  const cam = $("camera").value;
  const audio = { echoCancellation: true, noiseSuppression: true };
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: $("mic").value ? { ...audio, deviceId: { exact: $("mic").value } } : audio,
      video: cam === "any" ? true : cam ? { deviceId: { exact: cam } } : false,
    });
  } catch (e) {
    throw new Worded(deviceError(e));
  }
  $("preview").srcObject = stream;
  const config = await ask("/config");
  window.tutti.iceServers = config.iceServers;
  pc = new RTCPeerConnection({ iceServers: config.iceServers });
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  pc.addTransceiver("audio", { direction: "recvonly" });
  const channel = pc.createDataChannel("events");
  channel.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    window.tutti.events += 1;
    if (msg.type === "caption") {
      window.tutti.captions += msg.text;
      $("captions").textContent = window.tutti.captions.slice(-400);
    } else if (msg.type === "vision") {
      drawChanges(msg);
    } else if (msg.type === "timings") {
      $("steps").textContent = msg.steps;
      $("late").textContent = msg.late_frames;
    }
  };
  pc.ontrack = (event) => {
    $("remote").srcObject = event.streams[0] || new MediaStream([event.track]);
    meters = levelMeters(stream, $("remote").srcObject);
  };
  pc.onconnectionstatechange = () => {
    const state = pc.connectionState;
    say(state === "connected" ? "Listening." : state === "failed" ? "The connection failed." : `Connection: ${state}`);
    window.tutti.connected = state === "connected";
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
  });
  const answer = await ask("/offer", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
  });
  await pc.setRemoteDescription(answer);
  $("stop").disabled = false;
  $("mute").disabled = false;
  $("stop").focus();
  statsTimer = setInterval(updateStats, 500);
}

// The changed-patch overlay: the cells the server re-encoded for the last camera frame it used. The
// encoder sees the centred square of the frame, split into grid x grid cells.
function drawChanges(msg) {
  window.tutti.vision = msg;
  const video = $("preview"), canvas = $("overlay");
  canvas.width = video.clientWidth;
  canvas.height = video.clientHeight;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const side = Math.min(canvas.width, canvas.height), cell = side / msg.grid;
  const left = (canvas.width - side) / 2, top = (canvas.height - side) / 2;
  g.fillStyle = "rgba(255, 200, 0, 0.35)";
  for (const index of msg.changed) {
    g.fillRect(left + (index % msg.grid) * cell, top + Math.floor(index / msg.grid) * cell, cell, cell);
  }
  $("vision").textContent = `Re-encoded: ${Math.round(100 * msg.recomputed)}% of a full encode, ${msg.changed.length} tokens changed`;
}

async function updateStats() {
  if (!pc) return;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      window.tutti.packets = s.packetsReceived;
      $("packets").textContent = s.packetsReceived;
      if (s.jitterBufferEmittedCount) {
        $("jitter").textContent = `${Math.round(1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount)} ms`;
      }
    }
  });
}

// Who is speaking: a level for each side, and "answering" announced while Tutti's voice is up.
function levelMeters(mic, remote) {
  const ctx = new AudioContext();
  const level = (mediaStream) => {
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(mediaStream).connect(analyser);
    const data = new Float32Array(analyser.fftSize);
    return () => { analyser.getFloatTimeDomainData(data); return Math.sqrt(data.reduce((a, x) => a + x * x, 0) / data.length); };
  };
  const you = level(mic), tutti = level(remote);
  let quietSince = 0;
  const timer = setInterval(() => {
    const [a, b] = [you(), tutti()];
    $("you-level").value = Math.min(1, 5 * a);
    $("tutti-level").value = Math.min(1, 5 * b);
    const now = performance.now();
    if (b > 0.02) { quietSince = now; say("Tutti is answering."); }
    else if (now - quietSince > 1000 && window.tutti.connected && $("mute").getAttribute("aria-pressed") !== "true") {
      say("Listening.");
    }
  }, 100);
  return { close: () => { clearInterval(timer); ctx.close(); } };
}

function toggleMute() {
  if (!stream) return;
  const muted = $("mute").getAttribute("aria-pressed") !== "true";
  stream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  $("mute").setAttribute("aria-pressed", String(muted));
  say(muted ? "Microphone muted." : "Listening.");
}

async function stop() {
  clearInterval(statsTimer);
  if (meters) { meters.close(); meters = null; }
  if (pc) { pc.close(); pc = null; }
  if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  window.tutti.connected = false;
  $("start").disabled = false;
  $("stop").disabled = true;
  $("mute").disabled = true;
  $("mute").setAttribute("aria-pressed", "false");
  $("start").focus();
  say("Stopped.");
}

$("start").addEventListener("click", () => start().catch(async (e) => {
  await stop();
  say(e instanceof Worded ? e.message : `Error: ${e.message}`);
}));
$("stop").addEventListener("click", stop);
$("mute").addEventListener("click", toggleMute);
// Shortcuts with two modifiers, so that they never take a screen reader's or a typist's single keys.
document.addEventListener("keydown", (event) => {
  if (!event.altKey || !event.shiftKey || event.ctrlKey || event.metaKey) return;
  const button = { KeyS: "start", KeyE: "stop", KeyM: "mute" }[event.code];
  if (button && !$(button).disabled) { event.preventDefault(); $(button).click(); }
});
navigator.mediaDevices.getUserMedia({ audio: true, video: true })
  .then((s) => { s.getTracks().forEach((t) => t.stop()); return listDevices(); })
  .catch(() => listDevices());

// Mouth-to-ear measurement: the time from a sound onset in the microphone to the onset of what comes back,
// both seen on the page's own audio clock (used by bench/e2e.py in echo mode; harmless otherwise).
window.tutti.measureOnsets = function (micThreshold, remoteThreshold) {
  // The returned audio's onset counts only after the microphone's, and must rise above 1.5x the level
  // it had before (a codec's idle output is not exactly silent).
  const ctx = new AudioContext();
  const onsets = { mic: null, remote: null, remoteFloor: 0 };
  window.tutti.onsets = onsets;
  const watch = (mediaStream, key) => {
    const node = ctx.createScriptProcessor(256, 1, 1);
    node.onaudioprocess = (event) => {
      if (onsets[key] !== null) return;
      const data = event.inputBuffer.getChannelData(0);
      const remote = key === "remote";
      if (remote && onsets.mic === null) {
        for (const x of data) onsets.remoteFloor = Math.max(onsets.remoteFloor, Math.abs(x));
        return;
      }
      const threshold = remote ? Math.max(remoteThreshold, 1.5 * onsets.remoteFloor) : micThreshold;
      for (let i = 0; i < data.length; i++) {
        if (Math.abs(data[i]) > threshold) { onsets[key] = event.playbackTime + i / ctx.sampleRate; return; }
      }
    };
    ctx.createMediaStreamSource(mediaStream).connect(node);
    node.connect(ctx.destination);
  };
  watch(stream, "mic");
  watch($("remote").srcObject, "remote");
};
