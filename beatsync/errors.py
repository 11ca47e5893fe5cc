"""One exception type for everything a user can cause, with a stable machine-readable code.

A `BeatSyncError` carries a ``code`` (e.g. ``"no_audio"``) and ``params`` so that a UI can show
the message in the reader's language; ``str(err)`` is the English message, one line.
"""

from __future__ import annotations


class BeatSyncError(Exception):
    """An error the user can act on (bad input, song not found, ...).

    Parameters
    ----------
    code : str
        Stable machine-readable code, e.g. ``"no_audio"``, ``"song_not_found"``.
    message : str
        One line of English a user understands.
    **params
        Values the message refers to (file names, seconds), for translation.
    """

    def __init__(self, code: str, message: str, **params):
        super().__init__(message)
        self.code = code
        self.message = message
        self.params = params

    def __reduce__(self):  # picklable (Celery and multiprocessing pass exceptions between processes)
        return _rebuild, (type(self), self.code, self.message, self.params)

    def renamed(self, names: dict[str, str]) -> BeatSyncError:
        """The same error with stored file names (``dance.mp4``) replaced by the names the user knows."""
        msg, params = self.message, dict(self.params)
        for stored, shown in names.items():
            msg = msg.replace(stored, shown)
            params = {k: (v.replace(stored, shown) if isinstance(v, str) else v) for k, v in params.items()}
        return _rebuild(type(self), self.code, msg, params)

    def prefixed(self, prefix: str, **params) -> BeatSyncError:
        """The same error with ``prefix`` before its message and ``params`` added (which of several
        files it is about)."""
        return _rebuild(type(self), self.code, prefix + self.message, {**self.params, **params})

    def to_dict(self) -> dict:
        return {"error": self.message, "error_code": self.code, **({"error_params": self.params} if self.params else {})}


def _rebuild(cls, code: str, message: str, params: dict) -> BeatSyncError:
    err = BeatSyncError(code, message, **params)
    err.__class__ = cls
    return err


class MediaError(BeatSyncError):
    """A file could not be read or written as media."""


class AlignmentError(BeatSyncError):
    """The song could not be located in the recording."""


class ParameterError(BeatSyncError, ValueError):
    """A bad parameter passed to a numeric function (programming error, not user input)."""

    def __init__(self, message: str):
        super().__init__("bad_parameter", message)
