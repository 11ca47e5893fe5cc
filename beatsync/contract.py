"""The contract every layer shares: names, options, and the typed records a job's data travels in.

Defined here once, and imported everywhere else:

* the engines, which are also the result variants (`ENGINES`, `Engine`) and the names derived from
  them (`output_field`, `align_stage`, `render_stage`);
* the task statuses (`TaskStatus`), kinds (`TaskKind`) and stage codes (`STAGE_CODES`);
* `Options`: what a user can choose for a job, with its defaults, ranges and validation (the CLI's
  arguments, the API's ``options``, the upload page's widgets and the pipeline all read it);
* the records (pydantic models), in the order a job's data passes them:

  - `ProcessResult`: what `beatsync.pipeline.process` and `~beatsync.pipeline.render` return; it is
    also the final status object ``python -m beatsync process`` prints;
  - `JobOutcome`: what a job process hands its worker in ``result.json``: the fields a successful
    task record gets (outputs as paths inside the task folder);
  - `TaskRecord`: a task as the stores hold it. The stores keep it as plain JSON-able data and
    read only their scheduling fields (status, attempts, progress, ...); `TaskRequest` is the part
    the service writes when it creates a task;
  - `Status`: the public status object (`BeatSync.status`, ``GET /api/status/{task_id}``), built
    from a `TaskRecord` by `Status.from_record` and put in the reader's language by
    `beatsync.messages.localize_status`;
  - the JSON API's other bodies: `UploadInfo`, `ProcessRequest`, `CorrectRequest`, `Submitted`,
    `BeatGrid`, `Health`, `ErrorBody`.

The OpenAPI document (`beatsync.api.openapi`) is generated from these models, so what the server
sends and what it publishes cannot drift apart. The status object keeps the field names clients
were first promised (``task_id``, ``status``, ``message``, ``progress``, ``modular_output``,
``v2_output``, ``error``); every public model has a fixed shape: every field is always sent, null
(or empty) when it does not apply.

This module imports nothing of BeatSync but its errors, so that every layer may import it (the
engines under `beatsync.align` take their names from here).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    create_model,
    field_serializer,
    field_validator,
    model_validator,
)

from beatsync.errors import BeatSyncError

# ----------------------------------------------------------------------------- engines (= variants)

MODULAR = "modular"  # multi-feature fusion + sample-precise refinement
V2 = "v2"  # beat-grid alignment
#: the alignment engines; each gives one result variant (its own video), in this order
ENGINES: tuple[str, ...] = (MODULAR, V2)
#: the engine of ``python -m beatsync align`` and of a correction that names none
DEFAULT_ENGINE: str = ENGINES[0]
Engine = Literal[ENGINES]  # type: ignore[valid-type]  # (Literal of the tuple's values)


def output_field(engine: str) -> str:
    """The status object's field for a variant's result: ``modular_output``, ``v2_output``."""
    return f"{engine}_output"


def align_stage(engine: str) -> str:
    """The stage code of an engine's alignment (``align_modular``)."""
    return f"align_{engine}"


def render_stage(engine: str) -> str:
    """The stage code of writing an engine's video (``render_modular``)."""
    return f"render_{engine}"


def check_variant(name: object) -> str:
    """``name`` if it is a variant, else `BeatSyncError` ``bad_variant``."""
    if name not in ENGINES:
        raise BeatSyncError("bad_variant", f"{str(name)[:30]!r} is not a result name: use {' or '.join(ENGINES)}.")
    return str(name)


# ----------------------------------------------------------------------------- media types

DANCE_EXTS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")  # class videos
SONG_EXTS = (".mp3", ".m4a", ".aac", ".wav", ".flac", ".ogg", ".opus") + DANCE_EXTS  # songs: any video too
#: an input's role in a task: the class video, the song, or the one file of a beat analysis
Role = Literal["dance", "bgm", "media"]
#: the inputs a sync preview plays (``GET /api/task/{task_id}/input/{role}``)
INPUT_ROLES = ("dance", "bgm")
#: the media type an input is served with, by its extension
MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
               ".webm": "video/webm", ".avi": "video/x-msvideo", ".mp3": "audio/mpeg", ".m4a": "audio/mp4",
               ".aac": "audio/aac", ".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg",
               ".opus": "audio/ogg"}


def media_type(name: str) -> str:
    """The media type of a file by its extension (`MEDIA_TYPES`; ``application/octet-stream`` else)."""
    dot = name.rfind(".")
    return MEDIA_TYPES.get(name[dot:].lower() if dot >= 0 else "", "application/octet-stream")

# ----------------------------------------------------------------------------- tasks


class TaskStatus(StrEnum):
    """Where a task is: ``pending`` (queued) -> ``processing`` -> ``success`` | ``failed``. Cancelled
    and timed-out tasks end ``failed`` with their own ``error_code``."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"


# the same values as plain strings, as the stores keep them
PENDING, PROCESSING, SUCCESS, FAILED = (s.value for s in TaskStatus)
FINISHED = (SUCCESS, FAILED)


class TaskKind(StrEnum):
    """What a task does: ``process`` (analyse, align, render both variants), ``render`` (re-render one
    variant from a corrected alignment, skipping the analysis), ``beats`` (the beat explorer: one
    file's tempo and beats)."""

    PROCESS = "process"
    RENDER = "render"
    BEATS = "beats"


class Stage(StrEnum):
    """The stage codes that are not per engine (see `STAGE_CODES`)."""

    QUEUED = "queued"  # waiting for a worker
    RESTARTED = "restarted"  # waiting again: the server restarted while it ran
    RETRY = "retry"  # waiting again: its process died (stage_params: attempt, max)
    START = "start"  # claimed by a worker
    PROBE = "probe"
    DECODE = "decode"
    ANALYSE = "analyse"
    TRIM = "trim"
    RENDER = "render"  # writing a corrected video
    DONE = "done"
    CANCELLED = "cancelled"
    TIME_LIMIT = "time_limit"
    FAILED = "failed"


#: every stage a status can report, in the order a job passes them
STAGE_CODES: tuple[str, ...] = (
    *(s.value for s in (Stage.QUEUED, Stage.RESTARTED, Stage.RETRY, Stage.START, Stage.PROBE, Stage.DECODE,
                        Stage.ANALYSE)),
    *(align_stage(e) for e in ENGINES), Stage.TRIM.value, *(render_stage(e) for e in ENGINES),
    *(s.value for s in (Stage.RENDER, Stage.DONE, Stage.CANCELLED, Stage.TIME_LIMIT, Stage.FAILED)))
StageCode = Literal[STAGE_CODES]  # type: ignore[valid-type]

# ----------------------------------------------------------------------------- the JSON API's paths

API_PREFIX = "/api"


def status_url(task_id: str) -> str:
    return f"{API_PREFIX}/status/{task_id}"


def download_url(task_id: str, variant: str) -> str:
    return f"{API_PREFIX}/download/{task_id}/{variant}"


def input_url(task_id: str, role: str) -> str:
    """Where a task's input file is served (a sync preview plays it)."""
    return f"{API_PREFIX}/task/{task_id}/input/{role}"


def batch_url(batch_id: str) -> str:
    """A batch's status (its takes' tasks)."""
    return f"{API_PREFIX}/batch/{batch_id}"


def batch_zip_url(batch_id: str) -> str:
    """The ZIP of a batch's finished results."""
    return f"{API_PREFIX}/batch/{batch_id}/zip"


# ----------------------------------------------------------------------------- error codes

#: the error codes a client can meet (an `ErrorBody`'s or a failed `Status`'s ``error_code``), with what
#: each means; the OpenAPI document lists them (`ErrorBody`). ``error_params`` carries the values the
#: message refers to (``name``: the file as the user uploaded it).
ERROR_CODES: dict[str, str] = {
    # a request's form
    "bad_request": "malformed request (JSON, multipart, a missing field, an unknown upload `role`)",
    "bad_id": "an id that is not a canonical uuid4",
    "bad_option": "an option of the wrong type or out of range (`field`)",
    "too_many_takes": "more class videos in one batch than allowed (`limit`: 10, or the server's queue size if "
                      "smaller)",
    "bad_variant": "a result name other than the engines'",
    "unsupported_media_type": "an upload that is not multipart/form-data, a body that is not JSON",
    "unsupported_type": "a file type (extension) that is not accepted",
    "too_large": "a file or body over the limit (`limit`)",
    "incomplete_upload": "the upload's body ended before the whole file arrived",
    # an upload's file (checked by decoding a little of it at the start, the middle and the end)
    "empty_file": "the file is empty",
    "not_media": "not a sound or video file: nothing in it decodes",
    "truncated": "the file stops before its end, as an upload or a copy cut short: `playable_s` seconds of "
                 "it play (0: none), of the `duration_s` its header claims",
    "decode_failed": "the file's sound (or picture) does not decode (`name`; at upload `at_s`: where); in a "
                     "job, when the class video or the song turns out damaged",
    "no_streams": "neither sound nor picture",
    "no_audio": "no sound track (every file needs one)",
    "no_video": "no picture in the class video's slot (an upload with `role` dance, or a submission)",
    # tasks and files
    "not_found": "no such task (or API route)",
    "batch_not_found": "no such batch (several class videos submitted with one song)",
    "expired": "the task's (or the batch's) results were deleted after their time",
    "file_not_found": "an upload is unknown or expired",
    "not_ready": "the task has not finished successfully (nothing to download or correct yet); for a batch's "
                 "ZIP: none of its takes has a result yet",
    "no_output": "that engine could not place the song: no such result",
    "no_input": "the task's input file (`role`: dance, the class video, or bgm, the song) is not there (any "
                "more): nothing for a sync preview to play",
    "already_finished": "the task has already ended (cancel)",
    "not_finished": "the task is still running (rerun)",
    "busy": "the queue is full (see Retry-After)",
    "store_unavailable": "the task store (Redis) is out of reach (see Retry-After)",
    "disk_full": "the server's disk or quota is full",
    # a job's outcome (a failed task's error_code)
    "song_not_found": "the song is not heard in the class video",
    "too_short": "a sound shorter than the analysis needs",
    "silent": "a silent sound track",
    "encode_failed": "the result video could not be written from the class video (`name`: the class video, "
                     "`reason`)",
    "write_failed": "the result file could not be written (disk)",
    "cancelled": "cancelled by a user",
    "time_limit": "stopped at the time limit (`limit_s`)",
    "crashed": "the job's process (or its decoder or video writer) was killed on every attempt (`attempts`, "
               "`reason`: exit, signal, ffmpeg_signal or worker_lost; `signal`; `oom`: true only when the "
               "kernel reported an out-of-memory kill)",
    "internal": "a bug (the server logs it)",
}
#: the codes an upload's file itself can get (422)
UPLOAD_MEDIA_ERRORS: tuple[str, ...] = ("not_media", "truncated", "decode_failed", "empty_file", "no_streams",
                                        "no_audio", "no_video")


# ----------------------------------------------------------------------------- models: base classes


class Closed(BaseModel):
    """A record of fixed shape: unknown fields are refused, every field is always serialised (so the
    published schema lists all of them as required)."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class Open(BaseModel):
    """A record whose producer may add free-form fields (the engines' diagnostics); the fields named
    here are typed and always serialised."""

    model_config = ConfigDict(extra="allow", json_schema_serialization_defaults_required=True)


def parse(model: type[BaseModel], data: Any, *, code: str = "bad_request",
          codes: Mapping[str, str] | None = None, what: str = "request") -> Any:
    """``model`` validated from ``data``, or `BeatSyncError` with a one-line message.

    The error's code is ``codes[<first field of the error's location>]`` when given, else ``code``.
    """
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        err_code = (codes or {}).get(loc[0], code) if loc else code
        if err["type"] == "missing":
            missing = [".".join(map(str, x["loc"])) for x in e.errors() if x["type"] == "missing"]
            raise BeatSyncError(err_code, f"Missing field(s): {', '.join(missing)}.", missing=missing) from None
        if err["type"] == "extra_forbidden":
            unknown = sorted({str(x["loc"][-1]) for x in e.errors() if x["type"] == "extra_forbidden"})
            raise BeatSyncError(err_code, f"Unknown field(s) in the {what}: {', '.join(unknown)}.",
                                unknown=unknown) from None
        where = ".".join(loc) or what
        value = err.get("input")
        got = json.dumps(value, default=str)[:60]
        params = {"field": where}
        if len(loc) == 1 and (value is None or isinstance(value, bool | int | float | str)):
            params[loc[0]] = value  # (the value refused, under its field's name)
        raise BeatSyncError(err_code, f"Invalid {where}: {err['msg']} (got {got}).", **params) from None


# ----------------------------------------------------------------------------- options


FILLS = ("silence", "original")  # what plays where the song does not
MARGIN_MAX_S = 30.0
AUDIO_BITRATE = "192k"


class Options(Closed):
    """What a user can choose for a job (``options`` of ``POST /api/process``; ``process``'s CLI
    arguments; the upload page's widgets)."""

    model_config = ConfigDict(frozen=True)

    trim: StrictBool = Field(True, description="cut the parts of the video without music (keeping `margin_s`)")
    margin_s: Annotated[float, Field(ge=0.0, le=MARGIN_MAX_S, strict=True, allow_inf_nan=False)] = Field(
        1.0, description="seconds kept before the music starts and after it ends")
    fill: Literal[FILLS] = Field(  # type: ignore[valid-type]
        FILLS[0], description="what plays where the song does not: silence, or the video's original sound")
    engines: Annotated[tuple[Engine, ...], Field(min_length=1)] = Field(  # type: ignore[valid-type]
        ENGINES, description="which variants to make (also accepted as one comma-separated string)")
    audio_bitrate: Literal[AUDIO_BITRATE] = Field(  # type: ignore[valid-type]
        AUDIO_BITRATE, description="the AAC bitrate of the result's sound (fixed)",
        json_schema_extra={"readOnly": True})

    @field_validator("engines", mode="before")
    @classmethod
    def _engines_in(cls, v):
        if isinstance(v, str):  # "modular,v2"
            return tuple(e.strip() for e in v.split(",") if e.strip())
        return v

    @field_validator("engines")
    @classmethod
    def _engines_once(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("each engine at most once")
        return v

    #: the options a user sets (the others are fixed)
    CHOICES: ClassVar[tuple[str, ...]] = ("trim", "margin_s", "fill", "engines")

    @classmethod
    def parse(cls, options: Options | Mapping | None) -> Options:
        """Options from a client's object (None: the defaults); `BeatSyncError` ``bad_option``."""
        if isinstance(options, Options):
            return options
        if options is None:
            return cls()
        if not isinstance(options, Mapping):
            raise BeatSyncError("bad_option", "options must be an object such as {\"trim\": true}.")
        unknown = sorted(set(options) - set(cls.model_fields))
        if unknown:
            raise BeatSyncError("bad_option", f"Unknown option(s): {', '.join(map(str, unknown))}. "
                                f"Known: {', '.join(cls.CHOICES)}.", unknown=unknown)
        return parse(cls, dict(options), code="bad_option", what="options")

    from_dict = parse  # the name the pipeline's callers have used

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# ----------------------------------------------------------------------------- what the engines find


class Segment(Open):
    """A stretch of the video during which the song plays continuously: dance time ``t`` hears song
    time ``bgm_start_s + (t - dance_start_s) * rate``."""

    dance_start_s: float
    dance_end_s: float
    bgm_start_s: float
    rate: float
    mode: Literal["speed", "stretch"] = Field("speed", description="speed: resampled (the pitch moved); "
                                                                   "stretch: tempo changed, pitch kept")
    match: float = Field(1.0, description="share of the analysis windows inside the segment that agree with it")


class Alternative(Open):
    """Another plausible placement (a repeated chorus), with its score relative to the chosen one."""

    offset_s: float
    tempo_ratio: float
    score: float


class Notice(Closed):
    """A warning as a code and its parameters, for clients that show it in their own words."""

    code: str
    params: dict[str, Any] = {}


class Alignment(Open):
    """An engine's result (`beatsync.align.Alignment.to_dict`), times in seconds of the class video.

    ``offset_s``: the video time at which the song's time 0 lines up: the class recording at time
    ``t`` holds the song at ``(t - offset_s) * tempo_ratio``; negative when the recording started
    after the song began. ``tempo_ratio``: how fast the class played the song relative to the file
    (0.9 = 90 % speed). ``segments``: the stretches during which the song plays continuously (one
    in the common case; several when the music was stopped and restarted, played at another speed,
    or edited); ``offset_s`` and ``tempo_ratio`` describe the first in video time. ``confidence``
    0..1, calibrated so that a low value means "check this"; ``alternatives``: other plausible
    placements (a repeated chorus) with their scores. The engines may add free-form fields (their
    diagnostics).
    """

    engine: str
    offset_s: float
    tempo_ratio: float
    confidence: float
    segments: list[Segment]
    alternatives: list[Alternative] = []
    seconds: float = 0.0
    warnings: list[str] = []
    notices: list[Notice] = []


class Trim(Closed):
    """The part of the class video kept (``start_s`` .. ``end_s``), where the music plays in it, and the
    black head and tail found (seconds of video time)."""

    start_s: float
    end_s: float
    music_start_s: float
    music_end_s: float
    black_head_s: float
    black_tail_s: float

    @field_serializer("start_s", "end_s", "music_start_s", "music_end_s", "black_head_s", "black_tail_s")
    def _rounded(self, v: float) -> float:
        return round(v, 4)


class RenderInfo(Closed):
    """What was written for a variant: the cut (video time), the picture copied or re-encoded, the sound."""

    video: Literal["copy", "x264"]
    reason: str = Field(description="why the picture was re-encoded (empty when copied)")
    start_s: float
    end_s: float
    duration_s: float
    audio_codec: str
    audio_bitrate: str
    sample_rate: int
    channels: int


class Agreement(Closed):
    """Whether the two engines found the same placement (main offsets within 20 ms, rates within 0.3 %)."""

    agree: bool
    offset_difference_ms: float
    tempo_difference: float


class Variant(Closed):
    """One engine's result: its alignment, its own trim and what was rendered; or, when that engine
    could not place the song, its ``error``/``error_code``. ``same_as``: the other variant whose
    video this one shares (the same result within 1 ms), ``file``: how it was shared."""

    alignment: Alignment | None = None
    render: RenderInfo | None = None
    trim: Trim | None = None
    same_as: Engine | None = None  # type: ignore[valid-type]
    file: Literal["link", "copy"] | None = None
    error: str | None = None
    error_code: str | None = None


class VariantResult(Variant):
    """A variant as the pipeline returns it: with the path of its video (which never leaves the server)."""

    output: str | None = None


class Beats(Closed):
    """A recording's tempo and beat times (seconds)."""

    tempo_bpm: float
    beats_s: list[float]


class OnsetBeats(Beats):
    """Tempo and beats with the onset strength curve for plotting (scaled so its 99th percentile is 1):
    sample ``i`` is at ``onset_t0_s + i / frame_rate``."""

    onset: list[float]
    onset_t0_s: float
    frame_rate: float


class FileBeats(OnsetBeats):
    """The beat explorer's result for one file."""

    duration_s: float


class ClassBeats(OnsetBeats):
    """The class recording's side of the beat grid: its onset strength, its own tracked beats, and its
    onset peaks, against which the song's beats mapped through an alignment are matched
    (`beatsync.beatgrid.match_beats`)."""

    onsets_s: list[float] = Field([], description="the recording's onset peaks (video time, 6 ms frames "
                                                  "interpolated): where its sound starts sharply")


class BeatGrid(Closed):
    """What the beat-grid plots draw: the class recording's onset strength, beats and onset peaks (video
    time), the song's beats (song time, each on the song's own onset peak when one is within 40 ms; an
    alignment maps them onto the video)."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    class_: ClassBeats = Field(alias="class")
    song: Beats


class SongAnalysis(Closed):
    """How a job got its song's analysis (the decoded song, its features, envelopes and beats): computed,
    or reused from the song cache of the data directory (`beatsync.songcache`), which every job with
    the same song file (the same bytes, whatever the upload) shares. Of the jobs that need a song at
    once (a batch of takes with one song), exactly one computes it (``reused`` false), the others wait
    for it and reuse it."""

    key: str = Field(description="SHA-256 (hex) of the analysis version and the song file's bytes: the same "
                     "for every job with the same song", json_schema_extra={"pattern": "^[0-9a-f]{64}$"})
    reused: bool = Field(description="true: read from the song cache (another job computed it); false: this job "
                         "computed it")
    seconds: float = Field(description="how long this job took to get it, waiting for another job included")


# ----------------------------------------------------------------------------- the pipeline's result


class _ProcessResult(Closed):
    task_id: None = Field(None, description="a command-line run is not a queued task, so it has no id")
    status: Literal["success"] = "success"
    message: str = "Done"
    stage: Literal["done"] = "done"
    progress: float = 100.0
    variants: dict[Engine, VariantResult]  # type: ignore[valid-type]
    trim: Trim = Field(description="what all variants keep: the earliest start and the latest end of theirs")
    agreement: Agreement | None = None
    warnings: list[str] = Field([], description="English, one per notice")
    notices: list[Notice] = []
    options: Options
    timings: dict[str, tuple[float, float]] = Field({}, description="start and end (s) of each step")
    seconds: float
    song_analysis: SongAnalysis | None = Field(None, description="how the song's analysis was got; null when the "
                                               "job ran without a song cache (the command line)")

    @model_validator(mode="before")
    @classmethod
    def _outputs_from_variants(cls, data):
        """Each ``<variant>_output`` is the path of that variant's video (None if it has none)."""
        if isinstance(data, dict):
            variants = data.get("variants") or {}
            data = {**data}
            for e in ENGINES:
                v = variants.get(e)
                path = getattr(v, "output", None) if not isinstance(v, dict) else v.get("output")
                data[output_field(e)] = path
        return data

    def outputs(self) -> dict[str, str]:
        """variant -> path of its video."""
        return {e: v.output for e, v in self.variants.items() if v.output}


ProcessResult = create_model(
    "ProcessResult", __base__=_ProcessResult, __doc__=(
        "One job's result as `beatsync.pipeline.process` (both variants) and `beatsync.pipeline.render` "
        "(one corrected variant) return it; `python -m beatsync process` prints it as the final status "
        "object (``<variant>_output``: the video's path)."),
    **{output_field(e): (str | None, Field(None, description=f"path of the {e} video")) for e in ENGINES})


# ----------------------------------------------------------------------------- tasks: what the stores hold


class InputInfo(Closed):
    """An input of a task as the user knows it."""

    name: str
    size: int
    duration_s: float | None = None


class StoredInput(InputInfo):
    """... and where the task's copy of it is (relative to the task folder)."""

    file: str


class RenderRequest(Closed):
    """A ``render`` task's work: the variant to write and the (corrected) alignment to write it with."""

    variant: Engine  # type: ignore[valid-type]
    alignment: Alignment


class Correction(Closed):
    """What a ``render`` task corrects: which task's variant, how (an alternative placement and/or a nudge)."""

    source_task: str
    variant: Engine  # type: ignore[valid-type]
    alternative: int | None = None
    nudge_ms: float = 0.0


class Preview(Closed):
    """What a sync preview plays (the class video, muted, with the song laid along an alignment in the
    browser), known long before the videos are written: the job publishes each alignment as soon as
    it has it."""

    quick: Alignment | None = Field(None, description="a first estimate made right after the analysis (engine "
                                    "`quick`: one line at normal speed over where the music is heard); null when "
                                    "it was not clear enough (then only the methods' alignments come)")
    variants: dict[Engine, Alignment] = Field({}, description="each method's alignment, as soon as it is "
                                              "known")  # type: ignore[valid-type]
    frame_rate: float | None = Field(None, description="the class video's frames per second")


class Estimate(Closed):
    """A running job's estimate of its end, made when it enters a phase of its work (from the video's
    length and the speeds measured on earlier jobs, `beatsync.estimate`)."""

    finish_at: float = Field(description="when the job should end (epoch seconds)")
    after_s: float = Field(description="seconds of work after the current phase")


class JobOutcome(Closed):
    """What a job process hands its worker (``result.json``): the fields its successful record gets.
    ``outputs`` and ``beatgrid`` are paths inside the task folder."""

    outputs: dict[Engine, str] = {}  # type: ignore[valid-type]
    beatgrid: str | None = None
    beats: FileBeats | None = None
    variants: dict[Engine, Variant] = {}  # type: ignore[valid-type]
    trim: Trim | None = None
    agreement: Agreement | None = None
    warnings: list[str] = []
    notices: list[Notice] = []
    seconds: float | None = None
    timings: dict[str, tuple[float, float]] = {}
    song_analysis: SongAnalysis | None = None

    @classmethod
    def from_result(cls, result: _ProcessResult, *, rel, beatgrid: str | None = None) -> JobOutcome:
        """The outcome of a pipeline result; ``rel(path)`` makes its paths relative to the task folder
        (the server's paths stay on the server)."""
        return cls(outputs={e: rel(p) for e, p in result.outputs().items()}, beatgrid=beatgrid,
                   variants={e: Variant(**v.model_dump(exclude={"output"})) for e, v in result.variants.items()},
                   trim=result.trim, agreement=result.agreement, warnings=result.warnings, notices=result.notices,
                   seconds=result.seconds, timings=result.timings, song_analysis=result.song_analysis)


class TaskRequest(Closed):
    """What the service writes when it creates a task."""

    task_id: str
    kind: TaskKind = TaskKind.PROCESS
    inputs: dict[Role, StoredInput]  # type: ignore[valid-type]
    options: Options = Options()
    rerun_of: str | None = None
    render: RenderRequest | None = None
    correction: Correction | None = None
    corrections: list[str] = Field([], description="the corrected renders made from this task")
    owner_hash: str | None = Field(None, description="sha256 (hex) of the owner token that may cancel, rerun and "
                                   "correct the task; private: never in a public answer (None: nobody may)")
    batch_id: str | None = Field(None, description="the batch this task is a take of (several class videos "
                                 "submitted with one song)")


class TaskRecord(TaskRequest, JobOutcome):
    """A task as the stores hold it: the request, the scheduling state the task system keeps (its
    own bookkeeping, such as the attempts' history, passes through untyped), the outcome."""

    model_config = ConfigDict(extra="allow")

    status: TaskStatus
    progress: float = 0.0
    stage: str = Stage.QUEUED.value
    stage_params: dict[str, Any] = {}
    message: str = ""
    created: float
    updated: float
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    error: str | None = None
    error_code: str | None = None
    error_params: dict[str, Any] = {}
    preview: Preview | None = None
    estimate: Estimate | None = None


class _Upload(Closed):
    file_id: str = Field(json_schema_extra={"format": "uuid"})
    name: str
    size: int
    kind: Literal["video", "audio"]
    has_video: bool
    has_audio: bool
    duration_s: float


#: what an owner token looks like (``secrets.token_urlsafe``: 22 characters are 128 bits)
OWNER_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{22,128}$"
_OWNER_TOKEN = Field(description="the secret that controls what was made with it (processing an upload; cancel, "
                     "rerun, correct a task): send it as `Authorization: Bearer <token>` or `X-BeatSync-Owner`. "
                     "The one given with the request, else a new one",
                     json_schema_extra={"pattern": OWNER_TOKEN_PATTERN})


class UploadInfo(_Upload):
    """An upload (``POST /api/upload``'s answer)."""

    owner_token: str = _OWNER_TOKEN


class StoredUpload(_Upload):
    """An upload as the store holds it (its owner as a hash, never the token)."""

    file: str = Field(description="the file's name in its upload folder")
    created: float
    owner_hash: str | None = None


# ----------------------------------------------------------------------------- the public status object


Downloads = create_model(
    "Downloads", __base__=Closed, __doc__="Each variant's result (the same as its `<variant>_output`).",
    **{e: (str | None, None) for e in ENGINES})


class _Status(Closed):
    task_id: str = Field(json_schema_extra={"format": "uuid"})
    status: TaskStatus
    message: str = Field(description="the stage in the reader's language")
    stage: StageCode = Field(description="machine-readable stage")  # type: ignore[valid-type]
    stage_params: dict[str, Any] = Field({}, description="values the stage's message refers to")
    created: float
    updated: float
    started: float | None
    finished: float | None
    attempts: int
    rerun_of: str | None = Field(description="the task this one runs again (with the same inputs, or with its "
                                  "class video and another song)")
    batch_id: str | None = Field(None, description="the batch this task is a take of (`GET /api/batch/{batch_id}`)",
                                 json_schema_extra={"format": "uuid"})
    kind: TaskKind
    correction: Correction | None = Field(None, description="kind render: what it corrects")
    progress: Annotated[float, Field(ge=0, le=100)] = Field(description="0..100, never goes down")
    error: str | None = Field(None, description="failed: what went wrong, in the reader's language")
    error_code: str | None = Field(None, description="failed: machine-readable (cancelled, time_limit, crashed, "
                                                     "song_not_found, decode_failed, encode_failed, ...: the "
                                                     "codes of `ErrorBody`)")
    error_params: dict[str, Any] = Field({}, description="failed: values the error refers to")
    queue_length: int | None = Field(None, description="pending: tasks waiting in the queue")
    cancel_requested: bool = Field(False, description="a cancellation is on its way to the running job")
    inputs: dict[Role, InputInfo]  # type: ignore[valid-type]
    corrections: list[str] = Field([], description="ids of the corrected renders made from this task")
    options: Options
    warnings: list[str] = Field([], description="English, one per notice")
    notices: list[Notice] = []
    warnings_localized: list[str] = Field([], description="the notices in the reader's language")
    agreement: Agreement | None = None
    trim: Trim | None = Field(None, description="the union of the variants' trims")
    variants: dict[Engine, Variant] = {}  # type: ignore[valid-type]
    seconds: float | None = Field(None, description="how long the job took")
    song_analysis: SongAnalysis | None = Field(None, description="whether the job computed its song's analysis or "
                                               "reused another job's: there as soon as the job has the song "
                                               "(also when it fails later); null before, for a beat analysis, "
                                               "and for a correction that decoded the song again")
    preview: Preview = Field(Preview(), description="the alignments known so far, for a sync preview: while a "
                             "process job runs, a first estimate and each method's alignment as soon as it is "
                             "known; a correction's from the start")
    eta_s: float | None = Field(None, description="estimated seconds left: while processing, from the job's "
                                "own estimate; while pending, the run time once a worker takes it")
    beats: FileBeats | None = Field(None, description="kind beats: the file's tempo and beats")
    download: Downloads  # type: ignore[valid-type]
    status_url: str
    language: str = Field("en", description="the language of message, error and warnings_localized")

    @classmethod
    def from_record(cls, rec: TaskRecord, *, outputs: Mapping[str, str], queue_length: int | None = None,
                    now: float | None = None, run_time_s: float | None = None) -> Status:
        """The status of ``rec`` (``message`` and ``error`` as recorded, in English): ``outputs`` gives
        each finished variant's file path or download URL; ``now`` (epoch s) the time the estimate of
        a running job is read at; ``run_time_s`` the job's estimated run time (a pending job's
        ``eta_s``, and a running one's until its job process has made its own estimate)."""
        refs = {e: (outputs.get(e) if rec.status == SUCCESS else None) for e in ENGINES}
        failed = rec.status == FAILED
        now = time.time() if now is None else now
        eta = None
        if rec.status == PROCESSING and rec.estimate is not None:
            eta = round(max(rec.estimate.finish_at - now, rec.estimate.after_s, 0.0), 1)
        elif rec.status == PROCESSING and run_time_s is not None:
            eta = round(max(run_time_s - (now - (rec.started or now)), 0.0), 1)
        elif rec.status == PENDING:
            eta = run_time_s
        return cls(
            task_id=rec.task_id, status=rec.status, message=rec.message, stage=rec.stage,
            stage_params=rec.stage_params, created=rec.created, updated=rec.updated, started=rec.started,
            finished=rec.finished, attempts=rec.attempts, rerun_of=rec.rerun_of, batch_id=rec.batch_id, kind=rec.kind,
            correction=rec.correction, progress=round(rec.progress, 1),
            error=rec.error if failed else None, error_code=rec.error_code if failed else None,
            error_params=rec.error_params if failed else {},
            queue_length=queue_length if rec.status == PENDING else None,
            cancel_requested=rec.cancel_requested and rec.status not in FINISHED,
            inputs={role: InputInfo(name=i.name, size=i.size, duration_s=i.duration_s) for role, i in rec.inputs.items()},
            corrections=rec.corrections, options=rec.options, warnings=rec.warnings, notices=rec.notices,
            agreement=rec.agreement, trim=rec.trim, variants=rec.variants, seconds=rec.seconds, beats=rec.beats,
            song_analysis=rec.song_analysis,
            preview=preview_of(rec), eta_s=eta, download=Downloads(**refs), status_url=status_url(rec.task_id),
            **{output_field(e): ref for e, ref in refs.items()})

    def output(self, variant: str) -> str | None:
        """A variant's file path or download URL (None when it has none)."""
        return getattr(self, output_field(variant))


def preview_of(rec: TaskRecord) -> Preview:
    """A task's preview: what its job published; a finished job's own alignments (the job may have
    finished before a publication reached the store); a correction's alignment from the start."""
    p = rec.preview or Preview()
    if rec.kind == TaskKind.RENDER and rec.render is not None and rec.render.variant not in p.variants:
        p = p.model_copy(update={"variants": {**p.variants, rec.render.variant: rec.render.alignment}})
    if rec.status == SUCCESS and rec.kind == TaskKind.PROCESS:
        done = {e: v.alignment for e, v in rec.variants.items() if v.alignment is not None}
        p = p.model_copy(update={"variants": {**p.variants, **done}})
    return p


Status = create_model(
    "Status", __base__=_Status, __doc__=(
        "A task's status object. ``<variant>_output``: the result's download URL (API) or file path "
        "(Python API), null until it succeeds or when that variant has no result."),
    **{output_field(e): (str | None, Field(description=f"the {e} result")) for e in ENGINES})


# ----------------------------------------------------------------------------- the JSON API's other bodies


#: the most class videos one batch may hold (`ProcessRequest.dance_file_ids`); a server whose queue is
#: smaller takes at most its queue's size
MAX_TAKES = 10


def check_takes(file_ids: list[str], *, limit: int = MAX_TAKES) -> list[str]:
    """A batch's class-video uploads as given, if there are 1 to ``limit`` of them, each once; else
    `BeatSyncError` ``bad_request`` (none, one listed twice) or ``too_many_takes`` (``limit``)."""
    if not file_ids:
        raise BeatSyncError("bad_request", "dance_file_ids lists no class video: give one or more uploads.",
                            field="dance_file_ids")
    if len(file_ids) > limit:
        raise BeatSyncError("too_many_takes", f"{len(file_ids)} class videos were sent; one batch takes at most "
                            f"{limit}.", limit=limit, count=len(file_ids))
    seen = set()
    for i, fid in enumerate(file_ids):
        if fid in seen:
            raise BeatSyncError("bad_request", f"dance_file_ids lists the same upload twice (take {i + 1}).",
                                field="dance_file_ids", take=i + 1, takes=len(file_ids))
        seen.add(fid)
    return list(file_ids)


_UUID = {"format": "uuid"}


class ProcessRequest(BaseModel):
    """``POST /api/process``: the class video's upload (``dance_file_id``), or several class videos
    of one routine (``dance_file_ids``: a batch, one task per take), the song's upload, and the
    options (an unknown field is refused: a misspelt ``options`` must not silently give the
    defaults)."""

    model_config = ConfigDict(extra="forbid")

    dance_file_id: str | None = Field(None, description="the class video's upload (or `dance_file_ids`, not both)",
                                      json_schema_extra=_UUID)
    dance_file_ids: list[Annotated[str, Field(json_schema_extra=_UUID)]] | None = Field(
        None, description=f"several class videos of the same routine with the one song (groups filmed one after "
        f"the other): one task per video, answered as a batch; 1 to {MAX_TAKES}, each once",
        json_schema_extra={"minItems": 1, "maxItems": MAX_TAKES})
    bgm_file_id: str = Field(description="the song's upload", json_schema_extra=_UUID)
    options: Options | None = None

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, v):
        return Options.parse(v)

    @model_validator(mode="after")
    def _one_way(self) -> ProcessRequest:
        """Exactly one of ``dance_file_id`` and ``dance_file_ids`` (`BeatSyncError`, so that the API
        answers with its own code and words)."""
        if self.dance_file_id is not None and self.dance_file_ids is not None:
            raise BeatSyncError("bad_request", "Send either dance_file_id (one class video) or dance_file_ids "
                                "(several), not both.", field="dance_file_ids")
        if self.dance_file_id is None and self.dance_file_ids is None:
            raise BeatSyncError("bad_request", "Missing field(s): dance_file_id (or dance_file_ids).",
                                missing=["dance_file_id"])
        if self.dance_file_ids is not None:
            check_takes(self.dance_file_ids)
        return self


class CorrectRequest(BaseModel):
    """``POST /api/correct/{task_id}``: re-render a variant with another placement and/or a nudge (an
    unknown field, such as a misspelt ``nudge_ms``, is refused)."""

    model_config = ConfigDict(extra="forbid")

    variant: Engine = DEFAULT_ENGINE  # type: ignore[valid-type]
    alternative: Annotated[int, Field(ge=0, strict=True)] | None = Field(
        None, description="index into the variant's alignment.alternatives")
    nudge_ms: Annotated[float, Field(ge=-10_000, le=10_000, strict=True, allow_inf_nan=False)] = Field(
        0.0, description="move the song this many ms later in the video")

    #: error codes by field
    CODES: ClassVar[dict[str, str]] = {"variant": "bad_variant", "alternative": "bad_option", "nudge_ms": "bad_option"}


class Submitted(Closed):
    """A new task's answer (``POST /api/process``, ``/rerun``, ``/correct``)."""

    task_id: str = Field(json_schema_extra={"format": "uuid"})
    status: Literal["pending"] = "pending"
    message: str
    status_url: str
    owner_token: str = _OWNER_TOKEN


class TaskList(Closed):
    """The tasks an owner token made (``GET /api/tasks``), newest first: a client's "My jobs"."""

    tasks: list[Status] = Field(description="their status objects, newest first (expired ones are left out)")


class BatchSubmitted(Closed):
    """A batch's answer (``POST /api/process`` with ``dance_file_ids``): one pending task per class
    video, in the order given."""

    batch_id: str = Field(json_schema_extra=_UUID)
    task_ids: list[Annotated[str, Field(json_schema_extra=_UUID)]]
    status: Literal["pending"] = "pending"
    message: str
    batch_url: str = Field(description="the batch's status: `GET /api/batch/{batch_id}`")
    status_urls: list[str] = Field(description="each task's status, in the order of `task_ids`")
    owner_token: str = _OWNER_TOKEN


class BatchRecord(Closed):
    """A batch as the stores hold it (its owner as a hash, never the token). It is removed once all its
    tasks have expired."""

    batch_id: str
    task_ids: list[str]
    created: float
    owner_hash: str | None = None
    song: str = Field(description="the song's name, as uploaded")


class BatchFile(Closed):
    """One file of a batch's ZIP: a take's result."""

    name: str = Field(description="its name in the ZIP: the class video's name and the method "
                      "(`group2_modular.mp4`), unique in the ZIP")
    task_id: str = Field(json_schema_extra=_UUID)
    variant: Engine  # type: ignore[valid-type]


class BatchStatus(Closed):
    """A batch's status (``GET /api/batch/{batch_id}``): each take's status object, in the order the
    class videos were given, and what its ZIP holds now."""

    batch_id: str = Field(json_schema_extra=_UUID)
    created: float
    song: str = Field(description="the song's name, as uploaded")
    task_ids: list[Annotated[str, Field(json_schema_extra=_UUID)]] = Field(
        description="every take's task, in order (an expired one is in `zip_missing` and not in `tasks`)")
    tasks: list[Status] = Field(description="each take's status object (in the reader's language)")  # type: ignore[valid-type]
    counts: dict[TaskStatus, int] = Field(description="how many takes are in each status")
    finished: bool = Field(description="every take has ended (success or failed)")
    progress: Annotated[float, Field(ge=0, le=100)] = Field(description="the takes' mean progress")
    zip_url: str = Field(description="`GET` it for a ZIP of the finished results (409 `not_ready` while none is)")
    zip_files: list[BatchFile] = Field(description="what the ZIP holds now")
    zip_missing: list[Annotated[str, Field(json_schema_extra=_UUID)]] = Field(
        description="the takes with no result in the ZIP (yet): pending, processing, failed or expired")
    batch_url: str
    language: str = Field("en", description="the language of the tasks' messages and errors")


class Health(Closed):
    """Workers alive, queue, free disk. The counts are null when the task store cannot be reached."""

    status: Literal["ok", "degraded"]
    problems: list[str] = Field([], description="why it is degraded, in words")
    problem_codes: list[Literal["store_unavailable", "disk_low", "over_quota", "no_worker"]] = Field(
        [], description="the same problems as stable codes")
    backend: str
    free_disk_bytes: int
    queue_max: int
    workers: int | None = None
    worker_threads: int | None = None
    queue: int | None = None
    processing: int | None = None


class ErrorBody(Closed):
    """Every error the API answers: ``error`` in the reader's language, ``error_code`` (stable) and the
    values the message refers to."""

    error: str
    error_code: str = Field(
        description="stable, machine-readable: " + "; ".join(f"`{c}`: {m}" for c, m in ERROR_CODES.items()),
        json_schema_extra={"examples": list(ERROR_CODES)})
    error_params: dict[str, Any] = {}


__all__ = [
    "API_PREFIX", "BatchFile", "BatchRecord", "BatchStatus", "BatchSubmitted", "DANCE_EXTS", "DEFAULT_ENGINE", "ENGINES", "ERROR_CODES", "FAILED", "FILLS", "FINISHED",
    "INPUT_ROLES", "MAX_TAKES", "MEDIA_TYPES", "MODULAR", "PENDING",
    "PROCESSING", "SONG_EXTS", "V2", "STAGE_CODES", "SUCCESS", "UPLOAD_MEDIA_ERRORS", "Agreement", "Alignment",
    "Alternative", "BeatGrid", "Beats", "ClassBeats", "Correction",
    "CorrectRequest", "Downloads", "Engine", "ErrorBody", "Estimate", "FileBeats", "Health", "InputInfo",
    "JobOutcome", "Notice", "OWNER_TOKEN_PATTERN", "OnsetBeats", "Options", "Preview", "ProcessRequest",
    "ProcessResult", "RenderInfo", "RenderRequest", "Role", "Segment", "SongAnalysis",
    "Stage", "StageCode", "Status", "StoredInput", "StoredUpload", "Submitted", "TaskKind", "TaskList", "TaskRecord",
    "TaskRequest", "TaskStatus", "Trim", "UploadInfo", "Variant", "VariantResult", "align_stage", "batch_url",
    "batch_zip_url", "check_takes", "check_variant",
    "download_url", "input_url", "media_type", "output_field", "parse", "preview_of", "render_stage", "status_url",
]
