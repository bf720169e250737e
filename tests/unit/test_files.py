"""Files as a run writes them: whole for every reader at once, on disk soon after."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.record.files import PARTIAL, Syncer, sha256_bytes, write_atomic

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


def open_under(folder: Path) -> list[str]:
    """This process's open descriptors on files under FOLDER: the ones the test itself opened,
    whatever other tests' threads hold open elsewhere."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed between the listing and the look (the listing's own, say)
            continue
        if target.startswith(f"{folder.resolve()}/"):
            found.append(target)
    return found


def test_a_file_handed_to_the_syncer_is_whole_at_once_and_closed_once_on_disk(
    tmp_path: Path,
) -> None:
    syncer = Syncer()
    files = [tmp_path / f"outputs/{i:02d}-g/completions.jsonl" for i in range(50)]
    for i, file in enumerate(files):
        assert write_atomic(file, f"{i}\n".encode(), syncer) == sha256_bytes(f"{i}\n".encode())
        assert file.read_bytes() == f"{i}\n".encode()  # a reader sees it whole, now
    syncer.close()
    assert open_under(tmp_path) == []  # every descriptor closed once its file was on disk
    assert not list(tmp_path.rglob(f"*{PARTIAL}"))
    assert oct(files[0].stat().st_mode & 0o777) == "0o644"


def test_a_kept_file_stays_open_for_more_lines(tmp_path: Path) -> None:
    syncer = Syncer()
    with open(tmp_path / "journal.jsonl", "ab") as journal:
        for line in (b"1\n", b"2\n"):
            journal.write(line)
            journal.flush()
            syncer.keep(journal.fileno())
        syncer.close()
        journal.write(b"3\n")  # still open: the syncer did not close it
    assert (tmp_path / "journal.jsonl").read_bytes() == b"1\n2\n3\n"


def test_a_failed_fsync_is_raised_in_the_writing_thread_once() -> None:
    read, write = os.pipe()  # a pipe cannot be fsynced: EINVAL, a real failure
    syncer = Syncer()
    syncer.add(write)
    with pytest.raises(OSError):
        syncer.close()
    syncer.close()  # said once; a second close has nothing more to say
    os.close(read)
    with pytest.raises(OSError):
        os.fstat(write)  # closed all the same
