"""The OpenAPI 3.1 document of the JSON API (served at ``/api/openapi.json``; docs/API.md in prose),
generated, not written: the schemas are the contract's models (`beatsync.contract`) as pydantic
describes them (``components/schemas``: requests as they are validated, answers as they are
serialised), and the routes are the API's own table (`beatsync.api.OPERATIONS`), the same one its
router is built from. So a field added to a model, or a route added to the server, is in the
document at once, and a response that leaves the contract fails the schema test
(tests/test_openapi_schema.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from beatsync.contract import ENGINES, INPUT_ROLES, MEDIA_TYPES, ErrorBody

from .guard import OPEN_PATHS
from .responses import HTTP_STATUS

REF = "#/components/schemas/{model}"
VIDEO = "video/mp4"
ZIP = "application/zip"
#: the media types a task's input file is served with (`beatsync.contract.MEDIA_TYPES`)
INPUT_MEDIA: tuple[str, ...] = tuple(sorted(set(MEDIA_TYPES.values()) | {"application/octet-stream"}))
_ID = {"type": "string", "format": "uuid", "description": "uuid4, canonical lowercase form"}
_PARAMS = {  # path parameters by name
    "task_id": {"schema": _ID, "description": "the task's id"},
    "batch_id": {"schema": _ID, "description": "the batch's id"},
    "variant": {"schema": {"type": "string", "enum": list(ENGINES)}, "description": "which result"},
    "role": {"schema": {"type": "string", "enum": list(INPUT_ROLES)},
             "description": "which input: the class video (`dance`) or the song (`bgm`)"},
}


@dataclass(frozen=True)
class Reply:
    """One response of an operation: a JSON body of ``model`` (or of one of several models), a file
    (``media``: its media type, or several), or any JSON."""

    description: str
    model: type[BaseModel] | tuple[type[BaseModel], ...] | None = None
    media: str | tuple[str, ...] = "application/json"
    retry_after: bool = False  # sends a Retry-After header


def error(codes: str) -> Reply:
    """An error response (`ErrorBody`) whose ``error_code`` is one of ``codes`` (prose)."""
    return Reply(codes, ErrorBody, retry_after="busy" in codes or "store_unavailable" in codes)


@dataclass(frozen=True)
class Query:
    name: str
    schema: dict
    description: str = ""


@dataclass(frozen=True)
class Operation:
    """One route of the API: what the router serves and the document describes."""

    method: str  # "GET", "POST", "HEAD"
    path: str  # "/api/status/{task_id}"
    summary: str
    responses: dict[int, Reply]
    body: type[BaseModel] | str | None = None  # a model (JSON), "multipart" (one file part), or none
    query: tuple[Query, ...] = ()
    endpoint: object = field(default=None, compare=False)  # the Starlette endpoint
    #: takes the owner token of what it acts on (401 owner_required, 403 not_owner); "list": lists what the
    #: tokens presented made (401 owner_required only)
    owner: bool | str = False


#: answered by any route that reads or writes tasks, and by any route on a bug
COMMON = {400: error("`bad_path`: a `..` segment or a NUL in the path"),
          500: error("`internal`: a bug (the server logs it)"),
          503: error("`store_unavailable`: the task store (Redis, Celery backend) is out of reach; see Retry-After")}
#: answered by every route but health and this document when the deployment sets BEATSYNC_API_KEY
API_KEY = {401: error("`api_key_required` (no X-API-Key), `bad_api_key`: the deployment asks for an API key")}
#: answered by a route that changes something (POST)
CHANGES = {403: error("`cross_origin`: sent by a page of another site (Origin, Sec-Fetch-Site)")}
#: answered by a route that reads a request body
BODY = {408: error("`body_timeout`: no byte of the body arrived for BEATSYNC_BODY_TIMEOUT_S (default 60 s)")}
JSON_BODY = {400: error("`bad_json`: not JSON, nested more than 32 levels, a number out of range (NaN, "
                        "Infinity, 1e400)")}
#: answered by a route that takes an owner token
OWNER = {401: error("`owner_required`: no owner token (Authorization: Bearer, or X-BeatSync-Owner)"),
         403: error("`not_owner`: the token does not own it (a shared link is read-only)")}
SECURITY_SCHEMES = {
    "ownerBearer": {"type": "http", "scheme": "bearer", "description": "an `owner_token` from an upload or a "
                    "submission: `Authorization: Bearer <owner_token>`"},
    "ownerHeader": {"type": "apiKey", "in": "header", "name": "X-BeatSync-Owner",
                    "description": "the same owner token; several may be given, comma-separated"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "only when the deployment sets BEATSYNC_API_KEY: then every route but /api/health "
                              "and /api/openapi.json takes it"},
}


def error_codes(reply: Reply) -> list[str]:
    """The error codes an error reply names (in backticks in its description)."""
    return list(dict.fromkeys(re.findall(r"`([a-z_]+)`", reply.description))) if reply.model is ErrorBody else []


def _merge(*tables: dict[int, Reply]) -> dict[int, Reply]:
    """Replies by status, those of the same status put together (the later tables first)."""
    out: dict[int, Reply] = {}
    for table in tables:
        for code, reply in table.items():
            old = out.get(code)
            if old is None or old.model is not ErrorBody or reply.model is not ErrorBody:
                out[code] = reply
            else:
                out[code] = Reply(f"{reply.description}; {old.description}", ErrorBody,
                                  retry_after=old.retry_after or reply.retry_after)
    return out


def responses_of(op: Operation) -> dict[int, Reply]:
    """Every reply an operation may give: its own, and those every route, every route that changes
    something, reads a body, or takes an owner token gives."""
    tables: list[dict[int, Reply]] = [COMMON]
    if op.path not in OPEN_PATHS:
        tables.append(API_KEY)
    if op.method not in ("GET", "HEAD"):
        tables.append(CHANGES)
    if op.body is not None:
        tables.append(BODY)
    if isinstance(op.body, type):
        tables.append(JSON_BODY)
    if op.owner:
        tables.append(OWNER if op.owner is True else {401: OWNER[401]})
    tables.append(op.responses)
    return _merge(*tables)


def _path_params(path: str) -> list[dict]:
    return [{"name": n, "in": "path", "required": True, **_PARAMS[n]} for n in re.findall(r"\{(\w+)\}", path)]


def _content(reply: Reply, refs: dict) -> dict:
    if reply.media != "application/json":  # a file
        types = (reply.media,) if isinstance(reply.media, str) else reply.media
        return {t: {"schema": {"type": "string", "format": "binary"}} for t in types}
    if isinstance(reply.model, tuple):
        schema = {"oneOf": [refs[(m, "serialization")] for m in reply.model]}
    else:
        schema = refs[(reply.model, "serialization")] if reply.model is not None else {"type": "object"}
    return {reply.media: {"schema": schema}}


def _response(reply: Reply, refs: dict, *, head: bool) -> dict:
    out: dict = {"description": reply.description}
    codes = error_codes(reply)
    if codes:
        out["x-error-codes"] = codes
    if not head:
        out["content"] = _content(reply, refs)
    if reply.retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds to wait before trying again",
                                          "schema": {"type": "integer"}}}
    return out


def document(operations: Iterable[Operation], *, version: str = "1.0") -> dict:
    """The OpenAPI 3.1 document of ``operations``."""
    ops = list(operations)
    models: set[tuple[type[BaseModel], str]] = set()
    for op in ops:
        if isinstance(op.body, type):
            models.add((op.body, "validation"))
        for reply in responses_of(op).values():
            for model in reply.model if isinstance(reply.model, tuple) else (reply.model,):
                if model is not None:
                    models.add((model, "serialization"))
    ordered = sorted(models, key=lambda m: (m[0].__name__, m[1]))
    refs, top = models_json_schema(ordered, ref_template=REF)
    paths: dict[str, dict] = {}
    for op in ops:
        head = op.method == "HEAD"
        responses = responses_of(op)
        entry: dict = {
            "summary": op.summary,
            "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z]+', '_', op.path[5:]).strip('_')}",
            "responses": {str(k): _response(r, refs, head=head) for k, r in sorted(responses.items())},
        }
        params = _path_params(op.path) + [{"name": q.name, "in": "query", "required": False, "schema": q.schema,
                                            "description": q.description} for q in op.query]
        if params:
            entry["parameters"] = params
        if op.owner:
            entry["security"] = [{"ownerBearer": []}, {"ownerHeader": []}]
        if isinstance(op.body, type):
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": refs[(op.body, "validation")]}}}
        elif op.body == "multipart":
            entry["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary",
                                        "description": "the first file part is the upload (conventionally "
                                                       "named file)"}}}}}}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "BeatSync API", "version": version,
                 "description": "Put the clean song under a dance-class video, in sync. Upload both files, submit "
                                "a job, poll its status, download the two results (several class videos of one "
                                "routine with one song: a batch, with a ZIP of its results). Every error is an `ErrorBody` "
                                "(each error response lists its codes in `x-error-codes`, and the document's "
                                "`x-error-codes` gives every code's HTTP status); `message` and `error` "
                                "follow `Accept-Language` (or `?lang=`). Reading is open to anyone with a link; "
                                "processing an upload and cancel, rerun, correct take the `owner_token` the upload "
                                "or submission answered with. State-changing requests from another site's pages "
                                "are refused (`cross_origin`). A method a path does not take is 405 "
                                "`method_not_allowed` (with `Allow`); a path under /api/ that is no route, 404 "
                                "`not_found`. A deployment may close the API with an API key "
                                "(`X-API-Key`)."},
        "paths": paths,
        "components": {"schemas": top.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
        "x-error-codes": dict(sorted(HTTP_STATUS.items(), key=lambda kv: (kv[1], kv[0]))),
    }
