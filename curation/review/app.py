"""The review page's HTTP app (FastAPI): pages, the JSON API, frames and the labels file.

Routes (kept stable for the browser tests):

* pages: ``/`` (episode list), ``/episodes/{index}`` (episode view), ``/stats``;
* ``GET /api/release``, ``/api/episodes`` (filters ``task``, ``split``, ``flag``,
  ``success``, ``q``; ``sort``, ``desc``), ``/api/episodes/{i}``,
  ``/api/episodes/{i}/cameras/{cam}/frames/{k}`` and ``.../at?t=S`` (image/jpeg),
  ``/api/episodes/{i}/thumbs/{cam}/{first|last}``, ``/api/episodes/{i}/joints``,
  ``/api/stats``, ``/api/labels``;
* ``POST /api/episodes/{i}/labels`` ``{"set": {...}, "unset": [...]}``: the curator's
  decisions, written into the labels file.

An unknown episode, camera or frame is a 404 and a bad label or filter value a 422, each
with a ``detail`` message naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..errors import LabelError
from ..flags import FLAG_BITS
from .catalog import BadQuery, Catalog, NotFound, default_cache_dir, open_version
from .decisions import DecisionsFile
from .pending import curate_pending

STATIC = Path(__file__).parent / "static"
PAGES = {"list": "index.html", "episode": "episode.html", "stats": "stats.html"}


def default_labels_path(version_dir: Path) -> Path:
    """``RELEASES/NAME/labels.yaml``: beside the versions, never inside one."""
    return version_dir.parent / "labels.yaml"


def create_app(release_dir: str | Path, labels_path: str | Path | None = None,
               version: int | None = None, cache_dir: str | Path | None = None,
               sessions: list[str | Path] | None = None) -> FastAPI:
    """The review app for ``release_dir`` (a name directory: its newest version, or
    ``version``; or a version directory), and the episodes of ``sessions`` that the
    release does not hold yet (listed after the release's)."""
    version_dir = open_version(release_dir, version)
    root = Path(cache_dir) if cache_dir else default_cache_dir(version_dir)
    pending = curate_pending(list(sessions), root) if sessions else None
    cat = Catalog(version_dir, root, pending)
    labels_file = Path(labels_path) if labels_path else default_labels_path(cat.path)

    def describe(key: str) -> str:
        i = cat.by_key.get(key)
        if i is None:
            return "not in the reviewed version"
        r = cat.rows[i]
        return f"{r['episode_id']} · {r['task'] or 'no task'} · {r['session'] or 'no session'}"

    decisions = DecisionsFile(labels_file, describe)
    app = FastAPI(title=f"DemoFab review: {cat.reader.name} v{cat.reader.version}",
                          docs_url=None, redoc_url=None)
    app.state.catalog = cat
    app.state.decisions = decisions
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(LabelError)
    async def bad_label(request: Request, exc: LabelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(BadQuery)
    async def bad_query(request: Request, exc: BadQuery) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / PAGES[name], media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def list_page() -> FileResponse:
        return page("list")

    @app.get("/episodes/{index}", include_in_schema=False)
    async def episode_page(index: int) -> FileResponse:
        cat.episode(index)
        return page("episode")

    @app.get("/stats", include_in_schema=False)
    async def stats_page() -> FileResponse:
        return page("stats")

    @app.get("/api/release")
    async def release_info() -> dict[str, Any]:
        r = cat.reader
        return {"name": r.name, "version": r.version, "path": str(cat.path),
                "release_sha256": cat.sha256, "episodes": len(cat.rows),
                "cameras": cat.cameras, "thumb_camera": cat.thumb_camera,
                "joint_stream": cat.joint_stream,
                "streams": [{"name": n, "role": s.attributes.get("role"),
                             "type": s.attributes.get("type"), "count": s.attributes.get("count"),
                             "rate_hz": s.rate_hz} for n, s in sorted(r.streams.items())],
                "labels_file": str(decisions.path), "cache_dir": str(cat.cache_dir),
                "flag_names": list(FLAG_BITS),
                "sessions": sum(1 for row in cat.rows if row["source"] == "session"),
                "tasks": sorted({row["task"] for row in cat.rows}),
                "splits": sorted({row["split"] for row in cat.rows})}

    @app.get("/api/episodes")
    async def episodes(task: str = "", split: str = "", flag: str = "", success: str = "",
                       q: str = "", sort: str = "", desc: bool = False) -> Response:
        if not (task or split or flag or success or q or sort):
            return Response(cat.list_json, media_type="application/json")
        rows = cat.select(task, split, flag, success, q, sort, desc)
        return JSONResponse({"episodes": rows, "total": len(cat.rows), "shown": len(rows)})

    @app.get("/api/episodes/{index}")
    async def episode(index: int) -> dict[str, Any]:
        out = cat.detail(index)
        out["labels"] = decisions.entries().get(cat.rows[index]["key"], {})
        return out

    jpeg_headers = {"Cache-Control": "private, max-age=600"}

    @app.get("/api/episodes/{index}/cameras/{camera}/frames/{k}")
    async def frame(index: int, camera: str, k: int) -> Response:
        data, row = cat.frame(index, camera, k)
        return Response(data, media_type="image/jpeg",
                        headers=jpeg_headers | {"X-Frame-Row": str(row)})

    @app.get("/api/episodes/{index}/cameras/{camera}/at")
    async def frame_at(index: int, camera: str, t: Annotated[float, Query(ge=0)]) -> Response:
        k = cat.frame_at(index, camera, t)
        data, row = cat.frame(index, camera, k)
        return Response(data, media_type="image/jpeg",
                        headers={"X-Frame-Index": str(k), "X-Frame-Row": str(row)})

    @app.get("/api/episodes/{index}/thumbs/{camera}/{which}")
    def thumbnail(index: int, camera: str, which: str) -> Response:
        return Response(cat.thumbnail(index, camera, which), media_type="image/jpeg",
                        headers=jpeg_headers)

    @app.get("/api/episodes/{index}/joints")
    def joints(index: int, stream: str = "", field: str = "position",
               points: Annotated[int, Query(ge=2, le=20000)] = 1500) -> dict[str, Any]:
        return cat.joints(index, stream or None, field, points)

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        return cat.stats()

    @app.get("/api/labels")
    def labels() -> dict[str, Any]:
        return {"path": str(decisions.path), "entries": decisions.entries()}

    @app.post("/api/episodes/{index}/labels")
    def save_labels(index: int, change: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        cat.episode(index)
        key = cat.rows[index]["key"]
        unknown = set(change) - {"set", "unset"}
        if unknown:
            raise LabelError(f"episode {index}: unknown part {', '.join(sorted(unknown))} of the "
                             "change (expected 'set' and 'unset')")
        set_, unset = change.get("set") or {}, change.get("unset") or []
        if not isinstance(set_, dict) or not isinstance(unset, list):
            raise LabelError(f"episode {index}: 'set' must be a mapping and 'unset' a list")
        entry = decisions.update(key, set_, [str(u) for u in unset])
        return {"index": index, "key": key, "entry": entry, "path": str(decisions.path)}

    return app
