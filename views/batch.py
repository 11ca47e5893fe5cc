"""A batch's page (``/batch?batch=<id>``): several class videos of one routine with one song, each
take's progress and result, and a ZIP of them all."""

import streamlit as st

from ui.batch_view import index, page
from ui.state import service

svc = service()
batch_id = st.query_params.get("batch")
if batch_id:
    page(svc, batch_id)
else:
    index(svc)
