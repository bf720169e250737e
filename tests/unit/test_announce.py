"""Before its first step a run says what it is doing: a builtin being made on first use is
announced on the run's progress, with its time, and only while it is made."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import runner.builtin as builtin
from runner.builtin.entry import Builtin
from runner.running.announce import announcing


def test_a_builtin_made_on_first_use_is_announced_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    made: list[Path] = []

    def make(folder: Path, base: Path | None) -> None:
        made.append(folder)
        (folder / "config.json").write_text("{}")

    fake = {"tiny-thing": Builtin("model", "transformers", make)}
    monkeypatch.setattr(builtin, "catalog", lambda: fake)
    heard: list[str] = []
    with announcing(heard.append):
        first = builtin.resolve("tiny-thing")
        again = builtin.resolve("tiny-thing")  # already made: nothing to say
    assert first == again and len(made) == 1
    assert len(heard) == 2, heard
    assert heard[0] == "    making builtin:tiny-thing (first use, kept in the cache) ..."
    assert heard[1].startswith("    made builtin:tiny-thing in ") and heard[1].endswith("s")


def test_a_builtin_being_made_elsewhere_is_waited_for_and_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two makers at once (test workers, a batch's processes): the second waits on the
    first's lock, says so, and takes the first's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    making, finish = threading.Event(), threading.Event()
    made: list[Path] = []

    def make(folder: Path, base: Path | None) -> None:
        made.append(folder)
        making.set()
        assert finish.wait(30)
        (folder / "config.json").write_text("{}")

    monkeypatch.setattr(builtin, "catalog", lambda: {"t": Builtin("model", "transformers", make)})
    folders: list[Path] = []
    heard: list[str] = []

    def waiter() -> None:
        with announcing(heard.append):
            folders.append(builtin.resolve("t"))

    first = threading.Thread(target=lambda: folders.append(builtin.resolve("t")))
    second = threading.Thread(target=waiter)
    first.start()
    try:
        assert making.wait(30)
        second.start()
        deadline = time.monotonic() + 30
        while not heard and time.monotonic() < deadline:
            time.sleep(0.01)
        assert heard == ["    waiting for another process making builtin:t ..."]
        assert len(folders) == 0  # still waiting
    finally:
        finish.set()
        first.join(30)
        if second.is_alive():
            second.join(30)
    assert len(made) == 1 and len(folders) == 2 and folders[0] == folders[1]
    assert (folders[0] / "config.json").is_file() and heard == heard[:1]


def test_nothing_is_said_outside_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fake = {"t": Builtin("model", "transformers", lambda f, b: (f / "x").write_text(""))}
    monkeypatch.setattr(builtin, "catalog", lambda: fake)
    heard: list[str] = []
    with announcing(heard.append):
        pass
    builtin.resolve("t")
    assert heard == []
