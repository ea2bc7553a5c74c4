"""The dashboard's HTTP server: the standard library's ``ThreadingHTTPServer`` and a small router.

Safety: on a loopback address only requests whose ``Host`` is that address are answered (a web
page cannot reach the dashboard through DNS rebinding); on any other address every request must
carry the token (``?token=`` once, then a cookie, or the ``X-Vtrain-Token`` header). Requests that
change something are POSTs with a JSON body and the ``X-Vtrain: 1`` header, which a cross-site form
cannot send. Files come only from the runs' own folders (:mod:`vtrain_serve.files`).
"""

from __future__ import annotations

import hmac
import json
import secrets
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vtrain_serve import files, runs
from vtrain_serve.control import Children, Refusal, options_json, validate

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "chart.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Dashboard:
    """The served folders, the token (None on loopback) and the runs started from the page."""

    def __init__(self, roots: list[Path], host: str, token: str | None) -> None:
        self.roots = [Path(r).expanduser().resolve() for r in roots]
        self.host = host
        self.token = token
        self.children = Children(self.roots)

    def run_ref(self, run_id: str) -> runs.RunRef:
        ref = runs.find_runs(self.roots).get(run_id)
        if ref is None:
            raise files.Refused(404, f"no run {run_id!r} under the served folders")
        return ref

    def status(self, ref: runs.RunRef) -> str:
        return runs.run_status(ref.path, self.children.exit_code(ref.path), self.children.running(ref.path))

    def run_list(self) -> list[dict[str, Any]]:
        return [runs.summarize(ref, self.status(ref)) for ref in runs.find_runs(self.roots).values()]

    def run_detail(self, ref: runs.RunRef) -> dict[str, Any]:
        info = runs.read_json(ref.path / "run_info.json")
        sources = info.get("config_sources") or {}
        config = [{"key": k, "value": v, "source": sources.get(k, "default")}
                  for k, v in sorted((info.get("config") or {}).items())]
        return {**runs.summarize(ref, self.status(ref)), "config": config, "plugins": info.get("plugins", []),
                "checkpoints": runs.checkpoints(ref.path), "validation": runs.validation_media(ref.path),
                "summary": runs.startup_summary(ref.path), "log": runs.log_tail(ref.path, 60),
                "controllable": (ref.path / runs.SERVE_DIR / "config.json").is_file(),
                "stoppable": self.children.running(ref.path)}


def make_server(dashboard: Dashboard, port: int) -> ThreadingHTTPServer:
    """A server for ``dashboard`` on ``dashboard.host:port`` (port 0 picks a free one)."""
    handler = type("BoundHandler", (Handler,), {"dashboard": dashboard})
    server_class = ThreadingHTTPServer
    if ":" in dashboard.host:
        import socket

        server_class = type("V6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    server = server_class((dashboard.host, port), handler)
    server.daemon_threads = True
    return server


def new_token() -> str:
    """A fresh random token for a non-loopback address."""
    return secrets.token_urlsafe(24)


class Handler(BaseHTTPRequestHandler):
    """Routes GET/POST requests to the dashboard; every answer is JSON, a static asset or a run's file."""

    dashboard: Dashboard
    server_version = "vtrain-serve"
    _set_cookie: str | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # a request log line per poll would drown the terminal

    # -- gatekeeping ---------------------------------------------------------------------------

    def _allowed(self, query: dict[str, list[str]]) -> bool:
        board = self.dashboard
        self._set_cookie = None
        if board.token is None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            return host in LOOPBACK
        offered = self.headers.get("X-Vtrain-Token") or (query.get("token") or [""])[0]
        if not offered:
            cookie = SimpleCookie(self.headers.get("Cookie") or "")
            offered = cookie["vtrain_token"].value if "vtrain_token" in cookie else ""
        elif query.get("token"):
            self._set_cookie = offered
        return hmac.compare_digest(offered.encode(), board.token.encode())

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        if self._set_cookie and status < 400:
            self.send_header("Set-Cookie", f"vtrain_token={self._set_cookie}; HttpOnly; SameSite=Strict; Path=/")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data, allow_nan=False, default=str).encode(), "application/json")

    def _error(self, status: int, message: str, problems: list[dict[str, str]] | None = None) -> None:
        self._json({"error": message, "problems": problems or []}, status)

    # -- GET -----------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._allowed(query):
            self._error(403, "forbidden: this dashboard needs its token (printed when it started)")
            return
        try:
            self._get(url.path, query)
        except files.Refused as refused:
            self._error(refused.status, str(refused))
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_HEAD = do_GET

    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        board = self.dashboard
        arg = lambda name: (query.get(name) or [""])[0]  # noqa: E731
        if path in ("/", "/index.html"):
            path = "/static/index.html"
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name not in STATIC:
                raise files.Refused(404, "no such asset")
            self._send(200, package_files("vtrain_serve").joinpath("static", name).read_bytes(), STATIC[name])
        elif path == "/api/runs":
            self._json({"runs": board.run_list(), "roots": [str(r) for r in board.roots]})
        elif path == "/api/run":
            self._json(board.run_detail(board.run_ref(arg("id"))))
        elif path == "/api/metrics":
            ref = board.run_ref(arg("id"))
            offset = int(arg("offset")) if arg("offset").isdigit() else 0
            rows, offset = runs.metrics_json(ref.path / "metrics.jsonl", offset)
            head = json.dumps({"offset": offset, "status": board.status(ref)})[:-1].encode()
            self._send(200, head + b', "rows": ' + rows + b"}", "application/json")
        elif path == "/api/log":
            self._json({"lines": runs.log_tail(board.run_ref(arg("id")).path, 200)})
        elif path == "/api/file":
            self._file(files.safe_path(board.run_ref(arg("id")).path, arg("path")))
        elif path == "/api/options":
            self._json(options_json())
        else:
            raise files.Refused(404, "no such page")

    def _file(self, target: Path) -> None:
        """Stream the file (or the asked byte range) in chunks: a long video never sits in memory."""
        size = files.file_size(target)
        part = files.byte_range(self.headers.get("Range"), size)
        start, end = part if part is not None else (0, size - 1)
        self.send_response(206 if part is not None else 200)
        self.send_header("Content-Type", files.content_type(target))
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Content-Type-Options", "nosniff")
        if part is not None:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if self._set_cookie:
            self.send_header("Set-Cookie", f"vtrain_token={self._set_cookie}; HttpOnly; SameSite=Strict; Path=/")
        self.end_headers()
        if self.command != "HEAD":
            for chunk in files.read_chunks(target, start, end):
                self.wfile.write(chunk)

    # -- POST ----------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        if not self._allowed(parse_qs(url.query)):
            self._error(403, "forbidden: this dashboard needs its token (printed when it started)")
            return
        if self.headers.get("X-Vtrain") != "1" or "json" not in (self.headers.get("Content-Type") or ""):
            self._error(403, "forbidden: changes need a JSON request with the X-Vtrain: 1 header")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(min(length, 1 << 20)) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            self._error(400, "the request body must be a JSON object")
            return
        try:
            self._post(url.path, body)
        except Refusal as refusal:
            self._error(HTTPStatus.CONFLICT, str(refusal), refusal.problems)
        except files.Refused as refused:
            self._error(refused.status, str(refused))

    def _post(self, path: str, body: dict[str, Any]) -> None:
        board = self.dashboard
        config = body.get("config")
        if path in ("/api/validate", "/api/start"):
            if not isinstance(config, dict):
                raise files.Refused(400, "config (a JSON object of option keys) is required")
            if path == "/api/validate":
                resolved, problems = validate(config)
                self._json({"ok": not problems, "problems": problems,
                            "config": [] if resolved is None else [{"key": k, "value": v, "source": resolved.source(k)}
                                                                   for k, v in resolved.to_json().items()]})
                return
            output = board.children.start(config)
            self._json({"started": str(output), "id": _id_for(board, output)})
        elif path == "/api/stop":
            board.children.stop(board.run_ref(str(body.get("id", ""))).path)
            self._json({"stopping": True})
        elif path == "/api/resume":
            output = board.children.resume(board.run_ref(str(body.get("id", ""))).path)
            self._json({"started": str(output), "id": _id_for(board, output)})
        else:
            raise files.Refused(404, "no such action")


def _id_for(board: Dashboard, output: Path) -> str | None:
    for ref in runs.find_runs(board.roots).values():
        if ref.path.resolve() == output:
            return ref.id
    return None

