"""The sync preview on a job's page: a custom component (``ui/preview_component/``: plain HTML and
JavaScript, no build step) that plays the class video muted with the clean song in the browser,
laid along an alignment's segments. Nudging, the A/B loop and the sound toggle live in the browser
(no script rerun); "Render this" sends the nudge back once, and `on_render` turns it into a
correction job (the service's `submit_render` with this session's owner token, the same as the
correction panel's). Only a session that owns the task sees "Render this" (``mine``); anyone with
the link can listen.

The browser fetches the task's inputs from the API (``GET /api/task/{id}/input/{dance|bgm}``, with
Range), so the preview needs the API served by this process (`BeatSync.serves_api`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from beatsync.align.quick import QUICK
from beatsync.contract import ENGINES, FINISHED, SUCCESS, Status, TaskKind, input_url
from beatsync.errors import BeatSyncError
from beatsync.service import BeatSync
from ui import i18n
from ui.i18n import t
from ui.state import launched, owner_tokens, remember

FOLDER = Path(__file__).with_name("preview_component")
#: what the component's labels are called in ui.i18n (``pv.<name>``)
LABELS = ("title", "play", "pause", "sound", "song", "original", "loop", "nudge", "nudge_input", "minus_frame",
          "plus_frame", "earlier", "later", "reset", "ms", "variant", "render", "render_later", "render_nudge_first",
          "sent", "song_at", "no_song", "preliminary", "waiting", "cannot_play", "video", "bgm")


@functools.cache
def _component():
    """The component, declared once per process (from a script run: Streamlit registers it then)."""
    return components.declare_component("sync_preview", path=str(FOLDER))


def alignments(s: Status) -> tuple[dict[str, dict], bool]:
    """The alignments the preview can play (name -> alignment data), and whether there is only the
    first estimate so far. A finished job's: its results; a running one's: each method's as soon as
    the job published it, else the estimate."""
    p = s.preview
    found = {v: p.variants[v] for v in ENGINES if v in p.variants}
    if s.status == SUCCESS:
        found = {v: d.alignment for v, d in s.variants.items() if d.alignment is not None} or found
    if found:
        return {v: al.model_dump(mode="json", include={"engine", "offset_s", "segments", "confidence"})
                for v, al in found.items()}, False
    if p.quick is not None:
        return {QUICK: p.quick.model_dump(mode="json", include={"engine", "offset_s", "segments", "confidence"})}, True
    return {}, False


def labels() -> dict[str, str]:
    out = {name: t(f"pv.{name}") for name in LABELS}
    out["lang"] = i18n.current()
    return out


def on_render(svc: BeatSync, task_id: str, key: str) -> None:
    """The component's "Render this": a correction job of that variant moved by that nudge (once per
    click: each click sends a new counter)."""
    value = st.session_state.get(key) or {}
    if value.get("action") != "render":
        return
    try:
        sub = svc.submit_render(task_id, str(value.get("variant")), nudge_ms=round(float(value.get("nudge_ms", 0)), 1),
                                owner=owner_tokens())
    except (BeatSyncError, TypeError, ValueError) as e:
        st.session_state[f"{key}-error"] = i18n.error(e) if isinstance(e, BeatSyncError) else str(e)
        return
    st.session_state.pop(f"{key}-error", None)
    remember(sub.task_id)
    launched(sub.task_id, "preview")


def sync_preview(svc: BeatSync, s: Status, *, base_url: str, choice: str | None = None, mine: bool = False) -> None:
    """The preview of task ``s`` (its inputs from ``base_url``, this server's address), playing the
    ``choice`` result first. While a job runs it is there before any alignment is known, so that the
    browser loads the video and the song meanwhile and plays the moment the song is placed; a
    finished job without an alignment has none. ``mine``: this session owns the
    task, so the preview offers "Render this" (else it only plays)."""
    found, preliminary = alignments(s)
    if not found and s.status in FINISHED:
        return
    key = f"preview-{s.task_id}"
    can_render = {v: mine and s.status == SUCCESS and s.kind == TaskKind.PROCESS for v in found if v != QUICK}
    first = next((a for a in found.values()), None)
    start = min(g["dance_start_s"] for g in first["segments"]) if first and first["segments"] else 0.0
    _component()(
        video_url=base_url + input_url(s.task_id, "dance"), song_url=base_url + input_url(s.task_id, "bgm"),
        alignments=found, choice=choice if choice in found else next(iter(found), None), frame_rate=s.preview.frame_rate,
        start_at_s=max(0.0, round(start - 1.0, 2)), can_render=can_render, mine=mine, labels=labels(),
        variant_labels={QUICK: t("pv.quick")}, state_key=s.task_id,
        key=key, default=None, on_change=functools.partial(on_render, svc, s.task_id, key))
    if st.session_state.get(f"{key}-error"):
        st.warning(st.session_state[f"{key}-error"])
