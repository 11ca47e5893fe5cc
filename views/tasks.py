"""My jobs: the jobs this browser started (kept with its owner token in its local storage, so the list
survives reloads and browser restarts and no other browser sees it) and the ones it opened by link:
status, a one-line summary, links, cancel."""

import time

import streamlit as st

from beatsync.contract import FINISHED, SUCCESS
from ui import i18n, summary
from ui.i18n import clock, t
from ui.state import my_jobs, service
from ui.task_view import cancel_button, refresh_on_change, status_detail

svc = service()
st.title(t("tasks.title"))


def line(s) -> str:
    """What the list says of a job after its status word: its stage, time or error, and for a finished
    sync the summary (`ui.summary.job_line`)."""
    parts = [status_detail(s)]
    if s.status == SUCCESS:
        for key, params in summary.job_line(s):
            if key == "line.music":
                params = {"video": clock(params["video"]), "song": clock(params["song"])}
            parts.append(t(key, **params))
    return " · ".join(p for p in parts if p)


typed = st.text_input(t("task.open_id"), key="tasks_open_id")
if typed:
    st.switch_page("views/task.py", query_params={"task": typed.strip()})

jobs = my_jobs(svc, lang=i18n.current())
unfinished = {}
if not jobs:
    st.info(t("tasks.none"))
    st.page_link("views/upload.py", label=t("task.go_upload"), icon="🎵")
else:
    st.caption(t("tasks.private"))
for s in jobs:
    first = s.inputs.get("dance") or s.inputs.get("media")
    title = first.name if first is not None else "?"
    with st.container(border=True, key=f"job-{s.task_id}"):
        c1, c2, c3 = st.columns([4, 3, 1])
        with c1:
            st.page_link("views/task.py", label=title, query_params={"task": s.task_id}, icon="🎬")
            if s.batch_id:
                st.page_link("views/batch.py", label=t("task.batch"), icon="👯", query_params={"batch": s.batch_id})
            st.caption(t("tasks.created", t=time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created)))
                       + f" · `{s.task_id[:8]}`")
        with c2:
            st.markdown(f"**{t('status.' + s.status)}** · {line(s)}")
            if s.status not in FINISHED:
                st.progress(s.progress / 100.0)
                unfinished[s.task_id] = (s.status, round(s.progress))
        with c3:
            if s.status not in FINISHED:
                cancel_button(svc, s.task_id)

if unfinished:
    refresh_on_change(svc, unfinished)
