"""The review page's web server: the standard library's threading HTTP server, on 127.0.0.1 only.

Safe by construction rather than by care at each call:

* it listens on 127.0.0.1, on a free port, and answers only requests whose
  Host names that address (so a rebound DNS name reaches nothing);
* every request for the page, its data and its pictures carries a random
  token; a change is a POST of JSON with the token in a header, from the page's
  own origin: another page in the browser can neither read the token nor send
  that header without being refused first;
* a request names a finding and one of its images, never a path: the files are
  those of the run's findings under --image_dir (``session.py``, ``moves.py``);
* the page sets every name as text, and its policy allows no script, style or
  picture from anywhere but this server.
"""
from __future__ import annotations

import hmac
import html
import json
import logging
import secrets
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

from ..data.names import one_line
from .moves import Refused
from .pictures import SIZES, jpeg_of
from .session import Review

TOKEN_HEADER = "X-Review-Token"
MAX_BODY = 64 * 1024
ASSETS = {"/page.css": "text/css; charset=utf-8", "/page.js": "text/javascript; charset=utf-8"}
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

log = logging.getLogger("retrain")


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True  # a picture still being sent does not hold up Ctrl-C

    def __init__(self, review: Review, port: int = 0, token: str | None = None):
        super().__init__(("127.0.0.1", port), Handler)
        self.review = review
        self.token = token or secrets.token_urlsafe(24)
        self.port = self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    def origins(self) -> set[str]:
        return {f"http://{host}" for host in self.hosts()}


def _asset(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "bottleneck-review"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.debug("review: " + format, *args)

    # ---------------------------------------------------------------- requests

    def do_GET(self):
        if not self._from_this_host():
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path in ASSETS:
            return self._send(HTTPStatus.OK, _asset(url.path[1:]).encode("utf-8"), ASSETS[url.path])
        if url.path == "/favicon.ico":  # asked for by every browser: none, rather than a refusal in its console
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        token = (query.get("token") or [""])[0] or self.headers.get(TOKEN_HEADER, "")
        if not self._token_is(token):
            return self._refuse(HTTPStatus.FORBIDDEN, "This address needs the token that the review command printed.")
        if url.path == "/":
            return self._send(HTTPStatus.OK, self._page().encode("utf-8"), "text/html; charset=utf-8")
        if url.path == "/api/state":
            return self._json(HTTPStatus.OK, self.server.review.state())
        if url.path == "/image":
            return self._picture(query)
        return self._refuse(HTTPStatus.NOT_FOUND, "No such page.")

    def do_POST(self):
        if not self._from_this_host():
            return
        origin = self.headers.get("Origin")
        site = self.headers.get("Sec-Fetch-Site")
        if (origin is not None and origin not in self.server.origins()) or site not in (None, "same-origin", "none"):
            return self._refuse(HTTPStatus.FORBIDDEN, "Changes are accepted only from the review page itself.")
        if not self._token_is(self.headers.get(TOKEN_HEADER, "")):
            return self._refuse(HTTPStatus.FORBIDDEN, "A change needs the review page's token.")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "A change is sent as JSON.")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                raise ValueError
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self._refuse(HTTPStatus.BAD_REQUEST, "A change is one JSON object.")
        review = self.server.review
        path = urlsplit(self.path).path
        try:
            if path == "/api/act":
                change = review.act(body.get("id"), body.get("side", 0), str(body.get("action")), body.get("folder"))
            elif path == "/api/undo":
                change = review.undo(body.get("id"))
            else:
                return self._refuse(HTTPStatus.NOT_FOUND, "No such action.")
        except Refused as exc:
            return self._json(HTTPStatus.CONFLICT, {"ok": False, "error": str(exc), "state": review.state()})
        except (TypeError, ValueError):
            return self._refuse(HTTPStatus.BAD_REQUEST, "A change names a finding by its number.")
        what = f"{change.action} {one_line(change.source)} -> {one_line(change.target)}"
        log.info("review: %s", what)
        return self._json(HTTPStatus.OK, {"ok": True, "change": what, "state": review.state()})

    # ---------------------------------------------------------------- checks

    def _from_this_host(self) -> bool:
        """Only requests addressed to this server by its own name (a rebound DNS name is refused)."""
        if self.headers.get("Host") in self.server.hosts():
            return True
        self._refuse(HTTPStatus.MISDIRECTED_REQUEST, "This server answers only to 127.0.0.1 on its own port.")
        return False

    def _token_is(self, token: str) -> bool:
        return hmac.compare_digest(token.encode("utf-8", "replace"), self.server.token.encode())

    # ---------------------------------------------------------------- answers

    def _page(self) -> str:
        review = self.server.review
        return (_asset("page.html")
                .replace("{{token}}", html.escape(self.server.token, quote=True))
                .replace("{{image_dir}}", html.escape(one_line(review.folder.root), quote=True))
                .replace("{{report_dir}}", html.escape(one_line(review.run.report_dir), quote=True)))

    def _picture(self, query):
        try:
            finding, side = int(query["id"][0]), int((query.get("side") or ["0"])[0])
            size = (query.get("size") or ["thumb"])[0]
            if size not in SIZES:
                raise ValueError
        except (KeyError, ValueError):
            return self._refuse(HTTPStatus.BAD_REQUEST, "A picture is asked for by finding, side and size.")
        try:
            path = self.server.review.path_of(finding, side)
        except Refused as exc:
            return self._refuse(HTTPStatus.NOT_FOUND, str(exc))
        data = jpeg_of(path, size)
        if data is None:
            return self._refuse(HTTPStatus.UNPROCESSABLE_ENTITY, "The image cannot be read.")
        return self._send(HTTPStatus.OK, data, "image/jpeg", cache="private, max-age=300")

    def _json(self, status, value):
        return self._send(status, json.dumps(value).encode("utf-8"), "application/json")

    def _refuse(self, status, message: str):
        return self._send(status, json.dumps({"ok": False, "error": message}).encode("utf-8"), "application/json")

    def _send(self, status, body: bytes, content_type: str, cache: str = "no-store"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
