"""``demofab review RELEASES/NAME [SESSION...]``: the curation review page."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from ..errors import CurationError

DEFAULT_PORT = 8780


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("review", help="serve the curation review page of a release "
                                      "(browse, watch, label; decisions go to a labels file)")
    p.add_argument("release", help="a release name directory (RELEASES/NAME: its newest "
                                   "version) or a version directory")
    p.add_argument("sessions", nargs="*", metavar="SESSION",
                   help="recording sessions whose episodes are not in the release yet: "
                        "listed after the release's (curated once into the review cache)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--version", type=int, help="the version to review (default: the newest)")
    p.add_argument("--labels", metavar="FILE",
                   help="labels file the decisions are saved into (YAML, or CSV by its .csv "
                        "suffix; default RELEASES/NAME/labels.yaml), for `demofab curate --labels`")
    p.add_argument("--cache", metavar="DIR", help="thumbnail cache (default $DEMOFAB_CACHE/review, "
                                                  "else RELEASES/NAME/.work/review)")
    p.set_defaults(func=cmd_review)


def cmd_review(args: argparse.Namespace) -> int:
    from . import INSTALL_HINT, create_app

    print(f"opening {args.release} (each version's motion figures are computed once, then "
          "cached)" + (f"; curating {len(args.sessions)} session(s) into the review cache"
                       if args.sessions else ""), file=sys.stderr, flush=True)
    app = create_app(args.release, args.labels, args.version, args.cache, args.sessions)
    try:
        import uvicorn
    except ImportError as exc:
        raise CurationError(f"the review page needs uvicorn: {INSTALL_HINT} ({exc})") from exc
    cat = app.state.catalog
    host = f"[{args.host}]" if ":" in args.host else args.host
    pending = sum(1 for row in cat.rows if row["source"] == "session")
    print(f"review page: http://{host}:{args.port}/  ({cat.reader.name} v{cat.reader.version}, "
          f"{len(cat.rows) - pending} episodes + {pending} from sessions; labels: "
          f"{app.state.decisions.path})", flush=True)
    if not _loopback(args.host):
        print(f"warning: {args.host} is not a loopback address; anyone who can reach it can "
              "read the release and write the labels file (the page has no login)",
              file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0




def _loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback
                               for i in infos)
