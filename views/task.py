"""A job's page (``/task?task=<id>``): live progress, then the two results, the beat grid and corrections."""

import streamlit as st

from ui.i18n import t
from ui.state import service
from ui.task_view import page

svc = service()
task_id = st.query_params.get("task")
if task_id:
    page(svc, task_id)
else:
    st.title(t("task.title"))
    st.info(t("task.none"))
    typed = st.text_input(t("task.open_id"), key="open_id")
    if typed:
        st.query_params["task"] = typed.strip()
        st.rerun()
    st.page_link("views/upload.py", label=t("task.go_upload"), icon="🎵")
    st.page_link("views/tasks.py", label=t("task.go_tasks"), icon="🗂️")
