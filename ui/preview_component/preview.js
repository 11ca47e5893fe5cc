// BeatSync's sync preview: the class video, muted, with the clean song played in the browser along an
// alignment's segments (where each starts in the video and in the song, its rate, pitch kept or not),
// nudged by frames or milliseconds without any page rerun: the whole state lives here. Only "Render
// this" talks back to Python, once (setComponentValue); it is shown only to the task's owner (args.mine).
//
// A Streamlit component (v1, declared in ui/preview.py from this folder): the three messages of
// streamlit-component-lib's protocol are written out below (no build step, nothing vendored).
"use strict";

const Streamlit = {
  send(type, data) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type }, data), "*");
  },
  ready() { this.send("streamlit:componentReady", { apiVersion: 1 }); },
  setFrameHeight(height) { this.send("streamlit:setFrameHeight", { height }); },
  setComponentValue(value) { this.send("streamlit:setComponentValue", { value, dataType: "json" }); },
};

const $ = (id) => document.getElementById(id);
const root = $("root"), video = $("video"), song = $("song");
const MAX_NUDGE_MS = 2000;
const DRIFT_S = 0.04;       // the song is put back in place when it drifts further than this ...
const SEEK_PAUSE_MS = 250;  // ... but not again within this (a seek takes a moment to settle)
const LOOP_S = 2.0;

const S = {
  args: null, labels: {}, alignments: {}, choice: null, segments: [], nudgeMs: 0, frameMs: 1000 / 30,
  source: "song", loop: null, renders: 0, lastSeek: 0, key: null, restored: false, ready: { video: false, song: false },
  renderMessages: 0, argsChanges: 0, changed: [], lastArgs: null, videoUrl: null, songUrl: null,
};

// ---------------------------------------------------------------- timing

function segmentAt(t) {
  const n = S.nudgeMs / 1000;
  for (const g of S.segments) {
    if (t >= g.dance_start_s + n && t < g.dance_end_s + n) return g;
  }
  return null;
}

// the song time heard at video time t (null where the song does not play): bgm_start + (t - start) * rate
function songTimeAt(t) {
  const g = segmentAt(t);
  return g ? g.bgm_start_s + (t - S.nudgeMs / 1000 - g.dance_start_s) * g.rate : null;
}

function clock(t) {
  if (t == null || !isFinite(t)) return "–";
  const m = Math.floor(t / 60), s = t - 60 * m;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

// put the song where the video says it should be (force: even when it is close: a nudge is heard at once)
function follow(force) {
  const now = performance.now();
  const t = video.currentTime;
  if (S.loop && !video.paused && t >= S.loop[1]) {
    video.currentTime = S.loop[0];
    return;
  }
  const g = segmentAt(t);
  const target = g ? songTimeAt(t) : null;
  const playing = !video.paused && !video.ended && !video.seeking;
  const wanted = playing && S.source === "song" && target != null && song.readyState >= 2;
  video.muted = S.source !== "original";
  if (!wanted) {
    if (!song.paused) song.pause();
    if (target != null && (force || Math.abs(song.currentTime - target) > 0.002) && !song.seeking) {
      song.currentTime = target;  // ready for Play, and what the page reports
    }
  } else {
    const rate = g.rate * video.playbackRate;
    if (Math.abs(song.playbackRate - rate) > 1e-6) song.playbackRate = rate;
    const keepPitch = g.mode === "stretch";
    if (song.preservesPitch !== keepPitch) song.preservesPitch = keepPitch;
    if (song.paused) {
      song.currentTime = target;
      S.lastSeek = now;
      song.play().catch(() => {});
    } else if (force || (Math.abs(song.currentTime - target) > DRIFT_S && now - S.lastSeek > SEEK_PAUSE_MS)) {
      song.currentTime = target;
      S.lastSeek = now;
    }
  }
  report(t, target);
}

function report(t, target) {
  root.dataset.videoTime = t.toFixed(4);
  root.dataset.songTime = target == null ? "" : target.toFixed(4);
  root.dataset.audioTime = song.currentTime.toFixed(4);
  root.dataset.audioPaused = String(song.paused);
  root.dataset.nudgeMs = String(S.nudgeMs);
  root.dataset.variant = S.choice || "";
  root.dataset.source = S.source;
  root.dataset.renders = String(S.argsChanges);
  if (S.ready.video && S.ready.song) root.dataset.state = video.paused ? "paused" : "playing";
  const L = S.labels;
  $("clock").textContent = target == null
    ? `${clock(t)} · ${L.no_song || ""}`
    : `${clock(t)} · ${L.song_at || "song"} ${clock(target)}`;
  $("play").textContent = video.paused ? (L.play || "Play") : (L.pause || "Pause");
}

setInterval(() => follow(false), 40);

// ---------------------------------------------------------------- controls

function setNudge(ms, { save = true } = {}) {
  ms = Math.max(-MAX_NUDGE_MS, Math.min(MAX_NUDGE_MS, Math.round(Number(ms) * 10) / 10));
  if (!isFinite(ms)) ms = 0;
  S.nudgeMs = ms;
  const box = $("nudge");
  if (document.activeElement !== box || Number(box.value) !== ms) box.value = String(ms);
  follow(true);
  updateRender();
  if (save) store();
}

function setSource(source) {
  S.source = source;
  $("src-song").setAttribute("aria-pressed", String(source === "song"));
  $("src-original").setAttribute("aria-pressed", String(source === "original"));
  follow(true);
  store();
}

function setLoop(on) {
  if (on) {
    const c = video.currentTime, end = isFinite(video.duration) ? video.duration : c + LOOP_S;
    S.loop = [Math.max(0, c - LOOP_S), Math.min(end, c + LOOP_S)];
    video.currentTime = S.loop[0];
  } else {
    S.loop = null;
  }
  $("loop").setAttribute("aria-pressed", String(on));
  $("loop").textContent = on ? `${S.labels.loop || "Loop"} ${clock(S.loop[0])}–${clock(S.loop[1])}` : (S.labels.loop || "Loop");
}

function step(kind) {
  const d = kind === "frame" ? S.frameMs : kind === "-frame" ? -S.frameMs : Number(kind);
  setNudge(S.nudgeMs + d);
}

$("play").addEventListener("click", () => { if (video.paused) video.play().catch(() => {}); else video.pause(); });
$("src-song").addEventListener("click", () => setSource("song"));
$("src-original").addEventListener("click", () => setSource("original"));
$("loop").addEventListener("click", () => setLoop(!S.loop));
$("reset").addEventListener("click", () => setNudge(0));
for (const b of document.querySelectorAll("[data-step]")) b.addEventListener("click", () => step(b.dataset.step));
$("nudge").addEventListener("input", (e) => { if (e.target.value !== "" && e.target.value !== "-") setNudge(e.target.value); });
$("nudge").addEventListener("change", (e) => setNudge(e.target.value || 0));
$("variant").addEventListener("change", (e) => { S.choice = e.target.value; useAlignment(); store(); });
$("render").addEventListener("click", () => {
  if (!canRender()) return;
  S.renders += 1;
  Streamlit.setComponentValue({ action: "render", variant: S.choice, nudge_ms: S.nudgeMs, n: S.renders });
  $("status").textContent = (S.labels.sent || "").replace("{ms}", signed(S.nudgeMs));
});
for (const ev of ["play", "pause", "seeked", "ratechange", "ended"]) video.addEventListener(ev, () => follow(true));
video.addEventListener("volumechange", () => {  // the player's own mute button switches to the class's sound
  if (!video.muted && S.source === "song") setSource("original");
  else if (video.muted && S.source === "original") setSource("song");
});
video.addEventListener("canplay", () => { S.ready.video = true; follow(true); });
song.addEventListener("canplay", () => { S.ready.song = true; follow(true); });
video.addEventListener("loadedmetadata", () => {
  const saved = S.restored ? null : loadSaved();
  const t = saved && isFinite(saved.t) ? saved.t : (S.args && S.args.start_at_s) || 0;
  if (t > 0 && t < video.duration) video.currentTime = t;
  S.restored = true;
});
for (const [el, what] of [[video, "video"], [song, "song"]]) {
  el.addEventListener("error", () => {
    root.dataset.state = "error";
    $("status").textContent = (S.labels.cannot_play || "").replace("{what}", S.labels[what] || what);
  });
}

function signed(ms) { return (ms > 0 ? "+" : ms < 0 ? "−" : "±") + Math.abs(ms).toFixed(Number.isInteger(ms) ? 0 : 1); }

function canRender() {
  const a = S.args;
  return !!(a && a.mine !== false && a.can_render && a.can_render[S.choice] && Math.abs(S.nudgeMs) >= 0.5);
}

function updateRender() {
  const b = $("render");
  b.disabled = !canRender();
  const a = S.args;
  const L = S.labels;
  b.textContent = (L.render || "Render").replace("{ms}", signed(S.nudgeMs));
  let why = "";
  if (!(a && a.can_render && a.can_render[S.choice])) why = L.render_later || "";
  else if (Math.abs(S.nudgeMs) < 0.5) why = L.render_nudge_first || "";
  b.title = why;
  b.setAttribute("aria-description", why);
}

// ---------------------------------------------------------------- state kept across reloads of this frame

function loadSaved() {
  try { return JSON.parse(sessionStorage.getItem(S.key) || "null"); } catch (e) { return null; }
}

function store() {
  if (!S.key) return;
  try {
    sessionStorage.setItem(S.key, JSON.stringify({ nudgeMs: S.nudgeMs, choice: S.choice, source: S.source,
                                                   t: video.currentTime }));
  } catch (e) { /* private mode: nothing kept */ }
}
setInterval(store, 2000);

// ---------------------------------------------------------------- from Python

function useAlignment() {
  const al = S.alignments[S.choice];
  S.segments = al ? [...al.segments].sort((a, b) => a.dance_start_s - b.dance_start_s) : [];
  $("note").textContent = !al ? (S.labels.waiting || "") : S.choice === "quick" ? (S.labels.preliminary || "") : "";
  follow(true);
  updateRender();
}

function applyTheme(theme) {
  if (!theme) return;
  const css = document.documentElement.style;
  if (theme.textColor) css.setProperty("--text", theme.textColor);
  if (theme.backgroundColor) css.setProperty("--bg", theme.backgroundColor);
  if (theme.secondaryBackgroundColor) css.setProperty("--panel", theme.secondaryBackgroundColor);
  if (theme.font) css.setProperty("--font", theme.font);
  if (theme.base === "dark") {
    css.setProperty("--accent", "#ff8a80");
    css.setProperty("--accent-text", "#1f2129");
    css.setProperty("--muted", "#c9ccd4");
    css.setProperty("--line", "rgba(250, 250, 250, 0.35)");
  }
}

function setLabels(L) {
  S.labels = L;
  document.documentElement.lang = L.lang || "en";
  $("title").textContent = L.title || "";
  $("sound-label").textContent = L.sound || "";
  $("src-song").textContent = L.song || "Song";
  $("src-original").textContent = L.original || "Class sound";
  $("nudge-label").textContent = L.nudge || "";
  $("nudge-input-label").textContent = L.nudge_input || "";
  $("reset").textContent = L.reset || "0";
  $("ms-unit").textContent = L.ms || "ms";
  $("variant-label").textContent = L.variant || "";
  $("root").setAttribute("aria-label", L.title || "");
  for (const b of document.querySelectorAll("[data-step]")) {
    const k = b.dataset.step;
    b.textContent = k === "frame" ? L.plus_frame : k === "-frame" ? L.minus_frame
      : `${Number(k) > 0 ? "+" : "−"}${Math.abs(Number(k))} ${L.ms || "ms"}`;
    b.setAttribute("aria-label", k.includes("frame") ? b.textContent : (Number(k) > 0 ? L.later : L.earlier).replace("{ms}", Math.abs(Number(k))));
  }
  setLoop(!!S.loop);
}

function onRender(args, theme) {
  S.renderMessages += 1;  // (Streamlit sends one again whenever the frame's height changes)
  const json = JSON.stringify(args);
  if (json === S.lastArgs) { applyTheme(theme); return; }
  const before = S.args || {};
  S.changed = Object.keys(args).filter((k) => JSON.stringify(args[k]) !== JSON.stringify(before[k]));
  S.lastArgs = json;
  S.argsChanges += 1;  // new arguments from Python: only a script run sends them
  S.args = args;
  applyTheme(theme);
  setLabels(args.labels || {});
  S.frameMs = args.frame_rate ? 1000 / args.frame_rate : 1000 / 30;
  if (!S.key) {
    S.key = `beatsync-preview:${args.state_key || ""}`;
    const saved = loadSaved();
    if (saved) {
      if (saved.choice) S.choice = saved.choice;
      if (saved.source) setSource(saved.source);
      setNudge(saved.nudgeMs || 0, { save: false });
    }
  }
  if (S.videoUrl !== args.video_url) { S.videoUrl = args.video_url; S.ready.video = false; video.src = args.video_url; }
  if (S.songUrl !== args.song_url) { S.songUrl = args.song_url; S.ready.song = false; song.src = args.song_url; }
  const placedBefore = Object.keys(S.alignments).length > 0;
  S.alignments = args.alignments || {};
  const names = Object.keys(S.alignments);
  // the first placement while the player waited at its start: go to just before the music
  if (!placedBefore && names.length && video.paused && video.readyState >= 1 && video.currentTime < 0.01
      && args.start_at_s > 0 && args.start_at_s < video.duration) video.currentTime = args.start_at_s;
  if (!names.includes(S.choice)) S.choice = args.choice && names.includes(args.choice) ? args.choice : names[0];
  const sel = $("variant");
  sel.replaceChildren(...names.map((n) => new Option((args.variant_labels || {})[n] || n, n, false, n === S.choice)));
  $("variant-row").hidden = names.length < 2;
  $("render-row").hidden = args.mine === false;  // a shared link's viewer listens; only the owner renders
  useAlignment();
  height();
}

window.addEventListener("message", (event) => {
  const m = event.data;
  if (m && m.type === "streamlit:render") onRender(m.args || {}, m.theme);
});

let sentHeight = 0;
function height() {  // the content's own height (not the frame's, which would only ever grow)
  const h = Math.ceil(root.getBoundingClientRect().height) + 6;
  if (h !== sentHeight) { sentHeight = h; Streamlit.setFrameHeight(h); }
}
new ResizeObserver(height).observe(root);
video.addEventListener("loadedmetadata", height);

// for checks and tools: what the preview plays now
window.beatsyncPreview = {
  state: () => ({ videoTime: video.currentTime, songTime: songTimeAt(video.currentTime), audioTime: song.currentTime,
                  audioPaused: song.paused, nudgeMs: S.nudgeMs, variant: S.choice, source: S.source,
                  renderMessages: S.renderMessages, argsChanges: S.argsChanges, changed: S.changed, ready: S.ready.video && S.ready.song,
                  placed: S.segments.length > 0 }),
  songTimeAt, setNudge,
};

Streamlit.ready();
