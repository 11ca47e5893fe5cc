"""The job service for the pages, the jobs (and batches) this browser knows about, and its owner token.

The owner token lives in the browser's local storage (`remember_device`: a small component with no
picture, ``ui/device_component/``), so a reload or a browser restart on the same device finds the
same token, hence the same jobs ("My jobs" lists what the token made: `my_jobs`), and no other
browser sees them. A session starts with a token of its own; when the browser answers with the one
it keeps, the session adopts it and still holds its first one, so nothing made in between is lost.
"""

from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from beatsync.errors import BeatSyncError
from beatsync.owner import is_token, new_token
from beatsync.service import BeatSync, get_service

#: where the browser session keeps its owner token (`owner_token`), and the others it held
OWNER_KEY = "owner_token"
EARLIER_KEY = "owner_tokens_earlier"
DEVICE_KEY = "device-token"
DEVICE_FOLDER = Path(__file__).with_name("device_component")


@st.cache_resource(show_spinner=False)
def service() -> BeatSync:
    """The process's job service, with its workers started once per server process (the server's
    lifespan usually started them already; this covers a plain script run such as AppTest)."""
    svc = get_service()
    svc.start_workers()
    return svc


def owner_token() -> str:
    """This browser session's owner token: what it uploads and submits is owned by it, so only this
    session can cancel, rerun or correct its jobs (a shared link is read-only). Made once per
    session; the one parameter every controlling service call takes (``owner=``)."""
    token = st.session_state.get(OWNER_KEY)
    if not is_token(token):
        token = st.session_state[OWNER_KEY] = new_token()
    return token


def owner_tokens() -> list[str]:
    """Every owner token this session holds: the browser's (first), then any it had before adopting
    it. What the controlling calls present (a job made with any of them is this browser's)."""
    return [owner_token(), *st.session_state.get(EARLIER_KEY, [])]


@functools.cache
def _device():
    """The local-storage component, declared once per process (from a script run)."""
    return components.declare_component("device_token", path=str(DEVICE_FOLDER))


def remember_device() -> None:
    """Keep the owner token in the browser (called by every page run, before the page): the browser
    stores the session's token when it has none, else answers the one it has, which the session adopts."""
    value = _device()(token=owner_token(), key=DEVICE_KEY, default=None)
    current = owner_token()
    if is_token(value) and value != current:
        earlier = st.session_state.setdefault(EARLIER_KEY, [])
        if current not in earlier:
            earlier.insert(0, current)
        del earlier[7:]
        st.session_state[OWNER_KEY] = value


def my_jobs(svc: BeatSync, *, lang: str) -> list:
    """The status objects of this browser's jobs (made with its tokens), newest first, then the jobs
    this session opened by link, which it does not own."""
    try:
        own = svc.my_tasks(owner_tokens(), lang=lang)
    except BeatSyncError:
        own = []
    seen = {s.task_id for s in own}
    opened = []
    for tid in my_tasks():
        if tid not in seen:
            try:
                opened.append(svc.status(tid, lang=lang))
            except BeatSyncError:
                continue
            seen.add(tid)
    return own + opened


def _remember(key: str, item: str) -> None:
    """Put ``item`` first in this session's list ``key`` (once)."""
    mine = st.session_state.setdefault(key, [])
    if item not in mine:
        mine.insert(0, item)


def remember(task_id: str) -> None:
    """A job this browser session made or opened."""
    _remember("my_tasks", task_id)


def my_tasks() -> list[str]:
    return list(st.session_state.get("my_tasks", []))


def remember_batch(batch_id: str) -> None:
    """A batch (several class videos with one song) this browser session made or opened."""
    _remember("my_batches", batch_id)


def my_batches() -> list[str]:
    return list(st.session_state.get("my_batches", []))


def launched(task_id: str, where: str) -> None:
    """Remember where on the page a correction was asked for (its progress is shown there)."""
    st.session_state.setdefault("launched", {})[task_id] = where


def launched_from(where: str) -> list[str]:
    """The corrections this session asked for from ``where`` (newest last)."""
    return [tid for tid, w in st.session_state.get("launched", {}).items() if w == where]
