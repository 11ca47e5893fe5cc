"""A file chosen in one of the pages' slots (the class video, the song), stored and checked at once,
so that a file that cannot be used gets its reason next to its slot, in the reader's language, before
anything is submitted.

The slots take any file (a type filter would only mark a wrong file with a bare "!"); `slot_problem`
says why a file's type does not fit the slot (a song in the class video's slot is told to go in the
song's), and `stored` keeps the file in the job service (`BeatSync.upload_file`: size, free disk, a
probe and a decode of its start, middle and end) once per chosen file, owned by this browser's token.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from beatsync.contract import DANCE_EXTS, SONG_EXTS, UploadInfo
from beatsync.errors import BeatSyncError
from beatsync.service import BeatSync
from ui import i18n
from ui.i18n import t
from ui.state import owner_token

#: the file types each slot takes (a role of `beatsync.service.UPLOAD_ROLES`)
SLOT_EXTS = {"dance": DANCE_EXTS, "bgm": SONG_EXTS, "media": SONG_EXTS}
_STORED = "stored_uploads"  # session state: (widget file id, role) -> (UploadInfo | None, problem | None)


def types_text(role: str) -> str:
    return ", ".join(e[1:] for e in SLOT_EXTS[role])


def slot_problem(name: str, role: str) -> str | None:
    """Why a file called ``name`` cannot go in the ``role`` slot by its type (None when it can)."""
    ext = Path(name).suffix.lower()
    if ext in SLOT_EXTS[role]:
        return None
    if role == "dance" and ext in SONG_EXTS:
        return t("upload.song_in_video_slot", name=name, types=types_text("dance"))
    return t("upload.wrong_type", name=name, types=types_text(role))


def stored(svc: BeatSync, file, role: str) -> tuple[UploadInfo | None, str | None]:
    """The chosen ``file`` (a Streamlit ``UploadedFile``, or None) stored and checked for the ``role``
    slot, once per chosen file: ``(its upload, None)``, or ``(None, why it cannot be used)``."""
    if file is None:
        return None, None
    memo = st.session_state.setdefault(_STORED, {})
    key = (getattr(file, "file_id", None) or f"{file.name}:{file.size}", role)
    if key not in memo:
        problem = slot_problem(file.name, role)
        if problem is not None:
            memo[key] = (None, problem)
        else:
            try:
                with st.spinner(t("upload.checking", name=file.name)):
                    memo[key] = (svc.upload_file(file.name, file, role=role, owner=owner_token()), None)
            except BeatSyncError as e:
                memo[key] = (None, i18n.error(e))
    return memo[key]


def slot(svc: BeatSync, label: str, role: str, *, key: str, help: str | None = None) -> UploadInfo | None:
    """A file slot: the uploader, then the chosen file's problem right under it; returns the stored
    upload (None while nothing usable is chosen)."""
    file = st.file_uploader(label, key=key, help=help)
    info, problem = stored(svc, file, role)
    if problem:
        st.error(problem, icon="⚠️")
    return info


def slots(svc: BeatSync, label: str, role: str, *, key: str, help: str | None = None) -> tuple[list[UploadInfo], bool]:
    """A slot that takes several files: the uploads stored (in the order chosen), and whether any chosen
    file cannot be used (each one's problem is shown under the slot)."""
    files = st.file_uploader(label, key=key, help=help, accept_multiple_files=True) or []
    infos, bad = [], False
    for f in files:
        info, problem = stored(svc, f, role)
        if problem:
            st.error(problem, icon="⚠️")
            bad = True
        elif info is not None:
            infos.append(info)
    return infos, bad
