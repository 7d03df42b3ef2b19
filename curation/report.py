"""The curator's HTML report: one self-contained page (inline SVG plots, JPEG thumbnails).

Per episode: labels, quality score, each raised flag with its reason, per-stream counts
and rates, a plot of the joint positions (with subtask marks), and one thumbnail per
camera (the recorded JPEG bytes, base64, never re-encoded).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from .release import release_attrs, resolve

MAX_PLOT_POINTS = 600
MAX_LINES = 12


def _svg_plot(t: np.ndarray, y: np.ndarray, marks: list[dict[str, Any]], title: str,
              w: int = 640, h: int = 180) -> str:
    if len(t) < 2 or y.size == 0:
        return f"<p class=dim>{html.escape(title)}: no data</p>"
    step = max(1, len(t) // MAX_PLOT_POINTS)
    t, y = t[::step], y[::step]
    y = y.reshape(len(y), -1)[:, :MAX_LINES]
    t0, t1 = float(t[0]), float(t[-1]) or 1.0
    finite = y[np.isfinite(y)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    sx = (w - 10) / max(t1 - t0, 1)
    sy = (h - 20) / (hi - lo)
    lines = []
    for j in range(y.shape[1]):
        pts = " ".join(f"{5 + (float(a) - t0) * sx:.1f},{h - 10 - (float(b) - lo) * sy:.1f}"
                       for a, b in zip(t, y[:, j], strict=True) if np.isfinite(b))
        hue = (j * 47) % 360
        lines.append(f'<polyline fill="none" stroke="hsl({hue},60%,45%)" stroke-width="1" '
                     f'points="{pts}"/>')
    for m in marks:
        x = 5 + (m["time_ns"] - t0) * sx
        if 0 <= x <= w:
            lines.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{h}" stroke="#c00" '
                         f'stroke-dasharray="3,3"><title>{html.escape(m["kind"])} '
                         f'{html.escape(m.get("label", ""))}</title></line>')
    return (f'<figure><figcaption>{html.escape(title)} ({len(t) * step} samples, '
            f'{(t1 - t0) / 1e9:.2f} s, range {lo:.3g}..{hi:.3g})</figcaption>'
            f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'style="background:#fafafa;border:1px solid #ddd">{"".join(lines)}</svg></figure>')


def _thumb(jpeg: bytes, caption: str) -> str:
    b64 = base64.b64encode(jpeg).decode()
    return (f'<figure class=thumb><img width="213" src="data:image/jpeg;base64,{b64}">'
            f'<figcaption>{html.escape(caption)}</figcaption></figure>')


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}
.bad{color:#b00}.ok{color:#070}.dim{color:#888}section{border-top:2px solid #444;margin-top:2em}
figure{display:inline-block;margin:4px}.thumb img{border:1px solid #999}"""


def render_release(path: Path | str, out: Path | str) -> Path:
    """Write the report of a release version (or a release name: its newest version)."""
    import zarr

    p = resolve(path)
    attrs = release_attrs(p)
    table = json.loads((p / "episodes.json").read_text())["episodes"]
    g = zarr.open_group(str(p), mode="r")
    streams = attrs["streams"]
    ref = attrs.get("sync_reference") or ""
    parts = [f"<!doctype html><meta charset=utf-8><title>{html.escape(attrs['name'])} "
             f"v{attrs['version']}</title><style>{_CSS}</style>",
             f"<h1>Release {html.escape(attrs['name'])} v{attrs['version']}</h1>",
             f"<p>{len(table)} episodes, {len(streams)} streams, created "
             f"{html.escape(str(attrs.get('created_at')))}. Flag bits: "
             + ", ".join(f"{b}={html.escape(n)}" for n, b in attrs["flag_bits"].items())
             + "</p>", _summary_table(table)]
    cams = [s for s in streams if "camera" in g[f"streams/{s}"].attrs.asdict()]
    for e in table:
        parts.append(_episode(g, e, ref, cams))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return out


def _summary_table(table: list[dict[str, Any]]) -> str:
    rows = ["<table><tr><th>#</th><th>episode</th><th>task</th><th>operator</th>"
            "<th>success</th><th>split</th><th>s</th><th>score</th><th>flags</th></tr>"]
    for e in table:
        cls = "bad" if e["flags"] else "ok"
        rows.append(
            f"<tr><td><a href='#ep{e['index']}'>{e['index']}</a></td>"
            f"<td>{html.escape(e['episode_id'][:16])}</td><td>{html.escape(e['task'])}</td>"
            f"<td>{html.escape(e['operator'])}</td><td>{e['success']}</td><td>{e['split']}</td>"
            f"<td>{e['duration_s']:.1f}</td><td>{e['quality_score']:.2f}</td>"
            f"<td class={cls}>{html.escape(', '.join(e['flag_names']) or 'none')}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _episode(g: Any, e: dict[str, Any], ref: str, cams: list[str]) -> str:
    i = e["index"]
    out = [f"<section id='ep{i}'><h2>Episode {i}: {html.escape(e['episode_id'])}</h2>",
           f"<p>task <b>{html.escape(e['task'] or '-')}</b>, operator "
           f"<b>{html.escape(e['operator'] or '-')}</b>, outcome {html.escape(e['outcome'])}, "
           f"split {e['split']}, {e['duration_s']:.2f} s, quality score "
           f"<b>{e['quality_score']:.2f}</b>, flags {e['flags']} "
           f"(source {html.escape(e['provenance'].get('source_file', ''))}, "
           f"segmentation {html.escape(e['provenance'].get('segmentation', ''))})</p>"]
    if e["flag_reasons"]:
        out.append("<h3>Why flagged</h3><ul>" + "".join(
            f"<li class=bad><b>{html.escape(r['flag'])}</b> {html.escape(r['stream'])}: "
            f"{html.escape(r['detail'])}</li>" for r in e["flag_reasons"]) + "</ul>")
    else:
        out.append("<p class=ok>No quality flag.</p>")
    qs = e.get("quality_streams", {})
    if qs:
        keys = ["count", "rate_hz", "nominal_rate_hz", "rate_source", "gaps", "max_gap_ms",
                "missing_estimate", "jitter_p99_ms", "frozen_s", "out_of_order",
                "latency_p99_ms", "skew_ms"]
        out.append("<table><tr><th>stream</th>" + "".join(f"<th>{k}</th>" for k in keys)
                   + "</tr>" + "".join(
                       f"<tr><td>{html.escape(s)}</td>" + "".join(
                           f"<td>{m.get(k, '')}</td>" for k in keys) + "</tr>"
                       for s, m in sorted(qs.items())) + "</table>")
    if ref and f"streams/{ref}/position" in g:
        a, b = (int(x) for x in g[f"streams/{ref}/episode_bounds"][i])
        t = g[f"streams/{ref}/time_ns"][a:b]
        y = g[f"streams/{ref}/position"][a:b]
        out.append(_svg_plot(t, y, e["annotations"], f"{ref} position (first {MAX_LINES} "
                                                     "joints; dashed: subtask marks)"))
        if f"streams/{ref}/velocity" in g:
            out.append(_svg_plot(t, g[f"streams/{ref}/velocity"][a:b], [],
                                 f"{ref} velocity"))
    for cam in cams:
        a, b = (int(x) for x in g[f"streams/{cam}/episode_bounds"][i])
        if b <= a:
            out.append(f"<p class=bad>{html.escape(cam)}: no frame</p>")
            continue
        offs = g[f"streams/{cam}/data/offsets"]
        for r in sorted({a, (a + b) // 2, b - 1}):
            o0, o1 = (int(x) for x in offs[r:r + 2])
            out.append(_thumb(bytes(g[f"streams/{cam}/data/values"][o0:o1]),
                              f"{cam} row {r}"))
    if e["annotations"]:
        out.append("<h3>Annotations</h3><ul>" + "".join(
            f"<li>{html.escape(a['kind'])} {html.escape(a.get('label', ''))} at "
            f"{(a['time_ns'] - e['start_ns']) / 1e9:.2f} s ({a['source']})</li>"
            for a in e["annotations"]) + "</ul>")
    out.append("</section>")
    return "".join(out)
