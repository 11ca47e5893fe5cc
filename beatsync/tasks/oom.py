"""Whether the kernel killed a process for lack of memory while a job ran: its own counters, read
before and after.

A job process (or its ffmpeg) that dies of SIGKILL may have been killed by the kernel's
out-of-memory killer, or by anyone else (an operator's ``kill -9``, a container runtime). The
kernel counts its out-of-memory kills per memory cgroup: ``oom_kill`` in ``memory.events`` (cgroup
v2; a cgroup's count includes its descendants') or in ``memory.oom_control`` (cgroup v1). `OomWatch`
reads the counters of the cgroups a job process is in (and their ancestors) when it starts and
again when it ends: a count that went up is the kernel's word that it killed for memory meanwhile.
Only when no cgroup counter can be read at all does it fall back to the machine-wide count
(``oom_kill`` in ``/proc/vmstat``). Nothing else is taken as evidence: without it a crash says only
"killed by signal N".
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["OomWatch", "oom_counters"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
VMSTAT = Path("/proc/vmstat")


def _read_count(path: Path) -> int | None:
    """The ``oom_kill`` line of a ``memory.events``, ``memory.oom_control`` or ``vmstat`` file."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value.strip())
    return None


def _cgroup_files(pid: int, root: Path) -> list[Path]:
    """The out-of-memory counter files of ``pid``'s memory cgroups and their ancestors (v2 and v1)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    files: list[Path] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, rel = parts
        if controllers == "":  # cgroup v2 (unified)
            base, name = root, "memory.events"
            if not (root / "cgroup.controllers").exists() and (root / "unified").is_dir():
                base = root / "unified"  # hybrid layout
        elif "memory" in controllers.split(","):
            base, name = root / "memory", "memory.oom_control"
        else:
            continue
        rel_parts = [p for p in rel.split("/") if p]
        for i in range(len(rel_parts), -1, -1):  # the cgroup itself, then each ancestor up to the root
            files.append(base.joinpath(*rel_parts[:i], name))
    return files


def oom_counters(pids=(), *, root: Path = CGROUP_ROOT, vmstat: Path = VMSTAT) -> dict[str, int]:
    """``{counter file: out-of-memory kills so far}`` for the memory cgroups of ``pids`` (and this
    process) that can be read; the machine-wide count only when none can."""
    out: dict[str, int] = {}
    for pid in {os.getpid(), *pids}:
        for f in _cgroup_files(pid, root):
            if str(f) not in out:
                n = _read_count(f)
                if n is not None:
                    out[str(f)] = n
    if not out:
        n = _read_count(vmstat)
        if n is not None:
            out[str(vmstat)] = n
    return out


class OomWatch:
    """The out-of-memory kill counters of a job's cgroups, from its start: `add` a process (again
    once it may have moved into a cgroup of its own, e.g. a ``systemd-run --scope`` memory cap),
    `killed` at its end."""

    def __init__(self, pid: int | None = None, *, root: Path = CGROUP_ROOT, vmstat: Path = VMSTAT):
        self.root, self.vmstat = root, vmstat
        self.before: dict[str, int] = {}
        self.add(pid)

    def add(self, pid: int | None) -> None:
        with contextlib.suppress(Exception):  # never let a /proc or /sys oddity fail a job
            counts = oom_counters([pid] if pid else [], root=self.root, vmstat=self.vmstat)
            for f, n in counts.items():
                self.before.setdefault(f, n)

    def killed(self) -> str | None:
        """The counter file whose count went up since it was first read (the kernel killed for
        memory there meanwhile), or None. A cgroup removed meanwhile (a memory-capped scope that
        ended with its process) is covered by its ancestors' counters, which include it (v2)."""
        for f, n in self.before.items():
            now = _read_count(Path(f))
            if now is not None and now > n:
                return f
        return None
