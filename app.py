"""BeatSync web app entry point: ``streamlit run app.py`` serves the UI and the JSON API.

Streamlit finds the ``st.App`` below and serves it with uvicorn: the JSON API routes
(`beatsync.api`, under ``/api/``) sit next to the UI, and the lifespan starts this server
process's job workers once. Streamlit then runs this same file as the UI script (there
``__name__ == "__main__"``): navigation and shared resources; pages stay thin.
"""

import streamlit as st

if __name__ == "__main__":  # the UI script run
    st.set_page_config(page_title="BeatSync", page_icon="🎵", layout="wide")
    nav = st.navigation([st.Page("pages/home.py", title="BeatSync", icon="🎵", default=True)])
    nav.run()
else:  # imported by the server: the ASGI app with the API routes and the workers
    from beatsync import api

    app = st.App(__file__, routes=api.routes(), lifespan=api.lifespan)
