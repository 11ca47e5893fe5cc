"""The guard in front of every request under ``/api/`` (an ASGI middleware, the first one ``app.py``
gives Streamlit's server, so it runs before Streamlit's own middleware and the router).

In this order it:

1. refuses a path with a NUL or a ``..`` segment (400 ``bad_path``): Streamlit's own path check
   would refuse it too, in plain text; this one answers in JSON;
2. when ``BEATSYNC_API_KEY`` is set, asks for it in ``X-API-Key`` (401 ``api_key_required`` /
   ``bad_api_key``) on every route but `OPEN_PATHS` (health, for load balancers; the OpenAPI
   document, which holds no data);
3. refuses a state-changing request (any method but GET, HEAD, OPTIONS) sent from another origin
   (403 ``cross_origin``): ``Sec-Fetch-Site: cross-site``, or an ``Origin`` whose host and port are
   not the request's ``Host`` (nor one of ``BEATSYNC_ALLOWED_ORIGINS``). A browser sends these
   headers on every cross-origin POST, so another site cannot make a visitor's browser cancel or
   resubmit jobs; clients that are not browsers send no ``Origin`` and are not affected;
4. times out a request body that stalls: no byte for ``BEATSYNC_BODY_TIMEOUT_S`` (408
   ``body_timeout``, raised inside the route reading it, which removes what it wrote);
5. makes every error answer JSON: an error answer that a route did not make (the router's 405, a
   framework's plain-text answer) is replaced by an `ErrorBody` with the same status, and an
   exception that escapes a route becomes a JSON 500 ``internal``. An answer sent before the
   request body was read to its end closes the connection.

What it cannot reach: a request the HTTP server (uvicorn) refuses before the application sees it
(a malformed request line, headers over its size limit) gets uvicorn's plain-text 400; paths
outside ``/api/`` are the web app's.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from beatsync.contract import API_PREFIX
from beatsync.errors import BeatSyncError
from beatsync.messages import pick_language
from beatsync.tasks import Settings

from .responses import CODE_OF_STATUS, HTTPError, error_body, error_response

log = logging.getLogger("beatsync.api")

#: routes that answer without the API key
OPEN_PATHS = frozenset({f"{API_PREFIX}/health", f"{API_PREFIX}/openapi.json"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: headers of a replaced answer worth keeping
_KEEP = ("allow", "content-range", "retry-after", "www-authenticate")

_MESSAGES = {  # the English of the answers the guard makes in place of a plain one, by code
    "not_found": "There is no such API route.",
    "method_not_allowed": "This API route does not take this method.",
    "body_timeout": "The request body did not arrive in time.",
    "too_large": "The request is too large.",
    "unsupported_media_type": "This kind of request body is not accepted here.",
    "range_not_satisfiable": "The requested byte range is outside the file.",
    "internal": "Something went wrong inside BeatSync.",
}


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def _host_port(netloc: str, scheme: str | None) -> tuple[str, int | None] | None:
    """(host, port) of ``host[:port]`` (the port is the scheme's default when absent and a scheme is
    given); None when it does not parse."""
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    if port is None and scheme is not None:
        port = _DEFAULT_PORT.get(scheme)
    return host.lower(), port


def same_origin(origin: str, host: str | None) -> bool:
    """Whether an ``Origin`` header names the server the request was sent to (its ``Host``): the
    same host name, and the same port when the Host header gives one."""
    origin = origin.strip().lower()
    if not host or origin in ("", "null") or "://" not in origin:
        return False
    scheme, _, netloc = origin.partition("://")
    if "/" in netloc or "@" in netloc:
        return False
    o = _host_port(netloc, scheme)
    h = _host_port(host.strip(), None)
    if o is None or h is None:
        return False
    return o[0] == h[0] and (h[1] is None or h[1] == o[1])


def cross_origin(method: str, headers: Headers, allowed: tuple[str, ...] = ()) -> bool:
    """Whether a request must be refused as cross-origin (see the module docstring)."""
    if method.upper() in SAFE_METHODS:
        return False
    origin = headers.get("origin")
    if origin is not None and origin.strip().rstrip("/").lower() in allowed:
        return False
    if headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
        return True
    return origin is not None and not same_origin(origin, headers.get("host"))


def bad_path(path: str) -> bool:
    """A NUL, or a ``..`` segment (either slash), in a path."""
    return "\x00" in path or ".." in path.replace("\\", "/").split("/")


class ApiGuard:
    """ASGI middleware for the ``/api/`` routes (see the module docstring). ``settings``: a function
    giving the settings in force (read at each request, so a test may change them)."""

    def __init__(self, app: ASGIApp, settings: Callable[[], Settings] | None = None):
        self.app = app
        self._settings = settings

    def settings(self) -> Settings:
        if self._settings is not None:
            return self._settings()
        from beatsync.service import get_service  # (the service imports the API's settings only)

        return get_service().settings

    def refusal(self, scope: Scope, headers: Headers, s: Settings) -> BeatSyncError | None:
        path = scope.get("path", "")
        if bad_path(path):
            return BeatSyncError("bad_path", "This path is not allowed (no '..' segments or NUL characters).")
        if s.api_key and path not in OPEN_PATHS:
            given = headers.get("x-api-key")
            if not given:
                return BeatSyncError("api_key_required", "This API needs a key: send it in the X-API-Key header.")
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), s.api_key.encode("utf-8")):
                return BeatSyncError("bad_api_key", "The API key (X-API-Key) is not right.")
        if cross_origin(scope.get("method", "GET"), headers, s.allowed_origins):
            return BeatSyncError("cross_origin", "Requests that change something are only accepted from this "
                                 "server's own pages, not from another site.", origin=headers.get("origin", "")[:200])
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        lang = pick_language((query.get("lang") or [None])[0] or headers.get("accept-language"))
        has_body = headers.get("transfer-encoding") is not None or headers.get("content-length", "0").strip() not in (
            "", "0")
        # body_done: nothing more to wait for (the body ended, or was given up); body_read: it ended
        state = {"body_done": not has_body, "body_read": not has_body, "started": False, "replaced": False}
        try:
            s = self.settings()
            refusal = self.refusal(scope, headers, s)
        except BeatSyncError as e:
            refusal = e
        if refusal is not None:
            await self._answer(refusal, lang, scope, receive, send, close=not state["body_read"])
            return
        timeout = s.body_timeout_s

        async def timed_receive() -> Message:
            if state["body_done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                state["body_done"] = True  # (what is left of it is never read: the connection closes)
                raise HTTPError("body_timeout", f"The request body stalled: no byte arrived for {timeout:g} s, so "
                                "the request was given up. Please send it again.", timeout_s=timeout) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = state["body_read"] = True
            return message

        async def guarded_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                state["started"] = True
                status = int(message["status"])
                raw = list(message.get("headers", []))
                ctype = Headers(raw=raw).get("content-type", "")
                if status >= 400 and not ctype.startswith("application/json"):
                    state["replaced"] = True
                    await self._replace(status, Headers(raw=raw), lang, scope, receive, send,
                                        close=not state["body_read"])
                    return
                if not state["body_read"]:
                    raw.append((b"connection", b"close"))
                    message = {**message, "headers": raw}
            elif state["replaced"]:
                return  # the body of the answer replaced
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception as e:
            if state["started"]:
                if isinstance(e, BeatSyncError) and e.code == "body_timeout":
                    return  # (a route still listening for a disconnect; the connection closes)
                raise
            if not isinstance(e, BeatSyncError):
                log.exception("API error on %s", scope.get("path"))
                e = HTTPError("internal", _MESSAGES["internal"])
            await self._answer(e, lang, scope, receive, send, close=not state["body_read"])

    async def _answer(self, err: BeatSyncError, lang: str, scope: Scope, receive: Receive, send: Send, *,
                      close: bool) -> None:
        response = error_response(err, lang, headers={"Connection": "close"} if close else None)
        await response(scope, receive, send)

    async def _replace(self, status: int, headers: Headers, lang: str, scope: Scope, receive: Receive, send: Send,
                       *, close: bool) -> None:
        """An `ErrorBody` in place of a non-JSON error answer, with its status and useful headers."""
        code = CODE_OF_STATUS.get(status, "internal" if status >= 500 else "bad_request")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        message = _MESSAGES.get(code) if code in CODE_OF_STATUS.values() or status >= 500 else None
        err = BeatSyncError(code, message or f"The request was refused ({status} {phrase}).", status=status)
        keep = {k: headers[k] for k in _KEEP if k in headers}
        if close:
            keep["Connection"] = "close"
        body = error_body(err, lang).model_dump(mode="json")
        await JSONResponse(body, status_code=status, headers=keep)(scope, receive, send)


__all__ = ["OPEN_PATHS", "ApiGuard", "bad_path", "cross_origin", "is_api_path", "same_origin"]
