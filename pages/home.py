"""Landing page: what BeatSync does and how to run a sync today (command line)."""

import streamlit as st

from beatsync.pipeline import DANCE_EXTS, SONG_EXTS

st.title("BeatSync")
st.write(
    "Put the clean song under your dance-class video, in sync to a few milliseconds, "
    "and cut the silent parts before and after the music."
)
st.info(
    "The upload page with live progress is being built on the background task system. "
    "Until it lands, run a sync from the command line on the machine that hosts this app:"
)
st.code("python -m beatsync process class.mp4 song.mp3 --out results/", language="bash")
st.write(
    "This writes `results/class_modular.mp4` and `results/class_v2.mp4`: two independent "
    "alignments (feature fusion with sample-precise refinement, and beat-grid) so you can compare."
)
st.caption(
    "Class videos: " + ", ".join(e[1:] for e in DANCE_EXTS)
    + ". Songs: " + ", ".join(e[1:] for e in SONG_EXTS) + " (a video's sound counts as the song)."
)
