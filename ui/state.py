"""The job service for the pages, the jobs (and batches) this browser session knows about, and its owner
token."""

from __future__ import annotations

import streamlit as st

from beatsync.owner import is_token, new_token
from beatsync.service import BeatSync, get_service

#: where the browser session keeps its owner token (`owner_token`)
OWNER_KEY = "owner_token"


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


def remember(task_id: str) -> None:
    mine = st.session_state.setdefault("my_tasks", [])
    if task_id not in mine:
        mine.insert(0, task_id)


def my_tasks() -> list[str]:
    return list(st.session_state.get("my_tasks", []))


def remember_batch(batch_id: str) -> None:
    """A batch (several class videos with one song) this browser session made or opened."""
    mine = st.session_state.setdefault("my_batches", [])
    if batch_id not in mine:
        mine.insert(0, batch_id)


def my_batches() -> list[str]:
    return list(st.session_state.get("my_batches", []))


def launched(task_id: str, where: str) -> None:
    """Remember where on the page a correction was asked for (its progress is shown there)."""
    st.session_state.setdefault("launched", {})[task_id] = where


def launched_from(where: str) -> list[str]:
    """The corrections this session asked for from ``where`` (newest last)."""
    return [tid for tid, w in st.session_state.get("launched", {}).items() if w == where]
