"""The jobs this browser session created or opened: status, time, links, cancel."""

import time

import streamlit as st

from beatsync.contract import FINISHED
from beatsync.errors import BeatSyncError
from ui import i18n
from ui.i18n import t
from ui.state import my_tasks, service
from ui.task_view import cancel_button, refresh_on_change, status, status_detail

svc = service()
st.title(t("tasks.title"))

typed = st.text_input(t("task.open_id"), key="tasks_open_id")
if typed:
    st.switch_page("views/task.py", query_params={"task": typed.strip()})

ids = my_tasks()
unfinished = {}
if not ids:
    st.info(t("tasks.none"))
    st.page_link("views/upload.py", label=t("task.go_upload"), icon="🎵")
for tid in ids:
    try:
        s = status(svc, tid)
    except BeatSyncError as e:
        st.caption(f"`{tid}` · " + i18n.error(e))
        continue
    first = s.inputs.get("dance") or s.inputs.get("media")
    title = first.name if first is not None else "?"
    with st.container(border=True):
        c1, c2, c3 = st.columns([4, 2, 1])
        with c1:
            st.page_link("views/task.py", label=title, query_params={"task": tid}, icon="🎬")
            st.caption(t("tasks.created", t=time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created)))
                       + f" · `{tid[:8]}`")
        with c2:
            st.write(f"**{t('status.' + s.status)}** · {status_detail(s)}")
            if s.status not in FINISHED:
                st.progress(s.progress / 100.0)
                unfinished[tid] = (s.status, round(s.progress))
        with c3:
            if s.status not in FINISHED:
                cancel_button(svc, tid)

if unfinished:
    refresh_on_change(svc, unfinished)
