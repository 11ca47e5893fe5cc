"""Upload page: the class video (or several: a class's group takes), the song, the options that
matter, one Sync button.

Each chosen file is stored and checked at once (`ui.uploads`), so a file that cannot be used says why
under its slot before anything is submitted. Sync queues the job and opens its page
(``/task?task=<id>``); several class videos queue one job each, as a batch, and open the batch's
page (``/batch?batch=<id>``). The jobs run in a background worker, never in this script run.
"""

import streamlit as st

from beatsync.contract import FILLS, Options
from beatsync.errors import BeatSyncError
from ui import uploads
from ui.batch_view import start
from ui.i18n import error, t
from ui.state import service

svc = service()
defaults = Options()
limit_mb = int(st.get_option("server.maxUploadSize"))

st.title(t("upload.title"))
st.write(t("upload.intro"))

left, right = st.columns(2)
with left:
    dances, bad_dance = uploads.slots(svc, t("upload.video"), "dance", key="dance",
                                      help=t("upload.video_help", types=uploads.types_text("dance"), max=svc.max_takes))
    if len(dances) > 1:
        st.caption(t("upload.several", n=len(dances)))
with right:
    song = uploads.slot(svc, t("upload.song"), "bgm", key="song",
                        help=t("upload.song_help", types=uploads.types_text("bgm")))
st.caption(t("upload.limit", mb=limit_mb))

with st.expander(t("upload.options")):
    trim = st.toggle(t("upload.trim"), value=defaults.trim, help=t("upload.trim_help"), key="trim")
    # (the slider offers up to 10 s of the 0-30 the options allow: more is never needed in practice)
    margin = st.slider(t("upload.margin"), 0.0, 10.0, defaults.margin_s, 0.5, disabled=not trim, key="margin")
    fill_labels = {v: t(f"upload.fill_{v}") for v in FILLS}
    fill = st.radio(t("upload.fill"), list(fill_labels), key="fill", horizontal=True,
                    format_func=fill_labels.__getitem__)

ready = bool(dances) and not bad_dance and song is not None
if st.button(t("upload.sync"), type="primary", disabled=not ready, key="sync"):
    try:
        target, params = start(svc, [d.file_id for d in dances], song.file_id,
                               {"trim": trim, "margin_s": margin, "fill": fill})
    except BeatSyncError as e:
        st.error(error(e))
    else:
        st.switch_page(target, query_params=params)
elif not ready:
    st.caption(t("upload.fix_files") if bad_dance else t("upload.need_both"))

st.divider()
st.caption(t("upload.how"))
