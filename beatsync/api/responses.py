"""The API's answers to a mistake: every error is an `ErrorBody` (JSON), with the HTTP status of its
code (`HTTP_STATUS`). Used by the routes (`beatsync.api`) and by the guard in front of them
(`beatsync.api.guard`), which also turns any other error answer under ``/api/`` into one."""

from __future__ import annotations

import math
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse

from beatsync.contract import ErrorBody
from beatsync.errors import BeatSyncError, MediaError
from beatsync.messages import localize_error, pick_language

#: the HTTP status of each error code (a `MediaError` not listed here is 422, anything else 400)
HTTP_STATUS = {
    "bad_request": 400, "bad_json": 400, "bad_multipart": 400, "bad_id": 400, "bad_option": 400,
    "bad_variant": 400, "incomplete_upload": 400, "bad_parameter": 400, "bad_path": 400, "bad_owner_token": 400,
    "bad_range": 400, "too_many_takes": 400,
    "api_key_required": 401, "bad_api_key": 401, "owner_required": 401,
    "not_owner": 403, "cross_origin": 403,
    "not_found": 404, "expired": 404, "batch_not_found": 404, "file_not_found": 404, "no_output": 404, "no_input": 404,
    "method_not_allowed": 405,
    "body_timeout": 408,
    "not_ready": 409, "already_finished": 409, "not_finished": 409,
    "too_large": 413, "quota_exceeded": 413,
    "unsupported_media_type": 415, "unsupported_type": 415,
    "range_not_satisfiable": 416,
    "busy": 429,
    "internal": 500,
    "store_unavailable": 503,
    "disk_full": 507,
}

RETRY_AFTER_S = {"busy": 120, "store_unavailable": 30}  # when a client should try again

#: the code of an error answer made by the web server or the framework, not by a route, by status
#: (any other 4xx: ``bad_request``, 5xx: ``internal``)
CODE_OF_STATUS = {404: "not_found", 405: "method_not_allowed", 408: "body_timeout", 413: "too_large",
                  415: "unsupported_media_type", 416: "range_not_satisfiable"}


class HTTPError(BeatSyncError):
    """A `BeatSyncError` whose answer carries extra HTTP headers (``Allow``, ``Content-Range``)."""

    def __init__(self, code: str, message: str, *, headers: Mapping[str, str] | None = None, **params):
        super().__init__(code, message, **params)
        self.headers = dict(headers or {})


def language(request: Request) -> str:
    """The reader's language: ``?lang=`` if given, else the Accept-Language header."""
    return pick_language(request.query_params.get("lang") or request.headers.get("accept-language"))


def json_safe(value, depth: int = 0):
    """``value`` as plain JSON data: non-finite numbers and anything JSON cannot hold become text, deep
    or long structures are cut (an error's params echo what a client sent, which may be anything)."""
    if value is None or isinstance(value, bool | int | str):
        return value[:200] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= 4:
        return "..."
    if isinstance(value, Mapping):
        return {str(k)[:100]: json_safe(v, depth + 1) for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, depth + 1) for v in list(value)[:20]]
    return str(value)[:200]


def http_status(err: BeatSyncError) -> int:
    return HTTP_STATUS.get(err.code, 422 if isinstance(err, MediaError) else 400)


def error_body(err: BeatSyncError, lang: str = "en") -> ErrorBody:
    body = ErrorBody(error=err.message, error_code=err.code, error_params=json_safe(err.params))
    return localize_error(body, lang)


def error_response(err: BeatSyncError, lang: str = "en", headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON answer of an error, in ``lang``, with its status (and Retry-After when a client should
    try again later)."""
    out = dict(getattr(err, "headers", None) or {})
    retry = RETRY_AFTER_S.get(err.code)
    if retry:
        out["Retry-After"] = str(retry)
    out.update(headers or {})
    return JSONResponse(error_body(err, lang).model_dump(mode="json"), status_code=http_status(err),
                        headers=out or None)


__all__ = ["CODE_OF_STATUS", "HTTP_STATUS", "HTTPError", "RETRY_AFTER_S", "error_body", "error_response",
           "http_status", "json_safe", "language"]
