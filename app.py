"""BeatSync web app entry point: ``streamlit run app.py`` serves the UI and the JSON API.

Streamlit finds the ``st.App`` below and serves it with uvicorn: the JSON API routes
(`beatsync.api`, under ``/api/``) sit next to the UI, and the lifespan starts this server
process's job workers once. Streamlit then runs this same file as the UI script (there
``__name__ == "__main__"``): navigation, language and the shared job service; pages stay thin.
"""

import streamlit as st

if __name__ == "__main__":  # the UI script run
    from ui import style
    from ui.i18n import language_switch, t
    from ui.state import remember_device, service

    st.set_page_config(page_title="BeatSync", page_icon="🎵", layout="wide")
    style.apply()
    service()  # workers start once per server process
    language_switch()
    remember_device()  # this browser's owner token, kept in its local storage ("My jobs" survives reloads)
    pages = [
        st.Page("views/upload.py", title=t("nav.upload"), icon="🎵", url_path="upload", default=True),
        st.Page("views/task.py", title=t("nav.task"), icon="🎬", url_path="task"),
        st.Page("views/batch.py", title=t("nav.batch"), icon="👯", url_path="batch"),
        st.Page("views/tasks.py", title=t("nav.tasks"), icon="🗂️", url_path="tasks"),
        st.Page("views/explore.py", title=t("nav.explore"), icon="🥁", url_path="explore"),
    ]
    st.navigation(pages).run()
else:  # imported by the server: the ASGI app with the API routes and the workers
    from beatsync import api

    app = st.App(__file__, routes=api.routes(), middleware=api.middleware(), lifespan=api.lifespan)
