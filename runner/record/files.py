"""Files as the run writes them: whole or not at all, and their sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from runner.record.trust import sha256_regular

PARTIAL = ".partial"  # a file being written; an interrupt can leave one behind


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a regular file's content (OSError for a FIFO or a device, which would
    never end); never cached."""
    return sha256_regular(path, follow=True)


def write_atomic(path: Path, data: bytes, syncer: Syncer | None = None) -> str:
    """Write DATA to PATH through a temporary file and a rename; return its sha256.

    Readers never see half a file. Without SYNCER the data is on disk before the rename;
    with one, the file is complete for every reader at once (a killed process loses
    nothing) and SYNCER makes it durable in the background.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL, dir=path.parent)
    try:
        with open(fd, "wb", closefd=False) as f:
            f.write(data)
        if syncer is None:
            os.fsync(fd)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; run directories are for sharing
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    if syncer is None:
        os.close(fd)
    else:
        syncer.add(fd)
    return sha256_bytes(data)


class Syncer:
    """fsyncs a run's files on a thread of its own, in the order they were written, so that a
    step never waits for the disk (an fsync takes from a tenth of a millisecond to several
    on a busy disk; a small model's generate step, a few).

    Files handed over with `add` are closed once on disk; a file handed over with `keep`
    (the step journal) stays open and is fsynced once a round, after the files before it.
    The kernel may still write a journal line back before the outputs it lists: after a
    power loss `verify` names such an output and a resumed run computes it again. A
    failure is raised in the writing thread, by the next `add`, `keep` or `close`.
    """

    EVERY = 0.05  # seconds between two rounds: a writer never wakes the thread itself
    BEHIND = 256  # files not yet on disk (each an open descriptor) before a writer waits

    def __init__(self) -> None:
        self._pending: deque[tuple[int, bool]] = deque()  # appends and pops are atomic
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: OSError | None = None

    def add(self, fd: int) -> None:
        """Make the file open as FD durable, then close it."""
        self._put(fd, close=True)

    def keep(self, fd: int) -> None:
        """Make what was written to FD so far durable; FD stays open."""
        self._put(fd, close=False)

    def close(self) -> None:
        """Wait until everything handed over is on disk."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._stop.clear()
        self._raise()

    def _put(self, fd: int, close: bool) -> None:
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="runner-fsync", daemon=True)
            self._thread.start()
        while len(self._pending) >= self.BEHIND:
            time.sleep(self.EVERY / 10)
        self._pending.append((fd, close))

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _work(self) -> None:
        while not self._stop.wait(self.EVERY):
            self._round()
        self._round()

    def _round(self) -> None:
        kept = set()
        while self._pending:
            fd, close = self._pending.popleft()
            if close:
                self._sync(fd)
                os.close(fd)
            else:
                kept.add(fd)
        for fd in kept:  # the journal once a round, after the outputs it lists
            self._sync(fd)

    def _sync(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as error:
            self._error = self._error or error
