// The release's per-feature statistics (stats.json), one box plot per field.
"use strict";

function flatten(v) { return Array.isArray(v) ? v.flat(Infinity) : [v]; }

function labelsFor(stream, field, info, n) {
  const names = info && info.joint_names;
  if (names && names.length === n) return names;
  return Array.from({ length: n }, (_, i) => `${field}[${i}]`);
}

function plotField(stream, field, st, info) {
  const mn = flatten(st.min), mx = flatten(st.max), mean = flatten(st.mean), n = mn.length;
  const q = (k) => flatten(st.q[k] || []);
  const q01 = q("0.05"), q25 = q("0.25"), q50 = q("0.5"), q75 = q("0.75"), q95 = q("0.95");
  const labels = labelsFor(stream, field, info, n);
  const rowH = 16, top = 22, left = 170;
  const canvas = el("canvas", { "data-testid": "stats-plot", "data-field": field });
  canvas.style.height = `${top + rowH * n + 18}px`;
  const wrap = el("section", {}, canvas);
  requestAnimationFrame(() => {
    const { ctx, w, h } = fitCanvas(canvas);
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < n; i++) { if (mn[i] !== null && mn[i] < lo) lo = mn[i]; if (mx[i] !== null && mx[i] > hi) hi = mx[i]; }
    if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
    const x = (v) => left + ((v - lo) / (hi - lo)) * (w - left - 12);
    ctx.fillStyle = "#1d232a"; ctx.font = "bold 12px system-ui";
    ctx.fillText(`${stream} / ${field}  (${flatten(st.count)[0]} values each)`, 4, 14);
    ctx.font = "10px system-ui";
    for (let i = 0; i < n; i++) {
      const y = top + i * rowH + rowH / 2;
      ctx.fillStyle = "#68727d"; ctx.fillText(labels[i].slice(0, 28), 4, y + 3);
      if (mn[i] === null) continue;
      ctx.strokeStyle = "#99a3ad"; ctx.beginPath(); ctx.moveTo(x(mn[i]), y); ctx.lineTo(x(mx[i]), y); ctx.stroke();
      ctx.fillStyle = "#9ec5fe"; ctx.fillRect(x(q01[i]), y - 2, Math.max(1, x(q95[i]) - x(q01[i])), 4);
      ctx.fillStyle = "#1f6feb"; ctx.fillRect(x(q25[i]), y - 5, Math.max(1, x(q75[i]) - x(q25[i])), 10);
      ctx.fillStyle = "#fff"; ctx.fillRect(x(q50[i]) - 1, y - 5, 2, 10);
      ctx.fillStyle = "#c93c37"; ctx.beginPath(); ctx.arc(x(mean[i]), y, 2.5, 0, 7); ctx.fill();
    }
    ctx.fillStyle = "#68727d";
    ctx.fillText(lo.toPrecision(4), left, h - 4);
    const t = hi.toPrecision(4); ctx.fillText(t, w - 12 - ctx.measureText(t).width, h - 4);
  });
  return wrap;
}

async function main() {
  const [release, data] = await Promise.all([api("/api/release"), api("/api/stats")]);
  header(release, "Statistics");
  const streams = data.stats.streams || {};
  const sel = document.getElementById("stats-stream");
  const names = Object.keys(streams).sort();
  sel.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  if (release.joint_stream && names.includes(release.joint_stream)) sel.value = release.joint_stream;
  const show = () => {
    const s = sel.value, fields = streams[s] || {};
    document.getElementById("plots").replaceChildren(...Object.keys(fields).filter((f) => fields[f].min !== null)
      .map((f) => plotField(s, f, fields[f], data.streams[s])));
  };
  sel.addEventListener("change", show);
  show();
  document.body.dataset.ready = "1";
}

main().catch((e) => { document.querySelector("main").prepend(el("p", { class: "no", "data-testid": "error", text: e.message })); });
