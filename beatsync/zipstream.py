"""A ZIP archive written while it is sent: `stream_zip` yields its bytes as it reads the files, so a
batch's results (a few hundred MB of video) never sit in memory, and the first bytes leave at once.

The files are stored, not deflated (an mp4 is compressed already: deflating it costs CPU and saves
nothing). The archive is written to a stream that cannot seek, so each entry's CRC and sizes follow
its data in a data descriptor, as the ZIP format allows; the central directory at the end has them
too (ZIP64 when a file or the archive passes 4 GB). Names are UTF-8.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

CHUNK_BYTES = 1 << 20


class _Sink:
    """A write-only stream that keeps what was written until `take` hands it on."""

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def stream_zip(entries: Iterable[tuple[str, str | Path]], *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The bytes of a ZIP of ``entries`` ((name in the archive, file path) pairs), stored, in chunks of
    about ``chunk_bytes``."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, path in entries:
            info = zipfile.ZipInfo.from_file(path, arcname=name)
            info.compress_type = zipfile.ZIP_STORED
            with open(path, "rb") as src, zf.open(info, "w") as dst:
                while chunk := src.read(chunk_bytes):
                    dst.write(chunk)
                    if out := sink.take():
                        yield out
            if out := sink.take():
                yield out
    if out := sink.take():
        yield out


__all__ = ["stream_zip"]
