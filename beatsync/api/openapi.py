"""OpenAPI 3.1 description of the JSON API (served at ``/api/openapi.json``; docs/API.md in prose)."""

from __future__ import annotations

from functools import cache

_ID = {"type": "string", "format": "uuid", "description": "uuid4, canonical lowercase form"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(ref: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _task_param() -> dict:
    return {"name": "task_id", "in": "path", "required": True, "schema": _ID}


_BAD_ID = _error("Malformed id (`bad_id`)")
_UNKNOWN = _error("Unknown (`not_found`) or expired (`expired`) task")
_VIDEO = {"description": "The result video (206 for a Range request)",
          "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}}


@cache
def openapi_document() -> dict:
    status_props = {
        "task_id": _ID,
        "status": {"type": "string", "enum": ["pending", "processing", "success", "failed"]},
        "message": {"type": "string", "description": "human-readable stage"},
        "progress": {"type": "number", "minimum": 0, "maximum": 100, "description": "never goes down"},
        "stage": {"type": "string", "description": "machine-readable stage (queued, decode, align_modular, ...)"},
        "created": {"type": "number"}, "updated": {"type": "number"},
        "started": {"type": ["number", "null"]}, "finished": {"type": ["number", "null"]},
        "attempts": {"type": "integer"},
        "modular_output": {"type": ["string", "null"], "description": "download URL of the modular result"},
        "v2_output": {"type": ["string", "null"], "description": "download URL of the v2 result"},
        "download": {"type": "object", "properties": {"modular": {"type": ["string", "null"]},
                                                      "v2": {"type": ["string", "null"]}}},
        "error": {"type": "string", "description": "failed: what went wrong, in words a user understands"},
        "error_code": {"type": "string", "description": "failed: machine-readable (cancelled, time_limit, crashed, "
                                                        "song_not_found, ...)"},
        "inputs": {"type": "object"}, "options": {"type": "object"}, "warnings": {"type": "array"},
        "agreement": {"type": ["object", "null"]}, "trim": {"type": "object"},
        "variants": {"type": "object", "description": "per engine: alignment (offset_s, tempo_ratio, confidence, "
                                                      "segments, alternatives) and render details, or its error"},
    }
    options = {"type": "object", "properties": {
        "trim": {"type": "boolean", "default": True, "description": "cut the parts without music"},
        "margin_s": {"type": "number", "minimum": 0, "maximum": 30, "default": 1.0},
        "fill": {"type": "string", "enum": ["silence", "original"], "default": "silence"},
        "engines": {"type": "array", "items": {"type": "string", "enum": ["modular", "v2"]}}},
        "additionalProperties": False}
    task = [_task_param()]
    return {
        "openapi": "3.1.0",
        "info": {"title": "BeatSync API", "version": "1.0",
                 "description": "Put the clean song under a dance-class video, in sync. Upload both files, submit "
                                "a job, poll its status, download the two results."},
        "paths": {
            "/api/upload": {"post": {
                "summary": "Upload a class video or a song (streamed to disk, size-limited)",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"]}}}},
                "responses": {"201": _json("Upload", "Stored"), "400": _error("No file part / interrupted upload"),
                              "413": _error("Too large"), "415": _error("Not multipart, or a file type not accepted"),
                              "422": _error("Not readable media"), "507": _error("Disk full")}}},
            "/api/process": {"post": {
                "summary": "Queue a job",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["dance_file_id", "bgm_file_id"],
                    "properties": {"dance_file_id": _ID, "bgm_file_id": _ID, "options": options}}}}},
                "responses": {"202": _json("Submitted", "Queued"), "400": _error("Malformed request"),
                              "404": _error("Unknown upload"), "413": _error("Body over 64 KB"),
                              "415": _error("Not JSON"), "422": _error("No picture or no sound"),
                              "429": _error("Queue full (`busy`); see Retry-After"), "507": _error("Disk full")}}},
            "/api/status/{task_id}": {"get": {
                "summary": "Task status", "parameters": task,
                "responses": {"200": _json("Status", "Status object"), "400": _BAD_ID, "404": _UNKNOWN}}},
            "/api/download/{task_id}/{variant}": {"get": {
                "summary": "Download a result (HTTP Range supported)",
                "parameters": task + [{"name": "variant", "in": "path", "required": True,
                                       "schema": {"type": "string", "enum": ["modular", "v2"]}}],
                "responses": {"200": _VIDEO, "206": _VIDEO, "400": _BAD_ID, "404": _UNKNOWN,
                              "409": _error("Not finished successfully (`not_ready`)")}}},
            "/api/download/{task_id}": {"get": {
                "summary": "Download a result (the original client's form)",
                "parameters": task + [{"name": "version", "in": "query", "required": False,
                                       "schema": {"type": "string", "enum": ["modular", "v2"], "default": "modular"}}],
                "responses": {"200": _VIDEO, "206": _VIDEO, "400": _BAD_ID, "404": _UNKNOWN,
                              "409": _error("Not finished successfully (`not_ready`)")}}},
            "/api/cancel/{task_id}": {"post": {
                "summary": "Cancel a pending or running task", "parameters": task,
                "responses": {"200": _json("Status", "Status after cancelling"), "400": _BAD_ID, "404": _UNKNOWN,
                              "409": _error("Already finished")}}},
            "/api/rerun/{task_id}": {"post": {
                "summary": "Run a finished task again as a new task", "parameters": task,
                "responses": {"202": _json("Submitted", "Queued"), "400": _BAD_ID, "404": _UNKNOWN,
                              "409": _error("Still running"), "429": _error("Queue full")}}},
            "/api/correct/{task_id}": {"post": {
                "summary": "Re-render one variant with a correction (alternative placement and/or a nudge), "
                           "as a new task that skips the analysis",
                "parameters": task,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "variant": {"type": "string", "enum": ["modular", "v2"]},
                        "alternative": {"type": ["integer", "null"], "minimum": 0},
                        "nudge_ms": {"type": "number", "minimum": -10000, "maximum": 10000}}}}}},
                "responses": {"202": _json("Submitted", "Queued"), "400": _error("Bad correction"),
                              "404": _UNKNOWN, "409": _error("No such result to correct"),
                              "429": _error("Queue full")}}},
            "/api/beatgrid/{task_id}": {"get": {
                "summary": "Beat-grid data: class onset strength and beats (video time), song beats (song time)",
                "parameters": task,
                "responses": {"200": {"description": "Beat grid", "content": {"application/json": {}}},
                              "400": _BAD_ID, "404": _UNKNOWN, "409": _error("Not finished")}}},
            "/api/health": {"get": {
                "summary": "Workers alive, queue length, free disk",
                "responses": {"200": _json("Health", "OK"), "503": _json("Health", "Degraded")}}},
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error", "error_code"],
                      "properties": {"error": {"type": "string"}, "error_code": {"type": "string"},
                                     "error_params": {"type": "object"}}},
            "Upload": {"type": "object", "properties": {
                "file_id": _ID, "name": {"type": "string"}, "size": {"type": "integer"},
                "kind": {"type": "string", "enum": ["video", "audio"]}, "has_video": {"type": "boolean"},
                "has_audio": {"type": "boolean"}, "duration_s": {"type": "number"}}},
            "Submitted": {"type": "object", "required": ["task_id", "status", "message"], "properties": {
                "task_id": _ID, "status": {"type": "string", "enum": ["pending"]}, "message": {"type": "string"},
                "status_url": {"type": "string"}}},
            "Status": {"type": "object", "required": ["task_id", "status", "message", "progress"],
                       "properties": status_props},
            "Health": {"type": "object", "properties": {
                "status": {"type": "string", "enum": ["ok", "degraded"]}, "problems": {"type": "array"},
                "workers": {"type": "integer"}, "worker_threads": {"type": "integer"}, "queue": {"type": "integer"},
                "queue_max": {"type": "integer"}, "processing": {"type": "integer"},
                "free_disk_bytes": {"type": "integer"}}},
        }},
    }
