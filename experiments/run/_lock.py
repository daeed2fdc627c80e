"""One writer per run folder: an exclusive lock file holding the writer's pid, host and start time.

Stage: run. May import experiments.errors.

The lock file is created with O_CREAT | O_EXCL, so of two runs started into one folder
exactly one gets it and the other is refused at once. A lock left by a process that died
on this host (its pid no longer alive) is stale: it is taken over and the takeover is
reported, so the run folder's manifest can say it. A lock from another host cannot be
checked and is never taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from experiments.errors import RunFolderError

LOCK_NAME = ".paribus.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a run folder's lock."""

    pid: int
    host: str
    started_at: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.started_at}"


class FolderLock:
    """The lock this process holds on a run folder; `taken_over` is the dead holder whose stale lock it replaced."""

    def __init__(self, path: Path, text: str, taken_over: LockHolder | None) -> None:
        self.path = path
        self.taken_over = taken_over
        self._text = text
        self._held = True

    def release(self) -> None:
        """Remove the lock file if it is still this process's; a second call does nothing."""
        if self._held and _read(self.path) == self._text:
            self.path.unlink(missing_ok=True)
        self._held = False


def acquire_lock(folder: Path) -> FolderLock:
    """Lock `folder` (which must exist) for this process; RunFolderError naming the holder when another has it."""
    path = folder / LOCK_NAME
    mine = LockHolder(os.getpid(), socket.gethostname(), datetime.now(timezone.utc).isoformat(timespec="seconds"))
    text = json.dumps(asdict(mine))
    taken_over = None
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            found = _read(path)
            if found is None:  # released between our attempt and the read
                continue
            holder = _holder(found)
            if holder is None or holder.host != mine.host or _alive(holder.pid):
                raise RunFolderError(_held_message(folder, path, holder, mine.host)) from None
            if _set_aside(path, found):
                taken_over = holder
            continue
        except OSError as error:
            raise RunFolderError(
                f"run folder {str(folder)!r}: cannot create its lock file {LOCK_NAME}: {error}; "
                "choose a folder you can write to"
            ) from None
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return FolderLock(path, text, taken_over)
    raise RunFolderError(
        f"run folder {str(folder)!r}: its lock file {LOCK_NAME} keeps changing hands; "
        "another process is starting runs into this folder, wait for it or choose another folder"
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _holder(text: str) -> LockHolder | None:
    """The holder a lock file names, or None when it names none (a lock being written, or a damaged one)."""
    try:
        data = json.loads(text)
        holder = LockHolder(int(data["pid"]), str(data["host"]), str(data["started_at"]))
    except (ValueError, TypeError, KeyError):
        return None
    return holder if holder.pid > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _set_aside(path: Path, stale: str) -> bool:
    """Remove the stale lock `stale`; False when another process took it over first.

    The lock is renamed aside before it is removed: a rename is atomic, and the renamed
    file's text shows whether it was still the stale lock or already a newer holder's,
    which is then put back (os.link never replaces an existing file).
    """
    aside = path.with_name(f"{path.name}.{os.getpid()}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if _read(aside) == stale:
        aside.unlink()
        return True
    with contextlib.suppress(FileExistsError):  # a third process locked it meanwhile: it is the holder now
        os.link(aside, path)
    aside.unlink()
    return False


def _held_message(folder: Path, path: Path, holder: LockHolder | None, host: str) -> str:
    if holder is None:
        who = f"a lock file whose holder cannot be read ({path})"
    elif holder.host != host:
        who = f"{holder.describe()} (another host: whether it still runs cannot be checked from here)"
    else:
        who = holder.describe()
    return (
        f"run folder {str(folder)!r} is being written by another run: {who}; one writer per folder. "
        f"Wait for that run to end or choose another --out; if no run is writing there, delete {path}"
    )
