"""Drawing a job: live progress while it runs, the two results to compare, the beat grid, the
correction panel, the failure with what to try. Reads the job service; never runs a job."""

from __future__ import annotations

import time
from urllib.parse import urljoin

import streamlit as st

from beatsync.align import Alignment
from beatsync.contract import (
    ENGINES,
    FAILED,
    FINISHED,
    PENDING,
    SUCCESS,
    Status,
    TaskKind,
    Trim,
    download_url,
)
from beatsync.errors import BeatSyncError
from beatsync.service import BeatSync
from ui import i18n
from ui.i18n import t
from ui.plots import PLOT_CONFIG, alternatives_figure, beat_grid_figure, on_phone
from ui.state import owner_token, remember

LOW_CONFIDENCE = 0.5
REFRESH_S = 1.0
# the download links (served by the API, so no file passes through the app's memory) look like buttons
DOWNLOAD_CSS = """<style>
a.bs-download {display: inline-block; padding: 0.45rem 0.9rem; margin: 0.3rem 0 0.6rem; border-radius: 0.5rem;
  border: 1px solid rgba(49, 51, 63, 0.25); text-decoration: none; font-weight: 500; color: inherit;}
a.bs-download:hover {border-color: #ff4b4b; color: #ff4b4b;}
</style>"""


def server_url(svc: BeatSync, path: str) -> str | None:
    """Absolute URL of one of this server's API routes; None when the API is not served by this
    process (a host that runs the script without ``st.App``), when it asks for an API key (which a
    browser's player cannot send), or outside a browser session (AppTest)."""
    base = getattr(st.context, "url", None)
    return urljoin(base, path) if base and svc.serves_api and not svc.settings.api_key else None


def controls(svc: BeatSync, task_id: str) -> bool:
    """Whether this browser session may cancel, rerun or correct the task (it owns it)."""
    return svc.owns(task_id, owner_token())


def status(svc: BeatSync, task_id: str) -> Status:
    """The task's status in the reader's language (`BeatSyncError` as the service raises it)."""
    return svc.status(task_id, lang=i18n.current())


def load(svc: BeatSync, task_id: str) -> Status | None:
    """The task's status, or None after showing a friendly page (unknown, expired, malformed id)."""
    try:
        return status(svc, task_id)
    except BeatSyncError as e:
        st.subheader(t("error.title"))
        st.warning(i18n.error(e))
        st.page_link("views/upload.py", label=t("task.go_upload"), icon="🎵")
        st.page_link("views/tasks.py", label=t("task.go_tasks"), icon="🗂️")
        return None


def live(svc: BeatSync, task_ids: list[str]) -> None:
    """Progress of the unfinished tasks, refreshed every second; when one ends, the whole page is
    drawn again (and stops refreshing once nothing runs)."""

    @st.fragment(run_every=REFRESH_S)
    def _live() -> None:
        for tid in task_ids:
            try:
                s = status(svc, tid)
            except BeatSyncError:
                st.rerun()
            if s.status in FINISHED:
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


def progress_block(svc: BeatSync, s: Status) -> None:
    label = t("task.pending") if s.status == PENDING else t("task.processing")
    st.progress(min(1.0, s.progress / 100.0), text=f"{label} · {s.message} · {s.progress:.0f}%")
    since = s.started or s.created
    info = [t("task.elapsed", s=int(time.time() - since))]
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
            svc.cancel(task_id, owner=owner_token(), wait_s=3.0)
        except BeatSyncError as e:
            st.warning(i18n.error(e))
        st.rerun()


def failure(svc: BeatSync, s: Status) -> None:
    if s.error_code == "cancelled":
        st.info(t("task.cancelled"))
    else:
        st.error(f"**{t('task.failed')}**: " + (s.error or ""))
        h = i18n.hint(s.error_code, s.error_params)
        if h:
            st.caption(t("task.try", hint=h))
    if not controls(svc, s.task_id):
        return
    if st.button(t("task.retry"), key=f"retry-{s.task_id}", type="primary"):
        try:
            sub = svc.rerun(s.task_id, owner=owner_token())
        except BeatSyncError as e:
            st.warning(i18n.error(e))
        else:
            remember(sub.task_id)
            st.switch_page("views/task.py", query_params={"task": sub.task_id})


def _player_and_download(svc: BeatSync, s: Status, variant: str) -> None:
    """The result's player and download button: linked to the API (Range support, nothing loaded into
    the app's memory) when this process serves it, else through Streamlit's own media handling."""
    path, name = svc.output(s.task_id, variant)
    url = server_url(svc, download_url(s.task_id, variant))
    label = t("task.download", name=name)
    st.video(url or str(path))
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


def trims_differ(s: Status) -> bool:
    """Whether the variants kept different parts of the video (each is then shown with its own)."""
    trims = [v.trim for v in s.variants.values() if v.trim is not None]
    return any(tr != trims[0] for tr in trims[1:])


def kept_caption(trim: Trim | None) -> None:
    if trim is not None:
        st.caption(t("task.kept", a=trim.start_s, b=trim.end_s, m0=trim.music_start_s, m1=trim.music_end_s))


def variant_column(svc: BeatSync, s: Status, variant: str, *, show_trim: bool = False) -> None:
    st.subheader(variant)
    v = s.variants.get(variant)
    if v is not None and v.error is not None:
        st.warning(t("task.variant_failed", error=i18n.error(v)))
        return
    if not s.output(variant):
        return
    _player_and_download(svc, s, variant)
    if show_trim:
        kept_caption(variant_trim(s, variant))
    al = v.alignment if v is not None else None
    if al is not None:
        with st.container(horizontal=True):  # side by side, wrapping on a phone
            st.metric(t("task.offset"), f"{al.offset_s:.3f} s", help=t("task.offset_help"), width="content")
            st.metric(t("task.tempo"), f"{al.tempo_ratio:.4f}", help=t("task.tempo_help"), width="content")
            st.metric(t("task.confidence"), f"{al.confidence:.0%}", width="content")
        if al.confidence < LOW_CONFIDENCE:
            st.warning(t("task.low_conf", c=al.confidence))
        if len(al.segments) > 1:
            st.caption(t("task.segments") + ": " + "; ".join(
                t("task.seg_row", a=g.dance_start_s, b=g.dance_end_s, s=g.bgm_start_s, r=g.rate)
                for g in al.segments))


def success(svc: BeatSync, s: Status) -> None:
    for n, text in zip(s.notices, s.warnings_localized, strict=True):
        if n.code == "same_result":  # good news, not a warning: both downloads are one video
            st.info(text)
        elif n.code != "engines_disagree":
            st.warning(text)
    agree = s.agreement
    if agree is not None:
        if agree.agree:
            st.success(t("task.agree", ms=max(1, round(agree.offset_difference_ms))))
        else:
            st.warning(t("task.disagree", ms=round(agree.offset_difference_ms)))
    own = trims_differ(s)  # each variant kept its own part of the video: shown in its column
    if not own:
        kept_caption(s.trim)
    variants = [v for v in ENGINES if v in s.variants]
    cols = st.columns(len(variants)) if variants else []
    for col, v in zip(cols, variants, strict=True):
        with col:
            variant_column(svc, s, v, show_trim=own)


def beat_grid_section(svc: BeatSync, s: Status) -> None:
    """The beat grid, the alternatives and the correction panel (the grid moves with the nudge)."""
    grid = svc.beat_grid(s.task_id)
    found = {v: d.alignment for v, d in s.variants.items() if d.alignment is not None}
    if grid is None or not found:
        return
    st.subheader(t("task.plot"))
    st.caption(t("task.plot_help"))
    variant = st.radio(t("task.plot_variant"), list(found), horizontal=True, key=f"plotvar-{s.task_id}")
    al = found[variant]
    alts = al.alternatives
    disagree = s.agreement is not None and not s.agreement.agree
    mine = controls(svc, s.task_id)
    with st.expander(t("task.correct"), expanded=bool(alts) or disagree or al.confidence < LOW_CONFIDENCE):
        st.caption(t("task.correct_help"))
        labels = {None: t("task.placement_found", o=al.offset_s)}
        labels |= {i: t("task.placement_alt", i=i + 1, o=a.offset_s, s=a.score) for i, a in enumerate(alts)}
        choice = st.selectbox(t("task.placement"), list(labels), key=f"alt-{s.task_id}-{variant}",
                              format_func=labels.__getitem__)
        nudge = st.slider(t("task.nudge"), -500, 500, 0, 1, key=f"nudge-{s.task_id}-{variant}")
        shown = Alignment.from_dict(al.model_dump())
        if choice is not None:
            shown = shown.corrected(alternative=choice)
        if mine and st.button(t("task.rerender"), key=f"render-{s.task_id}-{variant}",
                              disabled=choice is None and not nudge):
            try:
                sub = svc.submit_render(s.task_id, variant, alternative=choice, nudge_ms=nudge, owner=owner_token())
            except BeatSyncError as e:
                st.warning(i18n.error(e))
            else:
                remember(sub.task_id)
                st.rerun()
    dance = s.inputs.get("dance")
    fig = beat_grid_figure(grid, shown, variant=variant, trim=variant_trim(s, variant),
                           video_duration_s=dance.duration_s if dance else None, nudge_ms=nudge, touch=on_phone())
    st.plotly_chart(fig, key=f"grid-{s.task_id}", config=PLOT_CONFIG)
    alt_fig = alternatives_figure(al)
    if alt_fig is not None:
        st.caption(t("task.alternatives"))
        st.plotly_chart(alt_fig, key=f"alts-{s.task_id}")


def correction_result(svc: BeatSync, s: Status) -> None:
    c = s.correction
    what = []
    if c is not None and c.alternative is not None:
        what.append(i18n.notice({"code": "alternative_chosen", "params": {"number": c.alternative + 1}}))
    if c is not None and c.nudge_ms:
        what.append(i18n.notice({"code": "nudged", "params": {"ms": round(c.nudge_ms)}}))
    st.markdown(t("task.correction_of", variant=c.variant if c else "", what=" ".join(what)))
    if s.status == SUCCESS and c is not None:
        variant_column(svc, s, c.variant)
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
    st.title(t("task.title"))
    names = {role: i.name for role, i in s.inputs.items()}
    st.markdown(t("task.files", dance=names.get("dance", "?"), bgm=names.get("bgm", "?")))
    st.caption(t("task.id", id=task_id))
    if not controls(svc, task_id):
        st.caption(t("task.read_only"))
    if s.kind == TaskKind.RENDER and s.correction is not None:
        st.page_link("views/task.py", label=t("task.source"), icon="↩️",
                     query_params={"task": s.correction.source_task})
    running = [s.task_id] if s.status not in FINISHED else []
    corrections = []
    for cid in s.corrections:
        try:
            corrections.append(status(svc, cid))
        except BeatSyncError:
            continue
    running += [c.task_id for c in corrections if c.status not in FINISHED]
    if s.status == FAILED:
        failure(svc, s)
    elif s.status == SUCCESS:
        if s.kind == TaskKind.RENDER:
            correction_result(svc, s)
        else:
            success(svc, s)
    if corrections:
        st.subheader(t("task.corrections"))
        for c in corrections:
            if c.status in FINISHED:
                correction_result(svc, c)
    if running:
        live(svc, running)
    if s.status == SUCCESS and s.kind != TaskKind.RENDER:
        beat_grid_section(svc, s)
