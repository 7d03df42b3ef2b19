// The episode list: filters and sorting on the server, thumbnails loaded lazily.
"use strict";

const state = { sort: "", desc: false, rows: [], selected: 0, entries: {}, total: 0 };
const FILTERS = ["task", "split", "flag", "success", "text"];

function decisionText(entry) {
  if (!entry) return "";
  const parts = [];
  if ("success" in entry) parts.push(successText(entry.success));
  if (entry.exclude) parts.push("excluded");
  if ("task" in entry) parts.push(`task: ${entry.task}`);
  for (const f of entry.flags_add || []) parts.push(`+${f}`);
  for (const f of entry.flags_clear || []) parts.push(`−${f}`);
  if (entry.notes && entry.notes.length) parts.push(`${entry.notes.length} note(s)`);
  return parts.join(", ");
}

function row(r, i) {
  const entry = state.entries[r.key];
  const thumb = (which) => r.thumbs
    ? el("img", { class: "thumb", loading: "lazy", "data-testid": `thumb-${which}`, src: r.thumbs[which],
                  alt: `${which} frame` })
    : el("span", { class: "dim", text: "—" });
  const flags = el("td", { "data-testid": "cell-flags" },
    ...(r.flag_names || []).map((f) => el("span", { class: "badge flag", text: f })));
  const outs = el("td", { "data-testid": "cell-outliers" },
    ...r.outliers.map((k) => el("span", { class: "badge outlier", "data-testid": "outlier", "data-kind": k, text: k })));
  const tr = el("tr", { "data-testid": "episode-row", "data-index": r.index, "data-key": r.key,
                        "data-outliers": r.outliers.join(" "),
                        class: (i === state.selected ? "selected " : "") + (entry && entry.exclude ? "excluded" : "") },
    el("td", {}, thumb("first")), el("td", {}, thumb("last")),
    el("td", { class: "num", "data-testid": "cell-index", text: r.index }),
    el("td", { "data-testid": "cell-episode_id" }, el("a", { href: `/episodes/${r.index}`, text: r.episode_id })),
    el("td", { "data-testid": "cell-source" }, r.source === "session" ? el("span", { class: "badge pending", text: "session" }) : "release"),
    el("td", { "data-testid": "cell-task", text: r.task }),
    el("td", { "data-testid": "cell-success", class: r.success === true ? "ok" : r.success === false ? "no" : "dim",
               text: successText(r.success) }),
    el("td", { "data-testid": "cell-operator", text: r.operator }),
    el("td", { "data-testid": "cell-split", text: r.split }),
    el("td", { class: "num", "data-testid": "cell-duration_s", text: fmt(r.duration_s, 2) }),
    el("td", { class: "num", "data-testid": "cell-quality_score", text: fmt(r.quality_score, 3) }),
    flags,
    el("td", { class: "num", "data-testid": "cell-jerk", text: r.jerk === null ? "" : r.jerk.toPrecision(3) }),
    outs,
    el("td", { "data-testid": "decision" }, entry ? el("span", { class: "badge pending", text: decisionText(entry) }) : ""));
  tr.addEventListener("click", (ev) => {
    if (ev.target.tagName === "A") return;
    state.selected = i; render();
  });
  tr.addEventListener("dblclick", () => { location.href = `/episodes/${r.index}`; });
  return tr;
}

function render() {
  const body = document.querySelector("#episode-table tbody");
  body.replaceChildren(...state.rows.map(row));
  document.getElementById("episode-count").textContent = `${state.rows.length} of ${state.total}`;
  for (const th of document.querySelectorAll("th[data-col]")) {
    th.dataset.dir = th.dataset.col === state.sort ? (state.desc ? "desc" : "asc") : "";
  }
}

function query() {
  const p = new URLSearchParams();
  for (const f of FILTERS) {
    const v = document.getElementById(`filter-${f}`).value;
    if (v) p.set(f === "text" ? "q" : f, v);
  }
  if (state.sort) { p.set("sort", state.sort); if (state.desc) p.set("desc", "1"); }
  return p;
}

let pending = 0;
async function load() {
  const p = query();
  const mine = ++pending;
  const [list, labels] = await Promise.all([api(`/api/episodes?${p}`), api("/api/labels")]);
  if (mine !== pending) return;  // a newer request is on its way
  state.rows = list.episodes; state.total = list.total; state.entries = labels.entries;
  state.selected = Math.min(state.selected, Math.max(0, state.rows.length - 1));
  history.replaceState(null, "", p.toString() ? `/?${p}` : "/");
  render();
}

function selectRow(i) {
  if (!state.rows.length) return;
  state.selected = Math.max(0, Math.min(state.rows.length - 1, i));
  render();
  const tr = document.querySelectorAll("#episode-table tbody tr")[state.selected];
  if (tr) tr.scrollIntoView({ block: "nearest" });
}

async function main() {
  const release = await api("/api/release");
  header(release, "Episodes");
  const fill = (id, values) => {
    const s = document.getElementById(id);
    for (const v of values) s.append(el("option", { value: v, text: v }));
  };
  fill("filter-task", release.tasks);
  fill("filter-split", release.splits);
  fill("filter-flag", release.flag_names);
  const params = new URLSearchParams(location.search);
  for (const f of FILTERS) {
    const v = params.get(f === "text" ? "q" : f);
    if (v) document.getElementById(`filter-${f}`).value = v;
  }
  state.sort = params.get("sort") || ""; state.desc = params.get("desc") === "1";
  for (const f of FILTERS) {
    const e = document.getElementById(`filter-${f}`);
    e.addEventListener(f === "text" ? "input" : "change", () => { state.selected = 0; load(); });
  }
  for (const th of document.querySelectorAll("th[data-col]")) {
    th.addEventListener("click", () => {
      const col = th.dataset.col;
      if (state.sort === col) state.desc = !state.desc; else { state.sort = col; state.desc = false; }
      load();
    });
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "j") selectRow(state.selected + 1);
    else if (ev.key === "k") selectRow(state.selected - 1);
    else if (ev.key === "Enter" && state.rows.length) location.href = `/episodes/${state.rows[state.selected].index}`;
    else return;
    ev.preventDefault();
  });
  await load();
  document.body.dataset.ready = "1";
}

main().catch((e) => { document.querySelector("main").prepend(el("p", { class: "no", "data-testid": "error", text: e.message })); });
