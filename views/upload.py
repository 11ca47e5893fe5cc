"""Upload page: the class video (or several: a class's group takes), the song, the options that
matter, one Sync button.

Submitting stores the files, queues the job and opens its page (``/task?task=<id>``); several class
videos queue one job each, as a batch, and open the batch's page (``/batch?batch=<id>``). The jobs
run in a background worker, never in this script run.
"""

import streamlit as st

from beatsync.contract import DANCE_EXTS, FILLS, SONG_EXTS, Options
from beatsync.errors import BeatSyncError
from ui.batch_view import start
from ui.i18n import error, t
from ui.state import service

svc = service()
defaults = Options()
limit_mb = int(st.get_option("server.maxUploadSize"))

st.title(t("upload.title"))
st.write(t("upload.intro"))

video_types = [e[1:] for e in DANCE_EXTS]
song_types = [e[1:] for e in SONG_EXTS]
left, right = st.columns(2)
with left:
    dances = st.file_uploader(t("upload.video"), type=video_types, key="dance", accept_multiple_files=True,
                              help=t("upload.video_help", types=", ".join(video_types), max=svc.max_takes))
    if len(dances) > 1:
        st.caption(t("upload.several", n=len(dances)))
with right:
    song = st.file_uploader(t("upload.song"), type=song_types, key="song",
                            help=t("upload.song_help", types=", ".join(song_types)))
st.caption(t("upload.limit", mb=limit_mb))

with st.expander(t("upload.options")):
    trim = st.toggle(t("upload.trim"), value=defaults.trim, help=t("upload.trim_help"), key="trim")
    # (the slider offers up to 10 s of the 0-30 the options allow: more is never needed in practice)
    margin = st.slider(t("upload.margin"), 0.0, 10.0, defaults.margin_s, 0.5, disabled=not trim, key="margin")
    fill_labels = {v: t(f"upload.fill_{v}") for v in FILLS}
    fill = st.radio(t("upload.fill"), list(fill_labels), key="fill", horizontal=True,
                    format_func=fill_labels.__getitem__)

if st.button(t("upload.sync"), type="primary", disabled=not dances or song is None, key="sync"):
    try:
        with st.spinner(t("upload.uploading")):
            target, params = start(svc, dances, song, {"trim": trim, "margin_s": margin, "fill": fill})
    except BeatSyncError as e:
        st.error(error(e))
    else:
        st.switch_page(target, query_params=params)
elif not dances or song is None:
    st.caption(t("upload.need_both"))

st.divider()
st.caption(t("upload.how"))
