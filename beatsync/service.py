"""The product's job service: uploads, submissions, status, downloads, cancel, re-run, health.

The one place the UI (`views/`, `ui/`) and the JSON API (`beatsync.api`) go through, over the task
store and workers of `beatsync.tasks`. Uploads are validated (type, size, free disk, media whose
sound decodes at its start, middle and end and whose data reaches its claimed end) before they
are kept; a submission is checked (the class video has picture and sound, the
song has sound, the options are valid) before it is queued, so a bad input is refused at once
with a specific message instead of failing later in a worker. Every job, the beat explorer's
included, runs in a worker, never in the web process.

What it takes and gives are the contract's models (`beatsync.contract`): `Options`, `UploadInfo`,
`Submitted`, `Status` (built from the stored `TaskRecord` by `Status.from_record`, in the reader's
language), `BeatGrid`, `Health`; for a batch (several class videos of one routine with one song,
`submit_batch`: one task per video), `BatchSubmitted`, `BatchStatus` and the ZIP of its results
(`batch_zip`).

Control is owned: an upload answers with an owner token (`beatsync.owner`), and processing it, or
cancelling, rerunning or correcting a task, takes that token (``owner=``); reading a status, a
result, a download or a task's input file (`input_file`, what a sync preview plays) takes none. Uploads are counted against the size limit and the data
directory's quota as their bytes arrive.

`get_service()` is the process-wide instance; its workers start once per process
(`start_workers`), however many browser sessions or script reruns ask for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path

from beatsync import estimate, media, messages
from beatsync import owner as _owner
from beatsync.align import Alignment
from beatsync.contract import (
    DANCE_EXTS,
    ENGINES,
    FINISHED,
    INPUT_ROLES,
    MAX_TAKES,
    PENDING,
    PROCESSING,
    SONG_EXTS,
    SUCCESS,
    BatchFile,
    BatchRecord,
    BatchStatus,
    BatchSubmitted,
    BeatGrid,
    Correction,
    CorrectRequest,
    Health,
    InputInfo,
    Options,
    RenderRequest,
    Role,
    Status,
    StoredInput,
    StoredUpload,
    Submitted,
    TaskKind,
    TaskRecord,
    TaskRequest,
    TaskStatus,
    UploadInfo,
    batch_url,
    batch_zip_url,
    check_takes,
    check_variant,
    download_url,
    media_type,
    parse,
    status_url,
)
from beatsync.errors import BeatSyncError, MediaError
from beatsync.pipeline import check_extension
from beatsync.tasks import Runner, Settings, Store, check_id, new_id, open_runner, open_store, worker_command

OUTPUT_SPACE_FACTOR = 2.2  # two output videos, each about the class video's size
_DISK_CHECK_EVERY = 64 * 2**20  # free disk is looked at again after this many bytes of an upload
MAX_LISTED = 200  # tasks listed per owner ("My jobs")
MAX_NAME_CHARS = 200  # an upload's name is cut to this length, keeping its extension
_MAX_EXT_CHARS = 16


def _safe_stem(name: str) -> str:
    """A file name's stem fit for a download name (no path, no control characters)."""
    stem = Path(name.replace("\\", "/")).name.rsplit(".", 1)[0] if name else ""
    stem = "".join(c for c in stem if c.isprintable() and c not in '/\\:*?"<>|').strip(" .")
    return stem[:120] or "video"


def correction_suffix(rec: TaskRecord) -> str:
    """What a corrected result's file name says it did: ``_alt2`` (an alternative placement),
    ``_+40ms`` (a nudge), both, or ``_corrected``; nothing for an original result."""
    if rec.kind != TaskKind.RENDER:
        return ""
    c = rec.correction
    parts = []
    if c is not None and c.alternative is not None:
        parts.append(f"alt{c.alternative + 1}")
    if c is not None and round(c.nudge_ms):
        parts.append(f"{round(c.nudge_ms):+d}ms")
    return "_" + "_".join(parts or ["corrected"])


def upload_name(filename: str | None) -> str:
    """The name an upload is known by: the file name without any folder, without control characters,
    at most `MAX_NAME_CHARS` long (a longer one keeps its start and its extension)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    if len(name) <= MAX_NAME_CHARS:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > _MAX_EXT_CHARS:
        return name[:MAX_NAME_CHARS]
    return stem[:MAX_NAME_CHARS - len(ext) - 2].rstrip() + "~." + ext


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n < 2**30 else f"{n / 2**30:.1f} GB"


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


#: what an upload is for (``role``): the class video needs a picture; every upload needs sound
UPLOAD_ROLES = ("dance", "bgm", "media")


class Upload:
    """An upload being written into the store: ``write(chunk)`` as bytes arrive, then ``commit()``.

    Every chunk is counted as it arrives: past the per-upload limit (``too_large``) or the data
    directory's quota (``quota_exceeded``) the upload stops at once, whether its size was announced
    or not; free disk is looked at again every 64 MB. ``commit`` probes the file and checks that it
    plays by decoding a little of its sound at the start, the middle and the end (`media.verify`:
    seeks, never reads it through) and keeps it only if it is sound (and, for the class video's slot,
    ``role="dance"``, a picture too). Any failure removes the partial file.

    ``owner``: the owner token the client already has (the upload is then owned by it), or None for
    a new one; `token` is the one the upload answers with.
    """

    def __init__(self, service: BeatSync, filename: str, *, expected_size: int | None = None,
                 owner: str | None = None, role: str | None = None):
        self.service = service
        if role is not None and role not in UPLOAD_ROLES:
            raise BeatSyncError("bad_request", f"role must be one of {', '.join(UPLOAD_ROLES)}.", field="role")
        self.role = role
        self.name = upload_name(filename)
        self.ext = Path(self.name).suffix.lower()
        self.token = _owner.check_token(owner) if owner is not None else _owner.new_token()
        if self.ext not in SONG_EXTS:  # SONG_EXTS includes every video type
            raise MediaError("unsupported_type",
                             f"{self.name or 'The file'}: accepted types are {', '.join(e[1:] for e in SONG_EXTS)}.",
                             name=self.name)
        limit = service.settings.max_upload_bytes
        if expected_size is not None and expected_size > limit:
            raise BeatSyncError("too_large", f"{self.name} is {_mb(expected_size)}; the limit is {_mb(limit)}.",
                                name=self.name, size=expected_size, limit=limit)
        self._quota = service.settings.quota_bytes
        self._used_before = service.disk_used() if self._quota else 0  # the data dir without this upload
        service.check_disk(expected_size or 0, upload=True, used=self._used_before if self._quota else None)
        self.file_id = new_id()
        self.folder = service.store.upload_dir(self.file_id)
        self.folder.mkdir(parents=True)
        self.path = self.folder / f"data{self.ext}"
        self._f = open(self.path, "wb")  # noqa: SIM115 - closed in commit/abort
        self.size = 0
        self._next_disk_check = _DISK_CHECK_EVERY
        # the quota is counted against what was on disk when the upload began, re-read every so often
        # (so that uploads running at the same time, each under the quota alone, are seen together)
        self._quota_step = max(2**20, min(16 * 2**20, self._quota // 8)) if self._quota else 0
        self._next_quota_check = self._quota_step

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        limit = self.service.settings.max_upload_bytes
        try:
            if self.size > limit:
                raise BeatSyncError("too_large", f"{self.name} is larger than the {_mb(limit)} limit.",
                                    name=self.name, limit=limit)
            if self._quota:
                if self.size >= self._next_quota_check:
                    self._next_quota_check = self.size + self._quota_step
                    self._used_before = max(0, self.service.disk_used() - self._f.tell())
                if self._used_before + self.size > self._quota:
                    raise self.service.quota_error()
            if self.size >= self._next_disk_check:
                self._next_disk_check += _DISK_CHECK_EVERY
                self.service.check_disk(0, upload=True)
            self._f.write(chunk)
        except BaseException:
            self.abort()
            raise

    def commit(self) -> UploadInfo:
        """Probe and verify the file (`check`), and keep it; returns its public description
        (``file_id``, ``kind``, ``owner_token``...)."""
        self._f.close()
        try:
            info, verified = self.check()
        except BeatSyncError as e:
            self.abort()
            raise e.renamed({self.path.name: self.name}) from None
        except BaseException:
            self.abort()
            raise
        meta = StoredUpload(file_id=self.file_id, name=self.name, size=self.size, file=self.path.name,
                            kind="video" if info.video is not None else "audio", has_video=info.video is not None,
                            has_audio=info.audio is not None, duration_s=round(verified.duration_s, 3),
                            created=time.time(), owner_hash=_owner.token_hash(self.token))
        try:
            self.service.store.add_upload(meta.model_dump(mode="json"))
        except BaseException:  # e.g. the task store (Redis) is unreachable: keep nothing half-registered
            self.abort()
            raise
        return UploadInfo(**meta.model_dump(include=set(UploadInfo.model_fields)), owner_token=self.token)

    def check(self) -> tuple[media.MediaInfo, media.Verified]:
        """The stored file's probe and verification: `MediaError` ``not_media``, ``truncated`` (with
        ``playable_s``), ``decode_failed``, ``no_audio``, ``no_video`` (in the class video's slot), ...
        naming the stored file (`commit` renames it to the user's)."""
        info = media.probe(self.path)
        name = self.path.name
        if self.role == "dance" and info.video is None:
            raise MediaError("no_video", f"{name} has no picture: the class video must be a video, and this file "
                             "is sound only.", name=name, role="dance")
        if info.audio is None:
            what = {"dance": "a class video needs the sound recorded in class",
                    "bgm": "the song must be heard"}.get(self.role or "", "BeatSync works from the sound")
            raise MediaError("no_audio", f"{name} has no sound track: {what}.", name=name,
                             **({"role": self.role} if self.role else {}))
        return info, media.verify(self.path, info)

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class BeatSync:
    """Uploads, tasks and workers over one data directory (see the module docstring)."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.store: Store = open_store(self.settings)
        self.executor: Runner | None = None
        #: whether this process serves the JSON API next to the pages (set by the API's lifespan): the
        #: pages then link players and downloads to it, else they hand files over themselves
        self.serves_api = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ workers

    @property
    def local(self) -> bool:
        """The embedded backend: this process's worker threads run the jobs. With the Celery backend
        the web servers never do; Celery workers (`beatsync.tasks.celery_app`) do."""
        return self.settings.backend == "local"

    def start_workers(self, threads: int | None = None) -> Runner | None:
        """Start this process's worker threads once (no-op when already running, configured to 0, or
        when jobs run in Celery workers)."""
        with self._lock:
            if self.executor is None:
                self.executor = open_runner(self.store, self.settings,
                                            threads=self.settings.workers if threads is None else threads)
            return self.executor

    def stop_workers(self) -> None:
        with self._lock:
            if self.executor is not None:
                self.executor.stop()
                self.executor = None

    # ------------------------------------------------------------------ disk

    def check_disk(self, incoming: int, *, upload: bool = False, used: int | None = None) -> None:
        """``disk_full`` when ``incoming`` more bytes would leave less than the configured free space;
        over the data directory's quota: ``quota_exceeded`` for an upload (``upload``), else
        ``disk_full`` (a job's results would not fit). ``used``: the data directory's size if the
        caller has just measured it (`disk_used`)."""
        s = self.settings
        free = shutil.disk_usage(self.store.root).free
        if free - incoming < s.min_free_bytes:
            raise BeatSyncError("disk_full", "The server is running out of disk space, so it cannot take this "
                                "file now. Please try again later.", free=free)
        if s.quota_bytes and (self.disk_used() if used is None else used) + incoming > s.quota_bytes:
            if upload:
                raise self.quota_error()
            raise BeatSyncError("disk_full", "The server's storage for uploads and results is full. Please try "
                                "again later (old results are deleted after a while).", quota=s.quota_bytes)

    def quota_error(self) -> BeatSyncError:
        q = self.settings.quota_bytes
        return BeatSyncError("quota_exceeded", f"This upload does not fit in the server's storage for uploads and "
                             f"results ({_mb(q)} in all). Please try again later (old results are deleted after a "
                             "while), or with a smaller file.", quota=q, limit=q)

    def disk_used(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.store.root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.stat(os.path.join(dirpath, f)).st_size
        return total

    # ------------------------------------------------------------------ uploads and submissions

    def new_upload(self, filename: str, *, expected_size: int | None = None, owner: str | None = None,
                   role: str | None = None) -> Upload:
        """An upload to write chunk by chunk (see `Upload`), owned by ``owner`` (an owner token the
        client has) or by a new token; ``role``: what it is for (`UPLOAD_ROLES`; ``"dance"``, the class
        video's slot, must have a picture), if known."""
        return Upload(self, filename, expected_size=expected_size, owner=owner, role=role)

    def upload_file(self, filename: str, fileobj, *, chunk_size: int = 1 << 20, owner: str | None = None,
                    role: str | None = None) -> UploadInfo:
        """Store a file-like object (e.g. a Streamlit ``UploadedFile``) as an upload, owned by ``owner``
        (or by a new token: the answer's ``owner_token``); ``role`` as for `new_upload`."""
        size = getattr(fileobj, "size", None)
        if hasattr(fileobj, "seek"):
            fileobj.seek(0)
        up = self.new_upload(filename, expected_size=size if isinstance(size, int) else None, owner=owner,
                             role=role)
        while chunk := fileobj.read(chunk_size):
            up.write(chunk)
        return up.commit()

    def _stored(self, meta: StoredUpload) -> Path:
        """Where an upload's file is."""
        return self.store.upload_dir(meta.file_id) / meta.file

    def _task_inputs(self, rec: TaskRecord) -> dict[str, tuple[Path, InputInfo]]:
        """A task's inputs as `_create` takes them (its own copies), for a follow-up task."""
        folder = self.store.task_dir(rec.task_id)
        return {role: (folder / i.file, i) for role, i in rec.inputs.items()}

    def _upload(self, file_id, role: str, owner: str | list[str] | None) -> tuple[StoredUpload, str]:
        """An upload's record and the presented owner token that owns it (`beatsync.owner.require_owner`)."""
        what = {"dance": "class video", "bgm": "song"}.get(role, "file")
        file_id = check_id(file_id, what=f"{what} file")
        raw = self.store.get_upload(file_id)
        meta = StoredUpload.model_validate(raw) if raw is not None else None
        if meta is None or not self._stored(meta).is_file():
            raise BeatSyncError("file_not_found", f"The {what} upload was not found (uploads are kept for a "
                                "limited time): please upload it again.", role=role)
        return meta, _owner.require_owner(meta.owner_hash, owner, what=f"{what} upload")

    @staticmethod
    def _check_dance(dance: StoredUpload) -> None:
        """A class video must have a picture, an accepted extension and sound."""
        if not dance.has_video:
            raise MediaError("no_video", f"{dance.name} has no picture: the first file must be the class video.",
                             name=dance.name, role="dance")
        check_extension(dance.name, role="dance")
        if not dance.has_audio:
            raise MediaError("no_audio", f"{dance.name} has no sound track, so the class video cannot be matched.",
                             name=dance.name, role="class video")

    @staticmethod
    def _check_song(bgm: StoredUpload) -> None:
        if not bgm.has_audio:
            raise MediaError("no_audio", f"{bgm.name} has no sound track, so the song cannot be matched.",
                             name=bgm.name, role="song")

    def submit(self, dance_file_id: str, bgm_file_id: str, options: Options | dict | None = None, *,
               owner: str | list[str] | None = None) -> Submitted:
        """Queue a job for two uploads (`Options.parse` checks ``options``). ``owner``: the owner token
        (or tokens) of the uploads: each upload must be owned by one of them (``owner_required``,
        ``not_owner``); the task is owned by the first token given."""
        tokens = _owner.tokens_of(owner)
        dance, _ = self._upload(dance_file_id, "dance", tokens)
        bgm, _ = self._upload(bgm_file_id, "bgm", tokens)
        self._check_dance(dance)
        self._check_song(bgm)
        inputs = {role: (self._stored(m), m) for role, m in (("dance", dance), ("bgm", bgm))}
        return self._create(inputs, Options.parse(options), owner=tokens[0])

    def resubmit_song(self, task_id: str, bgm_file_id: str, *, owner: str | list[str] | None = None) -> Submitted:
        """A new job for a sync task's class video with another song ("Try another song", after the song
        was not found): the class video is the task's own copy, not uploaded again; the options are
        the task's. Only the task's owner may, with a song upload it owns; the new task has the same
        owner and says which task it follows (``rerun_of``)."""
        rec = self._record(task_id)
        token = _owner.require_owner(rec.owner_hash, owner)
        if rec.kind != TaskKind.PROCESS or "dance" not in rec.inputs:
            raise BeatSyncError("bad_request", "Only a sync job's class video can be synced with another song.")
        if rec.status not in FINISHED:
            raise BeatSyncError("not_finished", "This job is still running; try another song once it ends.")
        bgm, _ = self._upload(bgm_file_id, "bgm", _owner.tokens_of(owner))
        self._check_song(bgm)
        dance = self._task_inputs(rec)["dance"]
        if not dance[0].is_file():
            raise BeatSyncError("no_input", "This job's class video is no longer kept: please upload it again.",
                                role="dance")
        return self._create({"dance": dance, "bgm": (self._stored(bgm), bgm)}, rec.options, rerun_of=task_id,
                            owner=token)

    @property
    def max_takes(self) -> int:
        """The most class videos one batch may hold here: `MAX_TAKES`, or the queue's size if smaller."""
        return min(MAX_TAKES, self.settings.queue_max)

    def submit_batch(self, dance_file_ids: list[str], bgm_file_id: str, options: Options | dict | None = None, *,
                     owner: str | list[str] | None = None) -> BatchSubmitted:
        """Queue one job per class video, all with the same song and options: several groups filmed
        dancing the same routine (a batch). All or nothing: every upload is checked first (an error
        about one of the class videos says which: ``take``, ``takes`` in its params, "Class video 2
        of 3: ..." in its words), and the tasks and the batch's record are stored in one step only if
        the queue has room for all of them (``busy``). 1 to `MAX_TAKES` class videos, at most the
        queue's size (``too_many_takes``). Owned as for `submit`; each task's record names the batch
        (``batch_id``)."""
        if isinstance(dance_file_ids, str | bytes) or not isinstance(dance_file_ids, list | tuple):
            raise BeatSyncError("bad_request", "dance_file_ids must be a list of uploads.", field="dance_file_ids")
        ids = check_takes(list(dance_file_ids), limit=self.max_takes)
        tokens = _owner.tokens_of(owner)
        n = len(ids)
        dances = []
        for i, file_id in enumerate(ids):
            try:
                dance, _ = self._upload(file_id, "dance", tokens)
                self._check_dance(dance)
            except BeatSyncError as e:
                if e.code == "owner_required":  # (no token at all: about no file in particular)
                    raise
                which = {"take": i + 1, "takes": n}
                raise e.prefixed(messages.take_prefix("en", which), **which) from None
            dances.append(dance)
        bgm, _ = self._upload(bgm_file_id, "bgm", tokens)
        self._check_song(bgm)
        opts = Options.parse(options)
        self.check_disk(int(sum(d.size for d in dances) * OUTPUT_SPACE_FACTOR))
        batch_id = new_id()
        made: list[tuple[str, Path, dict]] = []
        try:
            for dance in dances:
                inputs = {role: (self._stored(m), m) for role, m in (("dance", dance), ("bgm", bgm))}
                made.append(self._new_task(inputs, opts, owner=tokens[0], batch_id=batch_id))
            batch = BatchRecord(batch_id=batch_id, task_ids=[m[0] for m in made], created=time.time(),
                                owner_hash=_owner.token_hash(tokens[0]), song=bgm.name)
            recs = self.store.create_batch(batch.model_dump(mode="json"), [m[2] for m in made],
                                           queue_max=self.settings.queue_max)
        except BaseException:
            for _, folder, _ in made:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if self.executor is not None:
            self.executor.wake()
        return BatchSubmitted(batch_id=batch_id, task_ids=batch.task_ids, message=recs[0]["message"],
                              batch_url=batch_url(batch_id), status_urls=[status_url(t) for t in batch.task_ids],
                              owner_token=tokens[0])

    def submit_render(self, task_id: str, variant: str, *, alternative: int | None = None,
                      nudge_ms: float = 0.0, owner: str | list[str] | None = None) -> Submitted:
        """Queue a corrected render of a finished task's variant (an alternative placement and/or a
        nudge in milliseconds): a new task that skips the analysis; the original stays as it is.
        Only the task's owner may (``owner``: its owner token); the new task has the same owner."""
        req = parse(CorrectRequest, {"variant": variant, "alternative": alternative, "nudge_ms": nudge_ms},
                    code="bad_option", codes=CorrectRequest.CODES, what="correction")
        return self.correct(task_id, req, owner=owner)

    def correct(self, task_id: str, req: CorrectRequest, *, owner: str | list[str] | None = None) -> Submitted:
        """`submit_render` with the request as the API receives it."""
        rec = self._record(task_id)
        token = _owner.require_owner(rec.owner_hash, owner)
        v = rec.variants.get(req.variant)
        al = v.alignment if v is not None else None
        if rec.status != SUCCESS or al is None:
            raise BeatSyncError("not_ready", f"There is no {req.variant} result to correct in this job.",
                                variant=req.variant)
        n_alt = len(al.alternatives)
        if req.alternative is not None and req.alternative >= n_alt:
            raise BeatSyncError("bad_option", f"This result has {n_alt} alternative placement(s).")
        corrected = Alignment.from_dict(al.model_dump()).corrected(alternative=req.alternative,
                                                                   nudge_s=req.nudge_ms / 1000.0)
        sub = self._create(self._task_inputs(rec), rec.options, kind=TaskKind.RENDER,
                           render=RenderRequest(variant=req.variant, alignment=corrected.to_dict()),
                           correction=Correction(source_task=task_id, variant=req.variant,
                                                 alternative=req.alternative, nudge_ms=req.nudge_ms), owner=token)
        self.store.update(task_id, lambda r: r.setdefault("corrections", []).append(sub.task_id))
        return sub

    def submit_beats(self, file_id: str, *, owner: str | list[str] | None = None) -> Submitted:
        """Queue a beat analysis of one upload (the beat explorer): its tempo, beats and onset
        strength come in the task's status (``beats``). ``owner``: the upload's owner token."""
        meta, token = self._upload(file_id, "media", owner)
        if not meta.has_audio:
            raise MediaError("no_audio", f"{meta.name} has no sound track.", name=meta.name)
        return self._create({"media": (self._stored(meta), meta)}, Options(), kind=TaskKind.BEATS, owner=token)

    def _new_task(self, inputs: dict[Role, tuple[Path, InputInfo]], opts: Options, *, owner: str,
                  rerun_of: str | None = None, kind: TaskKind = TaskKind.PROCESS, render: RenderRequest | None = None,
                  correction: Correction | None = None, batch_id: str | None = None) -> tuple[str, Path, dict]:
        """A new task's folder with its own copies of its inputs (hard links), and its request as the
        store takes it: (task id, folder, request). Not stored yet; the caller removes the folder if
        storing fails."""
        task_id = new_id()
        folder = self.store.task_dir(task_id)
        (folder / "in").mkdir(parents=True)
        stored = {}
        try:
            for role, (src, meta) in inputs.items():
                file = f"in/{role}{Path(meta.name).suffix.lower()}"
                _link_or_copy(src, folder / file)
                stored[role] = StoredInput(name=meta.name, size=meta.size, file=file, duration_s=meta.duration_s)
            req = TaskRequest(task_id=task_id, kind=kind, inputs=stored, options=opts, rerun_of=rerun_of,
                              render=render, correction=correction, owner_hash=_owner.token_hash(owner),
                              batch_id=batch_id)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return task_id, folder, req.model_dump(mode="json")

    def _create(self, inputs: dict[Role, tuple[Path, InputInfo]], opts: Options, *, owner: str,
                rerun_of: str | None = None, kind: TaskKind = TaskKind.PROCESS, render: RenderRequest | None = None,
                correction: Correction | None = None) -> Submitted:
        if kind != TaskKind.BEATS:
            self.check_disk(int(inputs["dance"][1].size * OUTPUT_SPACE_FACTOR))
        task_id, folder, req = self._new_task(inputs, opts, owner=owner, rerun_of=rerun_of, kind=kind, render=render,
                                              correction=correction)
        try:
            rec = self.store.create(req, queue_max=self.settings.queue_max)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if self.executor is not None:
            self.executor.wake()
        return Submitted(task_id=task_id, status=rec["status"], message=rec["message"], status_url=status_url(task_id),
                         owner_token=owner)

    def rerun(self, task_id: str, *, owner: str | list[str] | None = None) -> Submitted:
        """A new task with the same inputs and options as a finished one (only its owner may; the new
        task has the same owner)."""
        rec = self._record(task_id)
        token = _owner.require_owner(rec.owner_hash, owner)
        if rec.status not in FINISHED:
            raise BeatSyncError("not_finished", "This job is still running; it can be run again once it ends.")
        return self._create(self._task_inputs(rec), rec.options, rerun_of=task_id, kind=rec.kind, render=rec.render,
                            correction=rec.correction, owner=token)

    # ------------------------------------------------------------------ status, outputs, cancel

    def _record(self, task_id) -> TaskRecord:
        task_id = check_id(task_id)
        rec = self.store.get(task_id)
        if rec is None:
            if self.store.is_gone(task_id):
                raise BeatSyncError("expired", "This job's results have expired and were deleted. "
                                    "Please upload the files again.")
            raise BeatSyncError("not_found", "No job has this id. Check the link, or start a new job.")
        return TaskRecord.model_validate(rec)

    def status(self, task_id: str, *, lang: str = "en", links: bool = False) -> Status:
        """The task's status object in ``lang``. Its outputs are file paths, or with ``links`` the JSON
        API's download URLs (a client of the API never sees the server's paths)."""
        return self._status(self._record(task_id), lang=lang, links=links)

    def _status(self, rec: TaskRecord, *, lang: str, links: bool) -> Status:
        folder = self.store.task_dir(rec.task_id)
        outputs = {e: (download_url(rec.task_id, e) if links else str(folder / p)) for e, p in rec.outputs.items()}
        queue = self.store.queue_length() if rec.status == PENDING else None
        run = self.run_time_s(rec) if rec.status == PENDING or (rec.status == PROCESSING and rec.estimate is None) \
            else None
        return messages.localize_status(Status.from_record(rec, outputs=outputs, queue_length=queue,
                                                           run_time_s=run), lang)

    def run_time_s(self, rec: TaskRecord) -> float | None:
        """How long the task's job should take once a worker takes it (`beatsync.estimate`: the class
        video's length and the speeds of the jobs that finished here)."""
        first = rec.inputs.get("dance") or rec.inputs.get("media")
        if first is None or first.duration_s is None:
            return None
        return round(estimate.Speeds.load(self.store.root).total_s(rec.kind.value, first.duration_s / 60.0), 1)

    def input_file(self, task_id: str, role: str) -> tuple[Path, str, str]:
        """(file path, name, media type) of one of a task's inputs: its class video (``dance``) or its
        song (``bgm``), which a sync preview plays in the browser."""
        if role not in INPUT_ROLES:
            raise BeatSyncError("bad_parameter", f"{str(role)[:30]!r} is not an input: use {' or '.join(INPUT_ROLES)}.",
                                parameter="role")
        rec = self._record(task_id)
        info = rec.inputs.get(role)
        path = self.store.task_dir(task_id) / info.file if info is not None else None
        if path is None or not path.is_file():
            raise BeatSyncError("no_input", f"This job has no {'class video' if role == 'dance' else 'song'} file "
                                "(any more).", role=role)
        return path, info.name, media_type(info.name)

    def beat_grid(self, task_id: str) -> BeatGrid | None:
        """The beat-grid data of a finished task (None when it has none)."""
        rec = self._record(task_id)
        file = rec.beatgrid if rec.status == SUCCESS else None
        path = self.store.task_dir(task_id) / file if file else None
        if path is None or not path.is_file():
            return None
        return BeatGrid.model_validate_json(path.read_bytes())

    def output(self, task_id: str, variant: str) -> tuple[Path, str]:
        """(file path, download name) of a finished task's variant."""
        check_variant(variant)
        rec = self._record(task_id)
        if rec.status != SUCCESS:
            raise BeatSyncError("not_ready", "This job has not finished successfully, so there is nothing to "
                                "download yet.", status=rec.status.value)
        file = rec.outputs.get(variant)
        path = self.store.task_dir(task_id) / file if file else None
        if path is None or not path.is_file():
            raise BeatSyncError("no_output", f"This job has no {variant} result (that method could not place "
                                "the song); download the other one.", variant=variant)
        return path, f"{_safe_stem(rec.inputs['dance'].name)}_{variant}{correction_suffix(rec)}.mp4"

    def owned_tasks(self, owner: str | list[str] | None, *, limit: int = MAX_LISTED) -> list[TaskRecord]:
        """The records of the tasks made with ``owner`` (an owner token, or several), newest first, at
        most ``limit`` (a client's "My jobs": private to whoever holds the token); expired ones are left
        out. ``owner_required`` when no token is presented."""
        tokens = _owner.tokens_of(owner)
        if not tokens:
            raise BeatSyncError("owner_required", "Send your owner token (Authorization: Bearer <owner_token>, or "
                                "X-BeatSync-Owner) to list your jobs.", what="job list")
        found: dict[str, TaskRecord] = {}
        for token in tokens:
            for tid in self.store.owned(_owner.token_hash(token), limit=limit):
                if tid not in found and (raw := self.store.get(tid)) is not None:
                    found[tid] = TaskRecord.model_validate(raw)
        return sorted(found.values(), key=lambda r: -r.created)[:limit]

    def my_tasks(self, owner: str | list[str] | None, *, lang: str = "en", links: bool = False,
                 limit: int = MAX_LISTED) -> list[Status]:
        """`owned_tasks` as status objects in ``lang``."""
        return [self._status(r, lang=lang, links=links) for r in self.owned_tasks(owner, limit=limit)]

    # ------------------------------------------------------------------ batches

    def _batch(self, batch_id) -> BatchRecord:
        batch_id = check_id(batch_id, what="batch")
        raw = self.store.get_batch(batch_id)
        if raw is None:
            if self.store.is_gone(batch_id):
                raise BeatSyncError("expired", "This batch's results have expired and were deleted. Please upload "
                                    "the files again.", what="batch")
            raise BeatSyncError("batch_not_found", "No batch has this id. Check the link, or start a new one.")
        return BatchRecord.model_validate(raw)

    def _takes(self, batch: BatchRecord) -> list[TaskRecord | None]:
        """The batch's task records in order (None for one that has expired)."""
        raws = [self.store.get(t) for t in batch.task_ids]
        return [TaskRecord.model_validate(r) if r is not None else None for r in raws]

    def _zip_entries(self, takes: list[TaskRecord | None]) -> list[tuple[BatchFile, Path]]:
        """What a batch's ZIP holds: each finished take's results, named for its class video and the
        method (``group2_modular.mp4``; ``-take2`` added when two class videos have the same name), a
        result that is the very video of another of its take's (``same_as``) once."""
        stems = [_safe_stem(r.inputs["dance"].name) if r is not None else "" for r in takes]
        used: set[str] = set()
        out = []
        for i, rec in enumerate(takes):
            if rec is None or rec.status != SUCCESS:
                continue
            stem = stems[i] if stems.count(stems[i]) == 1 else f"{stems[i]}-take{i + 1}"
            kept: set[str] = set()
            for variant in ENGINES:
                file = rec.outputs.get(variant)
                path = self.store.task_dir(rec.task_id) / file if file else None
                same = rec.variants[variant].same_as if variant in rec.variants else None
                if path is None or not path.is_file() or same in kept:
                    continue
                name, k = f"{stem}_{variant}.mp4", 2
                while name in used:
                    name, k = f"{stem}-{k}_{variant}.mp4", k + 1
                used.add(name)
                kept.add(variant)
                out.append((BatchFile(name=name, task_id=rec.task_id, variant=variant), path))
        return out

    def batch_status(self, batch_id: str, *, lang: str = "en", links: bool = False) -> BatchStatus:
        """A batch's status: each take's status object (in ``lang``; outputs as paths, or with ``links``
        as the API's download URLs), how many are in each state, and what its ZIP holds now."""
        batch = self._batch(batch_id)
        takes = self._takes(batch)
        tasks = [self._status(r, lang=lang, links=links) for r in takes if r is not None]
        files = [f for f, _ in self._zip_entries(takes)]
        in_zip = {f.task_id for f in files}
        counts = {s: sum(1 for t in tasks if t.status == s) for s in TaskStatus}
        return BatchStatus(batch_id=batch.batch_id, created=batch.created, song=batch.song, task_ids=batch.task_ids,
                           tasks=tasks, counts=counts, finished=all(t.status in FINISHED for t in tasks),
                           progress=round(sum(t.progress for t in tasks) / len(tasks), 1) if tasks else 100.0,
                           zip_url=batch_zip_url(batch.batch_id), zip_files=files,
                           zip_missing=[t for t in batch.task_ids if t not in in_zip],
                           batch_url=batch_url(batch.batch_id), language=lang)

    def batch_zip(self, batch_id: str) -> tuple[list[tuple[str, Path]], str]:
        """What a batch's ZIP holds now, as (name in the ZIP, file) pairs, and the ZIP's download name;
        ``not_ready`` while no take has a result (`beatsync.zipstream.stream_zip` writes it)."""
        batch = self._batch(batch_id)
        entries = self._zip_entries(self._takes(batch))
        if not entries:
            raise BeatSyncError("not_ready", "None of this batch's class videos has a result yet, so there is no "
                                "ZIP to download yet.", what="batch")
        return [(f.name, path) for f, path in entries], f"{_safe_stem(batch.song)}_takes.zip"

    def owns(self, task_id: str, owner: str | list[str] | None) -> bool:
        """Whether ``owner`` (an owner token, or several) controls the task (False for an unknown task)."""
        try:
            rec = self._record(task_id)
        except BeatSyncError:
            return False
        return _owner.owned_by(rec.owner_hash, owner) is not None

    def cancel(self, task_id: str, *, owner: str | list[str] | None = None, wait_s: float = 5.0, lang: str = "en",
               links: bool = False) -> Status:
        """Cancel a pending or running task (only its owner may); waits up to ``wait_s`` for a running
        job to be stopped."""
        rec = self._record(task_id)
        _owner.require_owner(rec.owner_hash, owner)
        if rec.status in FINISHED:
            raise BeatSyncError("already_finished", "This job has already finished; there is nothing to cancel.",
                                status=rec.status.value)
        raw = self.store.request_cancel(task_id) or rec.model_dump(mode="json")
        deadline = time.monotonic() + wait_s
        while raw["status"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.1)
            raw = self.store.get(task_id) or raw
        return self._status(TaskRecord.model_validate(raw), lang=lang, links=links)

    # ------------------------------------------------------------------ health

    def health(self) -> Health:
        s = self.settings
        seen = max(s.stale_s, 3 * s.sweep_s)
        free = shutil.disk_usage(self.store.root).free
        out = {"backend": s.backend, "free_disk_bytes": free, "queue_max": s.queue_max}
        problems: dict[str, str] = {}  # code -> words
        if free < s.min_free_bytes:
            problems["disk_low"] = f"free disk is low ({_mb(free)}): uploads are refused"
        if s.quota_bytes:
            used = self.disk_used()
            if used > s.quota_bytes:
                problems["over_quota"] = (f"the data directory holds {_mb(used)}, over its {_mb(s.quota_bytes)} "
                                          "quota: uploads are refused until old results expire")
        try:
            workers = self.store.workers(seen_within_s=seen)
            out.update(workers=len(workers), worker_threads=sum(int(w.get("threads", 0)) for w in workers.values()),
                       queue=self.store.queue_length(), processing=len(self.store.running()))
        except BeatSyncError as e:  # the task store (Redis) is unreachable
            problems = {"store_unavailable": e.message, **problems}
        else:
            if out["worker_threads"] == 0:
                problems["no_worker"] = f"no worker is running: new jobs will wait (start `{worker_command(s)}`)"
        return Health(status="degraded" if problems else "ok", problems=list(problems.values()),
                      problem_codes=list(problems), **out)


_service: BeatSync | None = None
_service_lock = threading.Lock()


def get_service() -> BeatSync:
    """The process-wide service (settings from the environment); created once, thread-safe."""
    global _service
    with _service_lock:
        if _service is None:
            _service = BeatSync()
        return _service


__all__ = ["DANCE_EXTS", "SONG_EXTS", "UPLOAD_ROLES", "BeatSync", "Upload", "get_service"]
