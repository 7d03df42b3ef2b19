"""``check``: the gate over the output files of one run, before any person sees them.

For each file: read without following links (a link or anything but a regular file is
blocked), its type found from its content (:mod:`.sniff`), its size held against the cap
of its type, its structure checked and its content taken apart by the type's parser
(:mod:`.textual`, :mod:`.png`, :mod:`.tensors`); then its SHA-256 against every input
frame's, its bytes (and the bytes decoded from it) against the frames' blocks, its numbers
against the streams' windows, its images against the frames' fingerprints, and a CSV's
row count against the streams' lengths. Every finding names the input it matched and
where in the file. Then the caps of the whole run."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .content import Blob, Content
from .errors import GateError
from .index import InputIndex
from .png import parse_png, png_region
from .policy import ALLOWED_KINDS, GatePolicy
from .report import FileVerdict, Finding, GateReport
from .scan import StreamHit, match_images, scan_bytes, scan_sequences
from .sniff import detect
from .tensors import parse_safetensors
from .textual import parse_csv, parse_json, parse_text

__all__ = ["check", "check_file"]

_MAX_FINDINGS = 40
_ORDER = ("unreadable", "type", "size", "structure", "frame_copy", "frame_image", "stream_dump",
          "stream_window")
_TURNS = ("as stored", "flipped left-right", "flipped upside down", "turned half a turn",
          "turned a quarter turn left", "turned a quarter turn right", "transposed", "anti-transposed")
_ALLOWED_TEXT = "metrics JSON, CSV, PNG plots, safetensors weights and text logs"


def _read(path: Path, cap: int) -> tuple[bytes | None, int, str | None]:
    """``(data, size, problem)``: the bytes (None when over ``cap`` or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        kind = "a symbolic link" if path.is_symlink() else f"unreadable ({exc.strerror})"
        return None, 0, kind
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, 0, "not a regular file"
        if st.st_size > cap:
            with os.fdopen(os.dup(fd), "rb") as fh:
                return fh.read(1 << 16), st.st_size, None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(), st.st_size, None
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _parse(kind: str, data: bytes, text: str | None, doc: Any, index: InputIndex,
           policy: GatePolicy) -> Content:
    cfg = index.config
    if kind == "png":
        return parse_png(data, policy)
    if kind == "safetensors":
        return parse_safetensors(data, policy, cfg)
    assert text is not None
    if kind == "json":
        return parse_json(text, doc, policy, cfg.block_bytes)
    if kind == "csv":
        return parse_csv(text, policy, cfg.block_bytes, cfg.window)
    return parse_text(text, policy, cfg.block_bytes, cfg.window)


def _frame_findings(index: InputIndex, data: bytes, where: dict[str, Any], what: str,
                    policy: GatePolicy) -> list[Finding]:
    out = []
    for hit in scan_bytes(index, data, policy):
        span = {"byte_range": [hit.first, hit.end], "frame_starts_at": hit.start}
        if where.get("png") == "pixels":
            span |= png_region(where, hit.first)
        out.append(Finding(
            "frame_copy", f"{what} bytes {hit.first}-{hit.end} are {index.frame_text(hit.frame)}: "
            f"{hit.blocks} of its {hit.of_blocks} indexed blocks, in order",
            where=where | span, input=index.frame_input(hit.frame) | {"blocks": hit.blocks,
                                                                      "of_blocks": hit.of_blocks}))
    return out


def _where_text(where: dict[str, Any]) -> str:
    if "csv_column" in where:
        return f"CSV column {where['csv_column']!r}"
    if "csv_row" in where:
        return f"CSV row {where['csv_row']}"
    if "json_path" in where:
        return f"JSON {where['json_path']}"
    if "tensor" in where:
        col = where.get("column")
        return f"tensor {where['tensor']!r}" + (f" column {col}" if col is not None else "")
    if "lines" in where:
        return f"log lines {where['lines'][0]}-{where['lines'][1]} (number {where['number_in_line']})"
    if "line" in where:
        return f"log line {where['line']}"
    if "safetensors" in where:
        return "the safetensors header"
    if "png" in where or "part" in where:
        return "the PNG"
    if "csv" in where or "text" in where:
        return "the text"
    return "the file"


def _stream_findings(index: InputIndex, content: Content, policy: GatePolicy) -> list[Finding]:
    """One finding per output sequence: the input column it follows best, and how many others."""
    by_seq: dict[int, list[StreamHit]] = {}
    for hit in scan_sequences(index, content.sequences, policy):
        by_seq.setdefault(hit.sequence, []).append(hit)
    out = []
    for s, hits in by_seq.items():
        hit, others = hits[0], hits[1:]  # most windows first
        seq = content.sequences[s]
        info = index.column_input(hit.column, hit.rows)
        span = [seq.base + hit.first, seq.base + hit.end - 1]
        also = [index.meta["columns"][h.column] for h in others]
        more = f"; also like {len(also)} other input column(s): {', '.join(also[:3])}" if also else ""
        out.append(Finding(
            "stream_window", f"{_where_text(seq.where)}, {seq.unit.replace('_', ' ')}s {span[0]}-{span[1]}, "
            f"follows {info['column']} rows {info['rows'][0]}-{info['rows'][1] - 1} "
            f"(episode {info['episode']}): {hit.windows} windows of {index.config.window} values match{more}",
            where=seq.where | {f"{seq.unit}s": span},
            input=info | {"windows": hit.windows, "also_columns": also[:10]}))
    return out


def _image_findings(index: InputIndex, content: Content, policy: GatePolicy) -> list[Finding]:
    out = []
    for hit in match_images(index, content.images, policy):
        img = content.images[hit.image]
        x, y, w, h = hit.region
        whole = (x, y) == (0, 0) and img.gray.shape == (h, w)
        place = "the whole image" if whole else f"the region x={x} y={y} {w}x{h} px"
        what = "image" if "png" in img.where else \
            f"tensor {img.where.get('tensor')!r} image {img.where.get('image')}"
        also = f"; {hit.similar_frames} other frame(s) look alike" if hit.similar_frames else ""
        turned = "" if hit.orientation == 0 else f" {_TURNS[hit.orientation]}"
        out.append(Finding(
            "frame_image", f"{what}: {place} looks like {index.frame_text(hit.frame)}{turned} (hash distance "
            f"{hit.distance}/64, thumbnail correlation {hit.correlation:.2f}{also})",
            where=img.where | {"png_region": {"x": x, "y": y, "w": w, "h": h}},
            input=index.frame_input(hit.frame) | {"distance": hit.distance,
                                                  "orientation": _TURNS[hit.orientation],
                                                  "correlation": round(hit.correlation, 3)}))
    return out


def _dump_findings(index: InputIndex, rows: int, policy: GatePolicy, prefer: set[str]) -> list[Finding]:
    """A CSV long enough to hold a whole numeric input stream (at least ``csv_dump_fraction``
    of its rows), or as long as one of its episodes (within a factor ``1 / csv_dump_fraction``
    either way); of the streams that fit, one whose values the CSV was found to hold
    (``prefer``), else a whole-stream fit, else the one closest in length. A whole-stream
    fit or a ``prefer`` stream has ``csv_dump_severity`` (block); an episode-long CSV whose
    values match nothing has ``csv_episode_dump_severity`` (a note for the reviewers)."""
    if rows < policy.csv_dump_min_rows:
        return []
    frac = policy.csv_dump_fraction
    best: tuple[tuple[bool, bool, float], dict[str, Any], str] | None = None
    for s in index.streams:
        if s.get("kind") != "numeric":
            continue
        lengths = [("the whole stream", int(s["rows"]), None)] + [
            (f"episode {e}", int(n), e) for e, n in enumerate(s.get("episode_rows") or [])]
        for label, n, episode in lengths:
            fits = rows >= frac * n if episode is None else frac * n <= rows <= n / frac
            if n < policy.csv_dump_min_rows or not fits:
                continue
            # a fit that blocks (the whole stream, or a stream whose values the CSV holds) first
            closeness = (s["name"] not in prefer, episode is not None, abs(1.0 - rows / n))
            if best is None or closeness < best[0]:
                info = {"stream": s["name"], "topic": s.get("topic"), "stream_rows": int(s["rows"]),
                        "rows": n, "episode": episode}
                best = (closeness, info, f"{label} of {s['name']} ({n} rows)")
    if best is None:
        return []
    _, info, text = best
    share = 100 * rows / info["rows"]
    whole = info["episode"] is None or info["stream"] in prefer
    return [Finding("stream_dump", f"{rows} data rows: {share:.0f}% of the rows of {text}; "
                    f"a CSV this long can dump the stream",
                    severity=policy.csv_dump_severity if whole else policy.csv_episode_dump_severity,
                    where={"csv_rows": rows}, input=info)]


def _byte_sequences(content: Content, block_bytes: int) -> list[Blob]:
    """Sequences of whole numbers 0..255 as the bytes they may be (a frame written as a list
    of byte values)."""
    out = []
    for seq in content.sequences:
        v = seq.values
        if len(v) >= block_bytes and v.dtype != np.uint8:
            with np.errstate(invalid="ignore"):
                ok = all(bool(((x >= 0) & (x <= 255) & (x == np.floor(x))).all()) for x in (v[:64], v))
            if ok:
                out.append(Blob(v.astype(np.uint8).tobytes(), seq.where | {"encoding": "byte values"}))
    return out


def _content_findings(kind: str, data: bytes, text: str | None, doc: Any, index: InputIndex,
                      policy: GatePolicy) -> list[Finding]:
    content = _parse(kind, data, text, doc, index, policy)
    content.blobs += _byte_sequences(content, index.config.block_bytes)
    findings = list(content.findings)
    for blob in content.blobs:
        label = blob.where.get("encoding") or blob.where.get("png") or blob.where.get("part") or "decoded"
        what = f"{_where_text(blob.where)} ({label})"
        findings += _frame_findings(index, blob.data, blob.where, what, policy)
    findings += _stream_findings(index, content, policy)
    findings += _image_findings(index, content, policy)
    if content.csv_rows is not None:
        found = {str(f.input.get("stream")) for f in findings if f.kind == "stream_window"}
        findings += _dump_findings(index, content.csv_rows, policy, found)
    return findings


def check_file(path: str | Path, index: InputIndex, policy: GatePolicy | None = None, *,
               name: str | None = None, declared: str | None = None) -> FileVerdict:
    """The gate's verdict on one output file (``declared``: the type the job declared for it;
    content of another type is blocked)."""
    policy = policy or GatePolicy()
    path = Path(path)
    name = name or path.name
    largest = max(policy.cap(k) for k in ALLOWED_KINDS)
    data, size, problem = _read(path, largest)
    if problem is not None or data is None:
        return FileVerdict(str(path), name, size, "", "unreadable",
                           [Finding("unreadable" if problem and "unreadable" in problem else "type",
                                    f"{name} is {problem}", where={"path": str(path)})])
    complete = len(data) == size
    digest = hashlib.sha256(data).hexdigest() if complete else _sha256(path)
    kind, text, doc = detect(data, name)
    fv = FileVerdict(str(path), name, size, digest, kind)
    findings = fv.findings
    fid = index.frame_of_sha(bytes.fromhex(digest))
    if fid is not None:
        findings.append(Finding("frame_copy", f"the file is byte for byte {index.frame_text(fid)}",
                                where={"byte_range": [0, size]}, input=index.frame_input(fid)))
    if declared is not None and kind != declared and kind in ALLOWED_KINDS:
        findings.append(Finding("type", f"{name} was declared {declared} but its content is {kind}",
                                where={"declared": declared, "detected": kind}))
    if kind not in ALLOWED_KINDS:
        findings.append(Finding("type", f"{name} is {kind}; the gate lets out only {_ALLOWED_TEXT}",
                                where={"magic": data[:8].hex()}))
    elif size > policy.cap(kind):
        findings.append(Finding("size", f"{name}: {size} bytes, over the {kind} cap of "
                                f"{policy.cap(kind)} bytes",
                                where={"bytes": size, "cap": policy.cap(kind)}))
    if not complete:
        findings.append(Finding("size", f"{name}: {size} bytes, over the largest cap ({largest}); not opened",
                                where={"bytes": size}))
        return fv
    if fid is None:
        findings += _frame_findings(index, data, {}, "the file's", policy)
    if kind in ALLOWED_KINDS and size <= policy.cap(kind):
        try:
            findings += _content_findings(kind, data, text, doc, index, policy)
        except Exception as exc:  # noqa: BLE001 - fail closed: a file the gate cannot take apart is blocked
            findings.append(Finding("structure", f"{name}: the gate could not take it apart as {kind}: "
                                    f"{type(exc).__name__}: {exc}", where={"error": type(exc).__name__}))
    findings.sort(key=lambda f: _ORDER.index(f.kind))
    if len(findings) > _MAX_FINDINGS:
        kept = findings[:_MAX_FINDINGS]
        kept += [f for f in {f.kind: f for f in reversed(findings[_MAX_FINDINGS:])}.values()
                 if f.kind not in {k.kind for k in kept}]
        extra = len(findings) - len(kept)
        kept.append(Finding(kept[-1].kind, f"... and {extra} more finding(s) like these", severity="block",
                            where={"more": extra}))
        findings[:] = kept
    return fv


def check(files: Sequence[str | Path], index: InputIndex, policy: GatePolicy | None = None, *,
          names: Mapping[str | Path, str] | None = None,
          declared: Mapping[str | Path, str] | None = None) -> GateReport:
    """The gate's report on the output files of one run (``names``: how to call each file in
    the report, e.g. its path in the run's output directory, default its file name;
    ``declared``: the type the job declared for a file, one of :data:`ALLOWED_KINDS`)."""
    policy = policy or GatePolicy()
    t0 = time.perf_counter()
    names = {str(k): v for k, v in (names or {}).items()}
    types = {str(k): v for k, v in (declared or {}).items()}
    bad = sorted({v for v in types.values() if v not in ALLOWED_KINDS})
    if bad:
        raise GateError(f"declared output types {', '.join(bad)} unknown (types: {', '.join(ALLOWED_KINDS)})")
    verdicts = [check_file(p, index, policy, name=names.get(str(p)), declared=types.get(str(p)))
                for p in files]
    run: list[Finding] = []
    if len(files) > policy.max_files:
        run.append(Finding("size", f"{len(files)} output files (the cap is {policy.max_files} per run)",
                           where={"files": len(files)}))
    total = sum(v.size for v in verdicts)
    if total > policy.max_run_bytes:
        run.append(Finding("size", f"{total} bytes of outputs (the cap is {policy.max_run_bytes} per run)",
                           where={"bytes": total}))
    return GateReport(files=verdicts, index=index.describe(), run_findings=run,
                      seconds=time.perf_counter() - t0)
