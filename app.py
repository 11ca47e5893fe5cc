"""BeatSync web app entry point: navigation and shared resources; pages stay thin.

Run with ``streamlit run app.py``. The upload/status pages arrive with the task system (they
must not run a job inside a script run); until then the app explains how to use the engine.
"""

import streamlit as st

st.set_page_config(page_title="BeatSync", page_icon="🎵", layout="wide")

nav = st.navigation([st.Page("pages/home.py", title="BeatSync", icon="🎵", default=True)])
nav.run()
