"""A class's group takes in one go: several class videos of one routine with one song (a batch).

`start` stores the files the upload page was given and queues one job (one class video) or a batch
(several); `page` draws a batch: each take's progress, then its recommended result, each linked to
its own job page, and a ZIP of all the finished results. It reads the job service and redraws
itself while any take runs (`ui.task_view.refresh_on_change`); it never runs a job.
"""

from __future__ import annotations

import time
from html import escape

import streamlit as st

from beatsync.contract import FAILED, FINISHED, SUCCESS, BatchStatus, Status
from beatsync.errors import BeatSyncError
from beatsync.service import BeatSync
from beatsync.zipstream import stream_zip
from ui import i18n, summary
from ui.i18n import t
from ui.state import my_batches, owner_token, remember, remember_batch
from ui.task_view import (
    DOWNLOAD_CSS,
    cancel_button,
    refresh_on_change,
    result_block,
    server_url,
    status_detail,
)

TAKES_PER_ROW = 3


def start(svc: BeatSync, dance_ids: list[str], bgm_id: str, options: dict) -> tuple[str, dict]:
    """Queue the job of the stored class video(s) and song (`ui.uploads`: stored when chosen): one class
    video, one job (its page); several, a batch (its page). Each job and the batch are remembered by
    this browser session. Returns the page to open and its query parameters (`BeatSyncError` as the
    service raises it: too many videos (`check_takes`), the queue full, ...)."""
    owner = owner_token()
    if len(dance_ids) == 1:
        sub = svc.submit(dance_ids[0], bgm_id, options, owner=owner)
        remember(sub.task_id)
        return "views/task.py", {"task": sub.task_id}
    batch = svc.submit_batch(dance_ids, bgm_id, options, owner=owner)
    for tid in reversed(batch.task_ids):  # (the first take first in "My jobs")
        remember(tid)
    remember_batch(batch.batch_id)
    return "views/batch.py", {"batch": batch.batch_id}


def load(svc: BeatSync, batch_id: str) -> BatchStatus | None:
    """The batch's status in the reader's language, or None after showing a friendly page (unknown,
    expired, malformed id)."""
    try:
        return svc.batch_status(batch_id, lang=i18n.current())
    except BeatSyncError as e:
        st.title(t("batch.error_title"))
        st.warning(i18n.error(e))
        st.page_link("views/upload.py", label=t("task.go_upload"), icon="🎵")
        return None


def take_name(s: Status) -> str:
    dance = s.inputs.get("dance")
    return dance.name if dance is not None else "?"


def zip_section(svc: BeatSync, b: BatchStatus) -> None:
    """The ZIP of every finished result (a link to the API, which streams it; or Streamlit's own
    download button where the API is not served), and which takes it does not hold yet."""
    if not b.zip_files:
        st.caption(t("batch.zip_none"))
        return
    label = t("batch.zip", n=len(b.zip_files))
    url = server_url(svc, b.zip_url)
    if url:
        st.markdown(f'<a href="{escape(url)}" download class="bs-download" data-zip="1">⬇ {escape(label)}</a>',
                    unsafe_allow_html=True)
    else:
        entries, name = svc.batch_zip(b.batch_id)
        st.download_button(label, data=lambda: b"".join(stream_zip(entries)), file_name=name,
                           mime="application/zip", key=f"zip-{b.batch_id}", on_click="ignore")
    names = {s.task_id: take_name(s) for s in b.tasks}
    missing = [names.get(tid) or t("batch.expired_take") for tid in b.zip_missing]
    if missing:
        st.caption(t("batch.zip_missing", names=t("batch.join").join(missing)))


def take_block(svc: BeatSync, s: Status, number: int) -> None:
    """One take: a link to its own job page, its state, then its progress (and Cancel), its
    recommended result, or what went wrong."""
    with st.container(border=True):
        st.page_link("views/task.py", label=t("batch.take", n=number, name=take_name(s)),
                     query_params={"task": s.task_id}, icon="🎬")
        st.write(f"**{t('status.' + s.status)}** · {status_detail(s)}")
        if s.status not in FINISHED:
            st.progress(min(1.0, s.progress / 100.0))
            cancel_button(svc, s.task_id)
        elif s.status == SUCCESS:
            best = summary.recommend(s).best
            if best is not None:
                result_block(svc, s, best)
        elif s.status == FAILED and s.error_code != "cancelled":
            h = i18n.hint(s.error_code, s.error_params)
            if h:
                st.caption(t("task.try", hint=h))


def page(svc: BeatSync, batch_id: str) -> None:
    """The whole batch page."""
    b = load(svc, batch_id)
    if b is None:
        return
    remember_batch(batch_id)
    st.markdown(DOWNLOAD_CSS, unsafe_allow_html=True)
    st.title(t("batch.title") if b.finished else t("batch.title_working"))
    st.markdown(t("batch.song", n=len(b.task_ids), song=b.song))
    st.caption(t("batch.id", id=batch_id))
    st.write(t("batch.counts", **{str(k): v for k, v in b.counts.items()}))
    if not b.finished:
        st.progress(min(1.0, b.progress / 100.0))
    zip_section(svc, b)
    numbers = {tid: i + 1 for i, tid in enumerate(b.task_ids)}
    per_row = min(TAKES_PER_ROW, len(b.tasks)) or 1  # (side by side on a wide screen; a phone stacks them)
    for row in range(0, len(b.tasks), per_row):
        for col, s in zip(st.columns(per_row), b.tasks[row:row + per_row], strict=False):
            with col:
                take_block(svc, s, numbers[s.task_id])
    unfinished = {s.task_id: (s.status, round(s.progress)) for s in b.tasks if s.status not in FINISHED}
    if unfinished:
        refresh_on_change(svc, unfinished)


def index(svc: BeatSync) -> None:
    """The page without a batch: this session's batches, or how to make one."""
    st.title(t("batch.title"))
    mine = []
    for bid in my_batches():
        try:
            mine.append(svc.batch_status(bid))
        except BeatSyncError:
            continue
    if not mine:
        st.info(t("batch.none"))
    for b in mine:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(b.created))
        st.page_link("views/batch.py", label=t("batch.link", song=b.song, n=len(b.task_ids), t=when),
                     query_params={"batch": b.batch_id}, icon="👯")
    st.page_link("views/upload.py", label=t("task.go_upload"), icon="🎵")
