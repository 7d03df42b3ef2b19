"""The vault's Python client, and ``vault://`` releases that curation's loader opens.

:class:`VaultClient` speaks the HTTP API of :mod:`vault.api` (bearer token, JSON, HTTP
Range) with httpx; every refusal is a :class:`ClientError` (a :class:`VaultError`) carrying
the server's own message: :class:`AuthenticationFailed` for 401 (token missing, expired or
revoked), :class:`AccessDenied` for 403 (no grant or scope), :class:`NotFound` for 404, and
so on.

A release in the vault is addressed as ``vault://HOST:PORT/DATASET[/RELEASE][/VERSION][/mock]``
(``vault+https://`` for TLS): ``RELEASE`` is the release's name (checked against the
catalog), ``VERSION`` is ``N``, ``vN`` or ``latest`` (the default); ``/mock`` opens the release's
mock release (simulated content; no grant needed). The token comes from the ``token``
argument or ``$DEMOFAB_VAULT_TOKEN``. :func:`open_vault_release` returns a
:class:`VaultRelease`: the release's files read over HTTP (whole files, or byte ranges for
shard indexes, chunks and camera frames), with the small JSON documents (``zarr.json``,
the episode table, stats) cached. It is the opener curation's release-opening hook calls
for the ``vault`` scheme (entry point group ``demofab.release_openers``), and
:meth:`VaultRelease.zarr_store` gives a read-only zarr v3 store over the same reads
(:class:`vault.zstore.VaultStore`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx

from .errors import VaultError

if TYPE_CHECKING:
    from .zstore import VaultStore

__all__ = [
    "TOKEN_ENV",
    "UNCHANGED",
    "AccessDenied",
    "AuthenticationFailed",
    "ClientError",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "RangeNotSatisfiable",
    "ServerError",
    "Unreachable",
    "VaultClient",
    "VaultRelease",
    "VaultURL",
    "open_vault_release",
    "parse_vault_url",
]

#: the environment variable a ``vault://`` URL takes its token from
TOKEN_ENV = "DEMOFAB_VAULT_TOKEN"
#: :meth:`VaultClient.resubmit`: leave this field of the request as it is
UNCHANGED: object = object()
_CACHED_SUFFIXES = ("zarr.json", ".json")


class ClientError(VaultError):
    """The vault refused or failed a call: ``status`` (HTTP, 0 when unreachable), the
    server's ``detail``, and the call (``method``, ``path``)."""

    def __init__(self, message: str, *, status: int, detail: str, method: str,
                 path: str) -> None:
        super().__init__(message)
        self.status, self.detail, self.method, self.path = status, detail, method, path


class AuthenticationFailed(ClientError):
    """401: the token is missing, unknown, expired or revoked."""


class AccessDenied(ClientError):
    """403: no grant for the release, episodes or streams, or the token lacks the scope."""


class NotFound(ClientError):
    """404: no such dataset, release, request, file or mock release."""


class Conflict(ClientError):
    """409: the request is not in a state that allows this action."""


class InvalidRequest(ClientError):
    """400 or 422: a malformed call (bad name, path, range or body)."""


class RangeNotSatisfiable(ClientError):
    """416: the byte range lies outside the file."""


class ServerError(ClientError):
    """5xx: the vault failed (e.g. stored data failed authentication)."""


class Unreachable(ClientError):
    """The vault could not be reached (connection refused, timeout)."""


def _error(status: int, detail: str, method: str, path: str) -> ClientError:
    where = f"{method} {path}"
    if status == 401:
        return AuthenticationFailed(f"{where}: token missing, expired or revoked: {detail}",
                                    status=status, detail=detail, method=method, path=path)
    if status == 403:
        return AccessDenied(f"{where}: no grant or scope for this: {detail}", status=status,
                            detail=detail, method=method, path=path)
    kinds: dict[int, type[ClientError]] = {404: NotFound, 409: Conflict, 400: InvalidRequest,
                                           422: InvalidRequest, 416: RangeNotSatisfiable}
    cls = kinds.get(status, ServerError if status >= 500 else ClientError)
    return cls(f"{where}: HTTP {status}: {detail}", status=status, detail=detail,
               method=method, path=path)


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500] or resp.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        d = body["detail"]
        return d if isinstance(d, str) else json.dumps(d)[:1000]
    return json.dumps(body)[:500]


def _seg(value: str | int) -> str:
    return quote(str(value), safe="")


def _file_path(path: str) -> str:
    return quote(path.lstrip("/"), safe="/")


class VaultClient:
    """A client of one vault's HTTP API, authenticated by a bearer ``token``.

    ``http``: an httpx client to use instead of a new one (tests pass an in-process
    transport); its base URL must be the vault's. Safe to share between threads (httpx's
    client is). Close it with :meth:`close` or use it as a context manager."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 60.0,
                 http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if http is None:
            self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                      headers=headers, trust_env=False)
            self._own = True
        else:
            self._http = http
            self._http.headers.update(headers)
            self._own = False

    def __repr__(self) -> str:
        return f"VaultClient({self.base_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # a DataLoader worker gets its own connection pool (to the same base URL)
        return {"base_url": self.base_url, "token": self.token, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["base_url"], state["token"], timeout=state["timeout"])  # type: ignore[misc]

    def close(self) -> None:
        """Close the connection pool (when this client created it)."""
        if self._own:
            self._http.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------
    def _call(self, method: str, path: str, *, json_body: Any = None,
              headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200, 201)
              ) -> httpx.Response:
        try:
            resp = self._http.request(method, path, json=json_body, headers=headers)
        except httpx.TransportError as exc:
            raise Unreachable(f"{method} {self.base_url}{path}: vault unreachable: {exc}",
                              status=0, detail=str(exc), method=method, path=path) from exc
        if resp.status_code not in ok:
            raise _error(resp.status_code, _detail(resp), method, path)
        return resp

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, path, json_body=body).json()

    def _bytes(self, path: str, start: int | None, end: int | None) -> bytes:
        """GET ``path``, bytes ``[start, end)`` (either may be None)."""
        if start is None and end is None:
            return self._call("GET", path).content
        lo = 0 if start is None else int(start)
        if end is not None and int(end) <= lo:
            return b""
        rng = f"bytes={lo}-" if end is None else f"bytes={lo}-{int(end) - 1}"
        resp = self._call("GET", path, headers={"Range": rng}, ok=(200, 206))
        data = resp.content
        if resp.status_code == 200:  # the server ignored the range: cut it here
            return data[lo:None if end is None else int(end)]
        want = None if end is None else int(end) - lo
        if want is not None and len(data) > want:
            raise ServerError(f"GET {path} ({rng}): {len(data)} bytes, asked for {want}",
                              status=206, detail="range too long", method="GET", path=path)
        return data

    # -- catalog -------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /health`` (no token needed)."""
        out: dict[str, Any] = self._json("GET", "/health")
        return out

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset's description: releases with streams, rates, shapes, episode
        counts and label schema."""
        out: list[dict[str, Any]] = self._json("GET", "/v1/datasets")
        return out

    def describe(self, dataset: str) -> dict[str, Any]:
        """One dataset's description."""
        out: dict[str, Any] = self._json("GET", f"/v1/datasets/{_seg(dataset)}")
        return out

    def latest_version(self, dataset: str) -> int:
        """The newest release version of ``dataset`` (NotFound when it has none)."""
        releases = self.describe(dataset).get("releases") or []
        if not releases:
            raise NotFound(f"dataset {dataset!r} has no release", status=404,
                           detail="no release", method="GET", path=f"/v1/datasets/{dataset}")
        return max(int(r["version"]) for r in releases)

    def mock_file(self, dataset: str, version: int, path: str, start: int | None = None,
                  end: int | None = None) -> bytes:
        """A file of release ``version``'s mock release (bytes ``[start, end)``)."""
        return self._bytes(f"/v1/datasets/{_seg(dataset)}/releases/{int(version)}/mock/"
                           f"{_file_path(path)}", start, end)

    # -- requests and reviews ------------------------------------------------------
    def request_access(self, dataset: str, release: int, *, purpose: str,
                       episodes: list[int] | None = None, streams: list[str] | None = None,
                       lab: str | None = None, duration_days: int | None = None
                       ) -> dict[str, Any]:
        """Ask for access to a release, or some of its episodes or streams."""
        body: dict[str, Any] = {"dataset": dataset, "release": int(release), "purpose": purpose}
        if episodes is not None:
            body["episodes"] = [int(e) for e in episodes]
        if streams is not None:
            body["streams"] = list(streams)
        if lab is not None:
            body["lab"] = lab
        if duration_days is not None:
            body["duration_days"] = int(duration_days)
        out: dict[str, Any] = self._json("POST", "/v1/requests", body)
        return out

    def requests(self) -> list[dict[str, Any]]:
        """The caller's labs' requests and those waiting for the caller's review."""
        out: list[dict[str, Any]] = self._json("GET", "/v1/requests")
        return out

    def request(self, request_id: int) -> dict[str, Any]:
        """One request."""
        out: dict[str, Any] = self._json("GET", f"/v1/requests/{int(request_id)}")
        return out

    def _action(self, request_id: int, action: str, body: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = self._json("POST", f"/v1/requests/{int(request_id)}/{action}",
                                         body)
        return out

    def withdraw(self, request_id: int) -> dict[str, Any]:
        """The lab withdraws its request."""
        return self._action(request_id, "withdraw")

    def resubmit(self, request_id: int, *, purpose: str | None = None,
                 episodes: list[int] | None | object = UNCHANGED,
                 streams: list[str] | None | object = UNCHANGED,
                 duration_days: int | None = None) -> dict[str, Any]:
        """The lab answers a changes-requested decision (back to submitted, a new round).
        A field left :data:`UNCHANGED` stays; ``episodes``/``streams`` None ask for all."""
        body: dict[str, Any] = {}
        if purpose is not None:
            body["purpose"] = purpose
        if episodes is None or isinstance(episodes, list):
            body["episodes"] = None if episodes is None else [int(e) for e in episodes]
        if streams is None or isinstance(streams, list):
            body["streams"] = None if streams is None else [str(x) for x in streams]
        if duration_days is not None:
            body["duration_days"] = int(duration_days)
        return self._action(request_id, "resubmit", body)

    def start_review(self, request_id: int) -> dict[str, Any]:
        """A reviewer takes up a submitted request."""
        return self._action(request_id, "start-review")

    def request_changes(self, request_id: int, reason: str) -> dict[str, Any]:
        """A reviewer sends the request back with ``reason``."""
        return self._action(request_id, "request-changes", {"reason": reason})

    def reject(self, request_id: int, reason: str) -> dict[str, Any]:
        """A reviewer rejects the request with ``reason``."""
        return self._action(request_id, "reject", {"reason": reason})

    def prepare_approval(self, request_id: int) -> str:
        """Approval step one: the one-time confirmation code."""
        return str(self._action(request_id, "approval")["code"])

    def confirm_approval(self, request_id: int, code: str) -> dict[str, Any]:
        """Approval step two: record the approval with the code from step one."""
        return self._action(request_id, "approval/confirm", {"code": code})

    def revoke(self, request_id: int, reason: str) -> dict[str, Any]:
        """Revoke an approved request and its grant (effective on the next pull)."""
        return self._action(request_id, "revoke", {"reason": reason})

    def grants(self) -> list[dict[str, Any]]:
        """The grants of the caller's labs."""
        out: list[dict[str, Any]] = self._json("GET", "/v1/grants")
        return out

    # -- pulls ---------------------------------------------------------------------
    def files(self, dataset: str, version: int) -> list[dict[str, Any]]:
        """The release files the caller may pull: ``{path, size, ranges}`` each."""
        out: list[dict[str, Any]] = self._json(
            "GET", f"/v1/datasets/{_seg(dataset)}/releases/{int(version)}/files")
        return out

    def read(self, dataset: str, version: int, path: str, start: int | None = None,
             end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of a release file (the whole file by default), decrypted
        by the vault for the holder of a grant (HTTP Range)."""
        return self._bytes(f"/v1/datasets/{_seg(dataset)}/releases/{int(version)}/files/"
                           f"{_file_path(path)}", start, end)

    # -- audit ---------------------------------------------------------------------
    def checkpoint(self) -> str:
        """The audit log's newest signed checkpoint (C2SP signed note text)."""
        return self._call("GET", "/v1/audit/checkpoint").text

    def audit_entries(self, dataset: str) -> list[dict[str, Any]]:
        """Every audit entry about ``dataset``."""
        out: list[dict[str, Any]] = self._json(
            "GET", f"/v1/audit/entries?dataset={quote(dataset, safe='')}")
        return out


# --------------------------------------------------------------------------------------
# vault:// releases
# --------------------------------------------------------------------------------------

_VERSION = re.compile(r"^v?(\d+)$")


@dataclass(frozen=True)
class VaultURL:
    """A parsed ``vault://HOST:PORT/DATASET[/RELEASE][/VERSION][/mock]``: ``release`` the
    release's name (None: any), ``version`` None = the newest."""

    base_url: str
    dataset: str
    version: int | None
    mock: bool
    release: str | None = None


def parse_vault_url(url: str) -> VaultURL:
    """Parse a ``vault://`` URL (``vault+https://`` for TLS); VaultError saying what is
    wrong otherwise."""
    parts = urlsplit(url)
    schemes = {"vault": "http", "vault+http": "http", "vault+https": "https"}
    if parts.scheme not in schemes or not parts.netloc:
        raise VaultError(f"{url!r} is not a vault URL (vault://HOST:PORT/DATASET[/VERSION]"
                         "[/mock])")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise VaultError(f"{url!r}: no query, fragment or credentials in a vault URL (the "
                         f"token comes from ${TOKEN_ENV} or the token argument)")
    segs = [s for s in parts.path.split("/") if s]
    mock = bool(segs) and segs[-1] == "mock"
    if mock:
        segs = segs[:-1]
    if not 1 <= len(segs) <= 3:
        raise VaultError(f"{url!r}: expected /DATASET[/RELEASE][/VERSION][/mock] after the host")
    version: int | None = None
    release: str | None = None
    rest = segs[1:]
    if rest and (rest[-1] == "latest" or _VERSION.match(rest[-1])):
        m = _VERSION.match(rest[-1])
        version = int(m.group(1)) if m else None
        rest = rest[:-1]
    elif len(rest) == 2:
        raise VaultError(f"{url!r}: release version {rest[-1]!r} is not N, vN or latest")
    if rest:
        release = rest[0]
    return VaultURL(f"{schemes[parts.scheme]}://{parts.netloc}", segs[0], version, mock,
                    release)


class VaultRelease:
    """One release version (or its mock) in a vault, read file by file over HTTP.

    The files curation's loader reads: :meth:`read` (a whole file; ``FileNotFoundError``
    when the release has no such file, as a local directory would say), :meth:`read_range`
    (bytes of a shard: its index, a chunk, a camera frame), :meth:`size`. The file list
    (the files the grant reaches, with their sizes; for a mock release its manifest) is
    fetched once; JSON documents are cached after their first read."""

    def __init__(self, client: VaultClient, dataset: str, version: int, *, mock: bool = False,
                 url: str | None = None, block_size: int = 1 << 20,
                 cache_mb: float = 64) -> None:
        self.client = client
        self.dataset = dataset
        self.version = int(version)
        self.mock = mock
        self.url = url or (f"vault://{client.base_url.split('://', 1)[-1]}/{dataset}/"
                           f"{self.version}{'/mock' if mock else ''}")
        self._sizes: dict[str, int] | None = None
        self._docs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        #: ranges are read in aligned blocks of ``block_size`` bytes kept in an LRU of
        #: ``cache_mb`` (neighbouring camera frames and chunks come with one request)
        self.block_size = int(block_size)
        self._blocks: OrderedDict[tuple[str, int, int, int], tuple[int, bytes]] = OrderedDict()
        #: per file, the byte ranges an episode-subset grant may read (absent: all of it)
        self._ranges: dict[str, list[tuple[int, int]]] = {}
        self._block_bytes = 0
        self._block_budget = int(cache_mb * (1 << 20))

    def __repr__(self) -> str:
        return f"VaultRelease({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_blocks"], state["_block_bytes"] = OrderedDict(), 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return self.url

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def _get(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        if self._pid != os.getpid():  # forked (a DataLoader worker): a pool of its own
            self.client = VaultClient(self.client.base_url, self.client.token,
                                      timeout=self.client.timeout)
            self._pid = os.getpid()
        if self.mock:
            return self.client.mock_file(self.dataset, self.version, path, start, end)
        return self.client.read(self.dataset, self.version, path, start, end)

    @property
    def sizes(self) -> dict[str, int]:
        """Every file of the release this caller may read -> its size in bytes."""
        if self._sizes is None:
            if self.mock:
                raw = self._get("manifest.json")  # NotFound: no mock release (yet)
                self._docs["manifest.json"] = raw
                manifest = json.loads(raw)
                sizes = {str(p): int(m["size"]) for p, m in manifest.get("files", {}).items()}
                sizes["manifest.json"] = len(raw)
            else:
                listed = self.client.files(self.dataset, self.version)
                sizes = {str(f["path"]): int(f["size"]) for f in listed}
                self._ranges = {str(f["path"]): [(int(a), int(b)) for a, b in f["ranges"]]
                                for f in listed if f.get("ranges") is not None}
            self._sizes = sizes
        return self._sizes

    def files(self) -> list[str]:
        """The paths of :attr:`sizes`, sorted."""
        return sorted(self.sizes)

    def size(self, path: str) -> int | None:
        """The size of ``path``, None when the release has no such file (for this caller)."""
        return self.sizes.get(path.lstrip("/"))

    def exists(self, path: str) -> bool:
        """Whether the release has the file ``path``."""
        return self.size(path) is not None

    def read(self, path: str) -> bytes:
        """The whole file ``path``; JSON documents are cached."""
        path = path.lstrip("/")
        doc = self._docs.get(path)
        if doc is not None:
            return doc
        if self._sizes is not None and path not in self._sizes:
            raise FileNotFoundError(f"{self.url}: no file {path!r} in this release")
        try:
            data = self._get(path)
        except NotFound as exc:
            raise FileNotFoundError(f"{self.url}: no file {path!r}: {exc.detail}") from exc
        if path.endswith(_CACHED_SUFFIXES):
            with self._lock:
                self._docs[path] = data
        return data

    def read_range(self, path: str, offset: int, nbytes: int) -> bytes:
        """``nbytes`` bytes of ``path`` from ``offset`` (fewer only at the end of the file).

        Read through aligned blocks, clipped to the byte ranges an episode-subset grant
        allows in this file; a span outside them is asked for as it is (the vault answers
        403, :class:`AccessDenied`)."""
        path = path.lstrip("/")
        if nbytes <= 0:
            return b""
        doc = self._docs.get(path)
        if doc is not None:
            return doc[offset:offset + nbytes]
        size = self.size(path)
        bs = self.block_size
        try:
            if size is None or bs <= 0 or nbytes > bs or self._block_budget < bs:
                return self._get(path, offset, offset + nbytes)
            end = min(offset + nbytes, size)
            lo, hi = 0, size
            allowed = self._ranges.get(path)
            if allowed is not None:
                span = next(((a, b) for a, b in allowed if a <= offset and end <= b), None)
                if span is None:
                    return self._get(path, offset, offset + nbytes)
                lo, hi = span
            pieces = [self._block(path, b, lo, hi)
                      for b in range(offset // bs, max(offset, end - 1) // bs + 1)]
        except NotFound as exc:
            raise FileNotFoundError(f"{self.url}: no file {path!r}: {exc.detail}") from exc
        data = pieces[0][1] if len(pieces) == 1 else b"".join(p[1] for p in pieces)
        start = offset - pieces[0][0]
        return data[start:start + (end - offset)]

    def _block(self, path: str, index: int, lo: int, hi: int) -> tuple[int, bytes]:
        """(first byte, bytes) of block ``index`` of ``path`` clipped to ``[lo, hi)``."""
        key = (path, index, lo, hi)
        with self._lock:
            hit = self._blocks.get(key)
            if hit is not None:
                self._blocks.move_to_end(key)
                return hit
        first = max(index * self.block_size, lo)
        data = self._get(path, first, min(index * self.block_size + self.block_size, hi))
        with self._lock:
            if key not in self._blocks:
                self._blocks[key] = (first, data)
                self._block_bytes += len(data)
                while self._block_bytes > self._block_budget and self._blocks:
                    _, (_, old) = self._blocks.popitem(last=False)
                    self._block_bytes -= len(old)
        return first, data

    def prefetch(self, paths: list[str], *, threads: int = 8) -> None:
        """Read the JSON documents ``paths`` (those the release has) into the cache, several
        at a time: what opening a release reads first, in one round trip's time."""
        todo = [p for p in dict.fromkeys(x.lstrip("/") for x in paths)
                if p.endswith(_CACHED_SUFFIXES) and p not in self._docs and self.exists(p)]
        if len(todo) < 2:
            for p in todo:
                self.read(p)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(threads, len(todo)), thread_name_prefix="vault-meta") as pool:
            list(pool.map(self.read, todo))

    def json(self, path: str) -> Any:
        """A JSON file of the release, parsed."""
        return json.loads(self.read(path))

    def walk(self, prefix: str = "") -> Iterator[str]:
        """The paths under ``prefix`` (a directory of the release, ``""`` for all)."""
        pre = prefix.strip("/")
        for p in self.files():
            if not pre or p == pre or p.startswith(pre + "/"):
                yield p

    def zarr_store(self) -> VaultStore:
        """A read-only zarr v3 store over this release's files."""
        from .zstore import VaultStore

        return VaultStore(self)

    def open_group(self) -> Any:
        """The release as a read-only zarr group (zarr-python)."""
        import zarr

        return zarr.open_group(store=self.zarr_store(), mode="r")


def open_vault_release(url: str, token: str | None = None, *, timeout: float = 60.0,
                       http: httpx.Client | None = None) -> VaultRelease:
    """Open ``vault://HOST:PORT/DATASET[/RELEASE][/VERSION][/mock]`` with ``token`` (default:
    ``$DEMOFAB_VAULT_TOKEN``). The opener curation calls for the ``vault`` scheme."""
    where = parse_vault_url(url)
    tok = token if token is not None else os.environ.get(TOKEN_ENV)
    if not tok:
        raise VaultError(f"{url}: no token: pass token= or set ${TOKEN_ENV}")
    client = VaultClient(where.base_url, tok, timeout=timeout, http=http)
    if where.release is None:
        version = where.version if where.version is not None else client.latest_version(
            where.dataset)
    else:
        named = [int(r["version"]) for r in client.describe(where.dataset).get("releases") or []
                 if r.get("name") == where.release
                 and (where.version is None or int(r["version"]) == where.version)]
        if not named:
            raise NotFound(f"{url}: dataset {where.dataset!r} has no release {where.release!r}"
                           + (f" version {where.version}" if where.version is not None else ""),
                           status=404, detail="no such release", method="GET",
                           path=f"/v1/datasets/{where.dataset}")
        version = max(named)
    release = VaultRelease(client, where.dataset, version, mock=where.mock, url=url)
    files = release.files()  # fails now (401/403/404) rather than at the first sample
    # what a loader reads first: the root, the tables and every group's zarr.json
    release.prefetch(["zarr.json", "episodes.json"]
                     + [p for p in files if p.endswith("zarr.json") and p.count("/") <= 2])
    return release
