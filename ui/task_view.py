"""Drawing a job: live progress with a time estimate while it runs, the sync preview as soon as the
song is placed, then one recommended result (the other method under "compare methods", or both side
by side with which to prefer and why), the facts found, the honest beat grid and corrections, each
correction's progress where it was asked for. Reads the job service; never runs a job.

The page keeps one order in every state (title, files, the state's own block, the preview, the rest),
so the preview's component stays in place while the job ends and keeps what the user did with it.
"""

from __future__ import annotations

import time
from urllib.parse import urljoin

import streamlit as st

from beatsync.align import Alignment
from beatsync.contract import (
    FAILED,
    FINISHED,
    PENDING,
    SUCCESS,
    UPLOAD_MEDIA_ERRORS,
    Status,
    TaskKind,
    Trim,
    download_url,
)
from beatsync.errors import BeatSyncError
from beatsync.service import BeatSync
from ui import i18n, preview, summary, uploads
from ui.i18n import clock, duration, t
from ui.plots import alternatives_figure, beat_grid_figure, on_phone, plot_config
from ui.state import launched, launched_from, owner_tokens, remember

LOW_CONFIDENCE = 0.5
REFRESH_S = 1.0
# the download links (served by the API, so no file passes through the app's memory) look like buttons
DOWNLOAD_CSS = """<style>
a.bs-download {display: inline-block; padding: 0.45rem 0.9rem; margin: 0.3rem 0 0.6rem; border-radius: 0.5rem;
  border: 1px solid rgba(49, 51, 63, 0.45); text-decoration: none; font-weight: 500; color: inherit;}
a.bs-download:hover {border-color: #b3261e; color: #b3261e;}
</style>"""


def server_url(svc: BeatSync, path: str) -> str | None:
    """Absolute URL of one of this server's API routes; None when the API is not served by this
    process (a host that runs the script without ``st.App``), when it asks for an API key (which a
    browser's player cannot send), or outside a browser session (AppTest)."""
    base = getattr(st.context, "url", None)
    return urljoin(base, path) if base and svc.serves_api and not svc.settings.api_key else None


def controls(svc: BeatSync, task_id: str) -> bool:
    """Whether this browser session may cancel, rerun or correct the task (it owns it)."""
    return svc.owns(task_id, owner_tokens())


def status(svc: BeatSync, task_id: str) -> Status:
    """The task's status in the reader's language (`BeatSyncError` as the service raises it)."""
    return svc.status(task_id, lang=i18n.current())


def load(svc: BeatSync, task_id: str) -> Status | None:
    """The task's status, or None after showing a friendly page (unknown, expired, malformed id)."""
    try:
        return status(svc, task_id)
    except BeatSyncError as e:
        st.title(t("error.title"))
        st.warning(i18n.error(e))
        st.page_link("views/upload.py", label=t("task.go_upload"), icon="🎵")
        st.page_link("views/tasks.py", label=t("task.go_tasks"), icon="🗂️")
        return None


def title(s: Status) -> str:
    """The page's heading by the job's state: working, result, failed."""
    if s.status == SUCCESS:
        return t("task.title")
    if s.status == FAILED:
        return t("task.title_failed")
    return t("task.title_working")


def _preview_mark(s: Status) -> tuple:
    """What the preview has to play (a change redraws the page, so the preview gets it at once)."""
    return (s.preview.quick is not None, tuple(sorted(s.preview.variants)))


def live(svc: BeatSync, task_ids: list[str], *, watch_preview: Status | None = None) -> None:
    """Progress of the unfinished tasks, refreshed every second; when one ends (or, with
    ``watch_preview``, when that task has a new alignment to preview), the whole page is drawn
    again (and stops refreshing once nothing runs)."""
    seen = _preview_mark(watch_preview) if watch_preview is not None else None
    # four times as often while the preview waits for its first alignment: it comes seconds into the job
    every = REFRESH_S / 4 if seen == (False, ()) else REFRESH_S

    @st.fragment(run_every=every)
    def _live() -> None:
        for tid in task_ids:
            try:
                s = status(svc, tid)
            except BeatSyncError:
                st.rerun()
            if s.status in FINISHED:
                st.rerun()
            if seen is not None and tid == watch_preview.task_id and _preview_mark(s) != seen:
                st.rerun()
            progress_block(svc, s)

    _live()


def refresh_on_change(svc: BeatSync, snapshot: dict[str, tuple], *, every_s: float = 2.0) -> None:
    """Redraw the page when any of these tasks changes (``snapshot``: id -> (status, progress))."""

    @st.fragment(run_every=every_s)
    def _watch() -> None:
        for tid, seen in snapshot.items():
            try:
                s = svc.status(tid)
            except BeatSyncError:
                st.rerun()
            if (s.status, round(s.progress)) != seen:
                st.rerun()

    _watch()


def status_detail(s: Status) -> str:
    """What a job's status word leaves out (never the same word again): its stage while it runs, how
    long it took once done, what went wrong when it failed."""
    if s.status == SUCCESS:
        return t("tasks.took", t=duration(s.seconds or (s.finished or s.updated) - (s.started or s.created)))
    if s.status == FAILED:
        text = s.error or s.message
        return text if len(text) <= 90 else text[:88].rstrip() + "…"
    eta = eta_text(s)
    return s.message + (f" · {eta}" if eta else "")


def eta_text(s: Status) -> str | None:
    """The time left in words: while processing, the job's estimate; while pending, its run time."""
    if s.eta_s is None:
        return None
    if s.status == PENDING:
        return t("task.eta_run", t=duration(_rounded(s.eta_s)))
    if s.eta_s < 3:
        return t("task.eta_soon")
    return t("task.eta", t=duration(_rounded(s.eta_s)))


def _rounded(secs: float) -> float:
    """Seconds as an estimate reads: to 1 s under 10 s, 5 s under 2 minutes, 10 s beyond."""
    step = 1 if secs < 10 else 5 if secs < 120 else 10
    return max(step, round(secs / step) * step)


def progress_block(svc: BeatSync, s: Status) -> None:
    label = t("task.pending") if s.status == PENDING else t("task.processing")
    st.progress(min(1.0, s.progress / 100.0), text=f"{label} · {s.message} · {s.progress:.0f}%")
    since = s.started or s.created
    info = [t("task.elapsed", s=int(time.time() - since))]
    eta = eta_text(s)
    if eta:
        info.append(eta)
    if s.status == PENDING and s.queue_length:
        info.append(t("task.queue", n=s.queue_length))
    st.caption(" · ".join(info))
    cancel_button(svc, s.task_id)


def cancel_button(svc: BeatSync, task_id: str) -> None:
    """A Cancel button for a pending or running task that this session owns; the page is drawn again
    once it has stopped."""
    if not controls(svc, task_id):
        return
    if st.button(t("task.cancel"), key=f"cancel-{task_id}"):
        try:
            svc.cancel(task_id, owner=owner_tokens(), wait_s=3.0)
        except BeatSyncError as e:
            st.warning(i18n.error(e))
        st.rerun()


#: failures that running the same job again cannot mend (its inputs are the problem)
INPUT_PROBLEMS = frozenset({"song_not_found", "no_audio", "no_video", "unsupported_type", *UPLOAD_MEDIA_ERRORS})


def song_problem(s: Status) -> bool:
    """Whether a failed sync job's song is what went wrong (not found in the class video, or a song file
    that does not play): another song may mend it, with the same class video."""
    params = s.error_params or {}
    return s.kind == TaskKind.PROCESS and (s.error_code == "song_not_found" or params.get("role") in ("bgm", "song"))


def failure(svc: BeatSync, s: Status) -> None:
    """A failed job: what went wrong and what to try, then the way on: "Try another song" (keeping the
    class video) when the song was the problem, "Run it again" when running it again can help."""
    if s.error_code == "cancelled":
        st.info(t("task.cancelled"))
    else:
        st.error(f"**{t('task.failed')}**: " + (s.error or ""))
        h = i18n.hint(s.error_code, s.error_params)
        if h:
            st.caption(t("task.try", hint=h))
    if not controls(svc, s.task_id):
        return
    if song_problem(s):
        another_song(svc, s)
    elif s.error_code in INPUT_PROBLEMS:
        st.page_link("views/upload.py", label=t("task.start_over"), icon="🎵")
    elif st.button(t("task.retry"), key=f"retry-{s.task_id}", type="primary"):
        try:
            sub = svc.rerun(s.task_id, owner=owner_tokens())
        except BeatSyncError as e:
            st.warning(i18n.error(e))
        else:
            remember(sub.task_id)
            st.switch_page("views/task.py", query_params={"task": sub.task_id})


def another_song(svc: BeatSync, s: Status) -> None:
    """ "Try another song": only the song is asked for; the class video stays the job's own copy."""
    dance = s.inputs.get("dance")
    with st.container(border=True, key=f"another-song-{s.task_id}"):
        st.header(t("task.another_song"))
        st.caption(t("task.another_song_help", name=dance.name if dance else "?"))
        song = uploads.slot(svc, t("task.another_song_file"), "bgm", key=f"another-{s.task_id}")
        if st.button(t("task.another_song_go"), type="primary", key=f"another-go-{s.task_id}",
                     disabled=song is None):
            try:
                sub = svc.resubmit_song(s.task_id, song.file_id, owner=owner_tokens())
            except BeatSyncError as e:
                st.error(i18n.error(e))
            else:
                remember(sub.task_id)
                st.switch_page("views/task.py", query_params={"task": sub.task_id})


def _player(svc: BeatSync, s: Status, variant: str) -> None:
    """The result's player: linked to the API (Range support, nothing loaded into the app's memory)
    when this process serves it, else through Streamlit's own media handling."""
    path, _name = svc.output(s.task_id, variant)
    st.video(server_url(svc, download_url(s.task_id, variant)) or str(path))


def _download(svc: BeatSync, s: Status, variant: str) -> None:
    """The result's download button (a link to the API, or Streamlit's own download button)."""
    path, name = svc.output(s.task_id, variant)
    url = server_url(svc, download_url(s.task_id, variant))
    label = t("task.download", name=name)
    if url:
        st.markdown(f'<a href="{url}" download="{name}" class="bs-download" data-variant="{variant}">⬇ {label}</a>',
                    unsafe_allow_html=True)
    else:
        st.download_button(label, data=lambda: path.read_bytes(), file_name=name, mime="video/mp4",
                           key=f"dl-{s.task_id}-{variant}", on_click="ignore")


def variant_trim(s: Status, variant: str) -> Trim | None:
    """The part of the video a variant kept: its own trim, or (older results) the job's."""
    v = s.variants.get(variant)
    return (v.trim if v is not None else None) or s.trim


def kept_caption(trim: Trim | None) -> None:
    if trim is not None:
        st.caption(t("task.kept", a=trim.start_s, b=trim.end_s, m0=trim.music_start_s, m1=trim.music_end_s))


def facts(s: Status, variant: str) -> None:
    """Where the music starts and the structure found, as facts (not warnings)."""
    v = s.variants.get(variant)
    al = v.alignment if v is not None else None
    if al is None or not al.segments:
        return
    video_s, song_s = summary.music_position(al)
    lines = [t("fact.position_start" if song_s < 0.5 else "fact.position", video=clock(video_s), song=clock(song_s))]
    if abs(al.tempo_ratio - 1.0) >= 0.005 and len({round(g.rate, 3) for g in al.segments}) == 1:
        lines.append(t("fact.speed", r=al.tempo_ratio))
    for key, params in summary.structure_facts(s, variant):
        try:
            lines.append(t(key, **params))
        except (KeyError, ValueError, IndexError):
            continue
    st.markdown("\n".join(f"- {line}" for line in lines))


def result_block(svc: BeatSync, s: Status, variant: str, *, heading: bool = False, wide: bool = False) -> None:
    """One method's result: its player and download, the part kept, its numbers in one line, and a
    check to make when its confidence is low (``wide``: the player beside the rest, on a wide screen)."""
    if heading:
        st.subheader(variant)
    v = s.variants.get(variant)
    if v is not None and v.error is not None:
        st.caption(t("task.variant_failed", variant=variant, error=i18n.error(v)))
        return
    if not s.output(variant):
        return
    left, right = st.columns([3, 2]) if wide else (st.container(), st.container())
    with left:
        _player(svc, s, variant)
    with right:
        _download(svc, s, variant)
        kept_caption(variant_trim(s, variant))
        al = v.alignment if v is not None else None
        if al is not None and al.segments:
            video_s, song_s = summary.music_position(al)
            st.caption(t("task.details", variant=variant, c=al.confidence, r=al.tempo_ratio, v=video_s, g=song_s))
            if al.confidence < LOW_CONFIDENCE:
                st.warning(t("task.low_conf", c=al.confidence))


def results(svc: BeatSync, s: Status) -> str | None:
    """A finished job's results: the recommended one, the other under "compare methods" when both
    agree, both side by side with which to prefer and why when they do not. Returns the recommended
    variant."""
    rec = summary.recommend(s)
    if rec.best is None:
        return None
    key = f"prefer-{s.task_id}"
    if st.session_state.get(key) in rec.others:  # the user asked for the other method's result
        rec.best, rec.others = st.session_state[key], [rec.best]
        rec.reasons = [("why.user", {})]
    facts(s, rec.best)
    for code in summary.checks(s, rec.best):
        n = next(n for n in s.notices if n.code == code and n.params.get("engine") == rec.best)
        st.warning(i18n.notice(n))
    if rec.agree:
        st.header(t("task.your_video"))
        result_block(svc, s, rec.best, wide=True)
        other_method_button(s, rec)
        if rec.others or rec.failed:
            with st.expander(t("task.compare")):
                if rec.same_file:  # the other method's video is this one: nothing more to show of it
                    st.markdown(t("task.same_file"))
                elif rec.others:
                    st.markdown(t("task.agree_fact", ms=max(1, round(rec.difference_ms))))
                for v in ([] if rec.same_file else rec.others) + rec.failed:
                    result_block(svc, s, v, heading=True, wide=True)
    else:
        st.header(t("task.two_results"))
        why = t("why.join").join(t(k, **_worded(p)) for k, p in rec.reasons)
        st.info(t("task.prefer", ms=round(rec.difference_ms), best=rec.best, why=why))
        cols = st.columns(2)
        for col, v in zip(cols, [rec.best, *rec.others], strict=False):
            with col:
                result_block(svc, s, v, heading=True)
        for v in rec.failed:
            result_block(svc, s, v, heading=True)
        other_method_button(s, rec)
    return rec.best


def other_method_button(s: Status, rec: summary.Recommendation) -> None:
    """ "Try the other method's result": it becomes the result shown first, played by the preview and
    drawn in the beat grid (the first one stays under "compare methods")."""
    if rec.same_file or not rec.others:
        return
    other = rec.others[0]
    if st.button(t("task.other_method", variant=other), key=f"other-{s.task_id}-{other}"):
        st.session_state[f"prefer-{s.task_id}"] = other
        st.rerun()


def _worded(params: dict) -> dict:
    """Reasons' parameters as they read: seconds of music as lengths of time."""
    out = dict(params)
    if "a" in out and isinstance(out["a"], float) and out["a"] > 1.5:
        out["a"], out["b"] = duration(out["a"]), duration(out["b"])
    return out


def preview_section(svc: BeatSync, s: Status, *, choice: str | None) -> None:
    """The sync preview, and the progress of the corrections asked for from it."""
    st.header(t("preview.title"))
    base = server_url(svc, "/")
    found, _ = preview.alignments(s)
    if base is None:
        st.caption(t("preview.unavailable"))
    elif not found and s.status in FINISHED:
        st.caption(t("preview.waiting"))
    else:
        st.caption(t("preview.help_running") if s.status not in FINISHED else t("preview.help"))
        preview.sync_preview(svc, s, base_url=base.rstrip("/"), choice=choice, mine=controls(svc, s.task_id))
    here_progress(svc, launched_from("preview"), source=s.task_id)


def here_progress(svc: BeatSync, task_ids: list[str], *, source: str) -> None:
    """The progress of the corrections of ``source`` asked for at this place of the page (a finished
    one shows in "Corrected results")."""
    running = []
    for tid in task_ids:
        try:
            c = status(svc, tid)
        except BeatSyncError:
            continue
        if c.correction is not None and c.correction.source_task == source and c.status not in FINISHED:
            running.append(c)
    for c in running:
        st.markdown(t("pv.requested", variant=c.correction.variant, ms=c.correction.nudge_ms))
    if running:
        live(svc, [c.task_id for c in running])


def beat_grid_section(svc: BeatSync, s: Status, *, choice: str | None) -> None:
    """The beat grid (with its text summary), the alternatives and the correction panel."""
    grid = svc.beat_grid(s.task_id)
    found = {v: d.alignment for v, d in s.variants.items() if d.alignment is not None}
    if grid is None or not found:
        return
    st.header(t("task.plot"))
    st.caption(t("task.plot_help"))
    names = list(found)
    variant = st.radio(t("task.plot_variant"), names, horizontal=True, key=f"plotvar-{s.task_id}",
                       index=names.index(choice) if choice in names else 0) if len(names) > 1 else names[0]
    al = found[variant]
    alts = al.alternatives
    disagree = s.agreement is not None and not s.agreement.agree
    mine = controls(svc, s.task_id)
    with st.expander(t("task.correct"), expanded=bool(alts) or disagree or al.confidence < LOW_CONFIDENCE):
        st.caption(t("task.correct_help"))
        labels = {None: t("task.placement_found", o=al.offset_s)}
        labels |= {i: t("task.placement_alt", i=i + 1, o=a.offset_s, s=a.score) for i, a in enumerate(alts)}
        pick = st.selectbox(t("task.placement"), list(labels), key=f"alt-{s.task_id}-{variant}",
                            format_func=labels.__getitem__)
        nudge = st.number_input(t("task.nudge"), min_value=-2000, max_value=2000, value=0, step=1,
                                key=f"nudge-{s.task_id}-{variant}")
        shown = Alignment.from_dict(al.model_dump())
        if pick is not None:
            shown = shown.corrected(alternative=pick)
        if mine and st.button(t("task.rerender"), key=f"render-{s.task_id}-{variant}",
                              disabled=pick is None and not nudge):
            try:
                sub = svc.submit_render(s.task_id, variant, alternative=pick, nudge_ms=nudge, owner=owner_tokens())
            except BeatSyncError as e:
                st.warning(i18n.error(e))
            else:
                remember(sub.task_id)
                launched(sub.task_id, "panel")
                st.rerun()
        here_progress(svc, launched_from("panel"), source=s.task_id)
    dance = s.inputs.get("dance")
    edits = summary.edit_points(s, variant) if pick is None else []
    touch = on_phone()
    g = beat_grid_figure(grid, shown, variant=variant, trim=variant_trim(s, variant),
                         video_duration_s=dance.duration_s if dance else None, nudge_ms=nudge, edits=edits,
                         touch=touch)
    if g.summary:
        st.markdown(g.summary)
    if not g.match.can_match:
        st.info(t("grid.unmatched"))
    st.plotly_chart(g.figure, key=f"grid-{s.task_id}", config=plot_config(touch))
    alt = alternatives_figure(al)
    if alt is not None:
        st.subheader(t("task.alternatives"))
        st.caption(alt[1])
        st.plotly_chart(alt[0], key=f"alts-{s.task_id}", config=plot_config(touch))


def correction_result(svc: BeatSync, s: Status) -> None:
    c = s.correction
    what = []
    if c is not None and c.alternative is not None:
        what.append(i18n.notice({"code": "alternative_chosen", "params": {"number": c.alternative + 1}}))
    if c is not None and c.nudge_ms:
        what.append(i18n.notice({"code": "nudged", "params": {"ms": round(c.nudge_ms)}}))
    st.markdown(t("task.correction_of", variant=c.variant if c else "", what=" ".join(what)))
    if s.status == SUCCESS and c is not None:
        result_block(svc, s, c.variant, wide=True)
    elif s.status == FAILED:
        failure(svc, s)


def page(svc: BeatSync, task_id: str) -> None:
    """The whole job page."""
    s = load(svc, task_id)
    if s is None:
        return
    remember(task_id)
    if s.kind == TaskKind.BEATS:
        st.switch_page("views/explore.py", query_params={"task": task_id})
    st.markdown(DOWNLOAD_CSS, unsafe_allow_html=True)
    st.title(title(s))
    names = {role: i.name for role, i in s.inputs.items()}
    st.markdown(t("task.files", dance=names.get("dance", "?"), bgm=names.get("bgm", "?")))
    st.caption(t("task.id", id=task_id))
    if not controls(svc, task_id):
        st.caption(t("task.read_only"))
    if s.batch_id is not None:
        st.page_link("views/batch.py", label=t("task.batch"), icon="👯", query_params={"batch": s.batch_id})
    if s.kind == TaskKind.RENDER and s.correction is not None:
        st.page_link("views/task.py", label=t("task.source"), icon="↩️",
                     query_params={"task": s.correction.source_task})
    corrections = []
    for cid in s.corrections:
        try:
            corrections.append(status(svc, cid))
        except BeatSyncError:
            continue
    best = None
    with st.container():  # the state's own block: progress, the failure, or the results
        if s.status not in FINISHED:
            live(svc, [s.task_id], watch_preview=s)
        elif s.status == FAILED:
            failure(svc, s)
        elif s.kind == TaskKind.RENDER:
            correction_result(svc, s)
        else:
            best = results(svc, s)
    with st.container():  # the preview, in the same place whatever the state
        if s.status != FAILED:
            preview_section(svc, s, choice=best)
    if s.status == SUCCESS and s.kind != TaskKind.RENDER:
        beat_grid_section(svc, s, choice=best)
    here = set(launched_from("preview")) | set(launched_from("panel"))
    if corrections:
        st.header(t("task.corrections"))
        for c in corrections:
            if c.status in FINISHED:
                correction_result(svc, c)
        elsewhere = [c.task_id for c in corrections if c.status not in FINISHED and c.task_id not in here]
        if elsewhere:
            live(svc, elsewhere)
