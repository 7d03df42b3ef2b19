// The episode view: cameras in sync, joint plot and event strip on one time line, and
// the curator's decisions saved on the server.
"use strict";

const index = Number(location.pathname.split("/").pop());
const S = { t: 0, playing: false, rate: 1, last: 0, detail: null, release: null, joints: null,
            cams: [], entry: {} };

// -- cameras --------------------------------------------------------------------------------
function setupCameras(detail) {
  const box = document.getElementById("cameras");
  box.replaceChildren();
  S.cams = detail.cameras.map((c) => {
    const img = el("img", { "data-testid": "camera", "data-camera": c.name, "data-frame": "", alt: c.name });
    const cam = { ...c, img, shown: -1, wanted: -1, loading: false };
    img.addEventListener("load", () => { cam.loading = false; img.dataset.frame = String(cam.shown); pump(cam); });
    img.addEventListener("error", () => { cam.loading = false; });
    box.append(el("figure", {}, img, el("figcaption", { text: `${c.name} · ${c.frames} frames` })));
    return cam;
  });
}

const PREFETCH = 4;  // frames fetched ahead while playing (the browser keeps them: max-age)

function frameUrl(cam, k) {
  return `/api/episodes/${index}/cameras/${encodeURIComponent(cam.name)}/frames/${k}`;
}

function pump(cam) {
  if (cam.loading || cam.wanted === cam.shown || cam.wanted < 0) return;
  cam.loading = true;
  cam.shown = cam.wanted;
  cam.img.src = frameUrl(cam, cam.wanted);
  if (S.playing) {
    cam.ahead = Math.max(cam.ahead || 0, cam.wanted);
    while (cam.ahead < Math.min(cam.wanted + PREFETCH, cam.frames - 1)) {
      cam.ahead += 1;
      new Image().src = frameUrl(cam, cam.ahead);
    }
  }
}

function showFrames() {
  for (const cam of S.cams) {
    if (!cam.frames) continue;
    cam.wanted = latestAtOrBefore(cam.times_s, S.t);
    pump(cam);
  }
}

// -- time line ------------------------------------------------------------------------------
function seek(t) {
  S.t = Math.max(0, Math.min(S.detail.duration_s, t));
  for (const cam of S.cams) cam.ahead = 0;
  redraw();
}

function xOf(t, w) { return (t / Math.max(S.detail.duration_s, 1e-9)) * w; }

function drawTimeline() {
  const c = document.getElementById("timeline");
  const { ctx, w, h } = fitCanvas(c);
  ctx.clearRect(0, 0, w, h);
  S.detail.segments.forEach((s, i) => {
    ctx.fillStyle = PALETTE[i % PALETTE.length] + "55";
    ctx.fillRect(xOf(s.start_s, w), 4, Math.max(1, xOf(s.end_s - s.start_s, w)), 18);
    ctx.fillStyle = "#1d232a"; ctx.font = "11px system-ui";
    ctx.fillText(s.label, xOf(s.start_s, w) + 3, 17);
  });
  ctx.fillStyle = "#c93c37";  // gaps in any stream (from the quality checks)
  for (const g of S.detail.gaps || []) {
    ctx.fillRect(xOf(g.t_s, w), h - 22, Math.max(2, xOf(g.length_s, w)), 6);
  }
  for (const e of S.detail.events) {
    const x = xOf(e.t_s, w);
    ctx.strokeStyle = e.kind === "intervention" ? "#c93c37" : e.kind === "note" ? "#b7791f" : "#555";
    ctx.beginPath(); ctx.moveTo(x, 24); ctx.lineTo(x, h - 12); ctx.stroke();
    ctx.fillStyle = "#68727d"; ctx.font = "10px system-ui";
    ctx.fillText(`${e.kind}${e.label ? ": " + e.label : ""}`, Math.min(x + 2, w - 80), h - 2);
  }
  cursor(ctx, w, h);
}

function cursor(ctx, w, h) {
  const x = xOf(S.t, w);
  ctx.canvas.dataset.cursorT = S.t.toFixed(3);  // seconds of the cursor last drawn (for tests)
  ctx.strokeStyle = "#1f6feb"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
  ctx.lineWidth = 1;
}

function drawPlot() {
  const c = document.getElementById("joint-plot");
  const { ctx, w, h } = fitCanvas(c);
  ctx.clearRect(0, 0, w, h);
  const J = S.joints;
  if (!J || !J.t_s.length) { ctx.fillStyle = "#68727d"; ctx.fillText("no joint data", 10, 20); cursor(ctx, w, h); return; }
  let lo = Infinity, hi = -Infinity;
  for (const col of J.values) for (const v of col) if (v !== null) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
  const pad = 14, y = (v) => h - pad - ((v - lo) / (hi - lo)) * (h - 2 * pad);
  J.values.forEach((col, j) => {
    ctx.strokeStyle = PALETTE[j % PALETTE.length]; ctx.beginPath();
    let pen = false;
    col.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const px = xOf(J.t_s[i], w), py = y(v);
      if (pen) ctx.lineTo(px, py); else { ctx.moveTo(px, py); pen = true; }
    });
    ctx.stroke();
  });
  ctx.fillStyle = "#68727d"; ctx.font = "10px system-ui";
  ctx.fillText(hi.toPrecision(3), 2, 10); ctx.fillText(lo.toPrecision(3), 2, h - 3);
  cursor(ctx, w, h);
}

function redraw() {
  document.getElementById("time-display").textContent = `${S.t.toFixed(2)} / ${S.detail.duration_s.toFixed(2)} s`;
  drawTimeline(); drawPlot(); showFrames();
}

function tick(now) {
  if (S.playing) {
    S.t += ((now - S.last) / 1000) * S.rate;
    if (S.t >= S.detail.duration_s) { S.t = S.detail.duration_s; setPlaying(false); }
    redraw();
  }
  S.last = now;
  requestAnimationFrame(tick);
}

function setPlaying(on) {
  if (on && S.t >= S.detail.duration_s) S.t = 0;
  S.playing = on;
  document.getElementById("play-button").textContent = on ? "❚❚ pause" : "▶ play";
  document.body.dataset.playing = on ? "1" : "0";
}

async function loadJoints() {
  const stream = document.getElementById("joint-stream").value;
  const field = document.getElementById("joint-field").value;
  if (!stream) { S.joints = null; redraw(); return; }
  S.joints = await api(`/api/episodes/${index}/joints?stream=${encodeURIComponent(stream)}&field=${encodeURIComponent(field)}&points=1200`);
  const names = S.joints.names;
  document.getElementById("legend").replaceChildren(...names.slice(0, 40).map((n, j) =>
    el("span", { style: `color:${PALETTE[j % PALETTE.length]}`, text: n })));
  redraw();
}

function setupJointSelects(detail) {
  const sSel = document.getElementById("joint-stream"), fSel = document.getElementById("joint-field");
  sSel.replaceChildren(...detail.joints.map((j) => el("option", { value: j.stream, text: j.stream })));
  const fields = () => {
    const j = detail.joints.find((x) => x.stream === sSel.value);
    fSel.replaceChildren(...(j ? j.fields : []).map((f) => el("option", { value: f, text: f })));
  };
  fields();
  sSel.addEventListener("change", () => { fields(); loadJoints(); });
  fSel.addEventListener("change", loadJoints);
}

// -- decisions ------------------------------------------------------------------------------
function showDecision() {
  const e = S.entry, ep = S.detail.episode;
  const pending = (name, text, fallback) => {
    const d = document.getElementById(`decision-${name}`);
    d.textContent = text !== null ? text : fallback;
    d.className = text !== null ? "badge pending" : "dim";
  };
  pending("success", "success" in e ? successText(e.success) : null, `${successText(ep.success)} (recorded)`);
  pending("task", "task" in e ? e.task : null, `${ep.task || "—"} (recorded)`);
  pending("exclude", e.exclude ? "yes" : null, "no");
  const fl = [...(e.flags_add || []).map((f) => "+" + f), ...(e.flags_clear || []).map((f) => "−" + f)];
  pending("flags", fl.length ? fl.join(" ") : null, (ep.flag_names || []).join(", ") || "none");
  pending("notes", "notes" in e ? e.notes.join("; ") : null, (ep.notes || []).join("; ") || "none");
}

async function save(set, unset) {
  const status = document.getElementById("save-status");
  status.textContent = "saving…"; status.className = "dim";
  try {
    const r = await api(`/api/episodes/${index}/labels`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ set: set || {}, unset: unset || [] }) });
    S.entry = r.entry;
    status.textContent = "saved"; status.className = "ok";
    status.title = r.path;
  } catch (err) {
    status.textContent = err.message; status.className = "error";
  }
  showDecision();
}

function currentFlags() {
  const e = S.entry, have = new Set(S.detail.episode.flag_names || []);
  for (const f of e.flags_add || []) have.add(f);
  for (const f of e.flags_clear || []) have.delete(f);
  return [...have];
}

function ask(label, value, options) {
  return new Promise((resolve) => {
    const d = document.getElementById("edit-dialog"), input = document.getElementById("edit-input");
    document.getElementById("edit-label").textContent = label;
    document.getElementById("edit-options").replaceChildren(...(options || []).map((o) => el("option", { value: o })));
    input.value = value || "";
    d.returnValue = "";
    const done = () => { d.removeEventListener("close", done); resolve(d.returnValue === "ok" ? input.value : null); };
    d.addEventListener("close", done);
    d.showModal(); input.select();
  });
}

document.getElementById("edit-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const d = document.getElementById("edit-dialog");
  d.close("ok");
});

async function action(key) {
  const e = S.entry, ep = S.detail.episode;
  if (key === "s") return save({ success: true });
  if (key === "f") return save({ success: false });
  if (key === "u") return save({ success: null });
  if (key === "x") return e.exclude ? save({}, ["exclude"]) : save({ exclude: true });
  if (key === "t") {
    const v = await ask("Task text", "task" in e ? e.task : ep.task);
    if (v !== null) return save({ task: v });
  }
  if (key === "n") {
    const v = await ask("Add a note", "");
    if (v !== null && v.trim()) return save({ notes: [...("notes" in e ? e.notes : ep.notes || []), v.trim()] });
  }
  if (key === "g") {
    const v = await ask("Add a flag", "", S.release.flag_names.filter((f) => !currentFlags().includes(f)));
    if (v !== null && v.trim()) {
      const f = v.trim();
      return save({ flags_add: [...new Set([...(e.flags_add || []), f])],
                    flags_clear: (e.flags_clear || []).filter((x) => x !== f) });
    }
  }
  if (key === "c") {
    const flags = currentFlags();
    const v = await ask(`Clear a flag (${flags.join(", ") || "none raised"})`, flags.length === 1 ? flags[0] : "", flags);
    if (v !== null && v.trim()) {
      const f = v.trim();
      const adds = e.flags_add || [];
      if (adds.includes(f)) return save({ flags_add: adds.filter((x) => x !== f) });
      return save({ flags_clear: [...new Set([...(e.flags_clear || []), f])] });
    }
  }
  return undefined;
}

function go(to) { if (to !== null && to !== undefined) location.href = `/episodes/${to}`; }

document.addEventListener("keydown", (ev) => {
  if (document.getElementById("edit-dialog").open || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
  if (!S.detail) return;
  const step = ev.shiftKey ? 0.1 : 1;
  if (ev.key === " ") setPlaying(!S.playing);
  else if (ev.key === "ArrowRight") seek(S.t + step);
  else if (ev.key === "ArrowLeft") seek(S.t - step);
  else if (ev.key === "Home") seek(0);
  else if (ev.key === "j") go(S.detail.next);
  else if (ev.key === "k") go(S.detail.previous);
  else if ("sfuxtngc".includes(ev.key) && ev.key.length === 1) action(ev.key);
  else return;
  ev.preventDefault();
});

function clickSeek(ev) {
  const r = ev.currentTarget.getBoundingClientRect();
  seek(((ev.clientX - r.left) / r.width) * S.detail.duration_s);
}

async function main() {
  const [release, detail] = await Promise.all([api("/api/release"), api(`/api/episodes/${index}`)]);
  S.release = release; S.detail = detail; S.entry = detail.labels || {};
  header(release, `Episode ${index}`);
  const ep = detail.episode;
  document.getElementById("episode-title").textContent = `#${ep.index} ${ep.episode_id} — ${ep.task || "no task"}`;
  const prev = document.getElementById("prev-episode"), next = document.getElementById("next-episode");
  if (detail.previous === null) prev.removeAttribute("href"); else prev.href = `/episodes/${detail.previous}`;
  if (detail.next === null) next.removeAttribute("href"); else next.href = `/episodes/${detail.next}`;
  const s = detail.summary;
  const facts = [["key", ep.key], ["operator", ep.operator], ["session", ep.session], ["split", ep.split],
                 ["length", `${ep.duration_s.toFixed(2)} s`], ["quality", fmt(ep.quality_score, 3)],
                 ["flags", (ep.flag_names || []).join(", ") || "none"],
                 ["outliers", s.outliers.join(", ") || "none"],
                 ["jerk", s.jerk === null ? "—" : `${s.jerk.toPrecision(3)} rad/s³ (z ${fmt(s.z_jerk, 1)})`],
                 ["speed", s.motion === null ? "—" : `${s.motion.toPrecision(3)} rad/s`]];
  document.getElementById("facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  for (const r of ep.flag_reasons || []) {
    document.getElementById("facts").append(el("dt", { text: r.flag }), el("dd", { class: "dim", text: `${r.stream} ${r.detail}` }));
  }
  setupCameras(detail);
  setupJointSelects(detail);
  showDecision();
  document.getElementById("play-button").addEventListener("click", () => setPlaying(!S.playing));
  document.getElementById("rate").addEventListener("change", (ev) => { S.rate = Number(ev.target.value); });
  document.getElementById("timeline").addEventListener("click", clickSeek);
  document.getElementById("joint-plot").addEventListener("click", clickSeek);
  window.addEventListener("resize", redraw);
  await loadJoints();
  setPlaying(false);
  requestAnimationFrame((now) => { S.last = now; tick(now); });
  document.body.dataset.ready = "1";
}

main().catch((e) => { document.querySelector("main").prepend(el("p", { class: "no", "data-testid": "error", text: e.message })); });
