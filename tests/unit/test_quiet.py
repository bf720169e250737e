"""What the libraries say while a backend works becomes at most one short note."""

from __future__ import annotations

import logging
import warnings

import pytest

from runner.backends.quiet import ADAPTER_FALSE_ALARMS, captured, fold


class Notes:
    verbose = False

    def __init__(self) -> None:
        self.notes: list[str] = []

    def tick(self, done: int, total: int | None, unit: str) -> None:
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)


REPORT = (
    "\x1b[1mLlamaForCausalLM LOAD REPORT\x1b[0m from: base\n"
    "Key                         | Status     |\n"
    "----------------------------+------------+\n"
    "model.layers.{0, 1}.q.weight | MISSING    |\n"
    "model.layers.{0, 1}.k.weight | MISSING    |\n"
    "lm_head.extra               | UNEXPECTED |\n"
)


def test_logged_and_warned_messages_are_caught_not_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    library = logging.getLogger("diffusers.loaders.peft")
    with captured() as said:
        with captured() as inner:  # both lists empty, and equal, when the inner one ends
            library.warning("said inside the inner block")
            inner.clear()
        library.warning("Loading adapter weights led to unexpected keys: %s", "a, b")
        library.info("not worth a note")
        warnings.warn("a LoRA for a module that is not there", UserWarning, stacklevel=1)
        warnings.warn("use dtype instead", FutureWarning, stacklevel=1)
    assert said == [
        "Loading adapter weights led to unexpected keys: a, b",
        "a LoRA for a module that is not there",
    ]
    assert capsys.readouterr().err == ""


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_outside_a_block_the_libraries_log_where_and_at_the_level_they_did() -> None:
    root = logging.getLogger("transformers")
    saved = root.handlers[:], root.level, root.propagate
    kept = Kept()
    root.handlers, root.level, root.propagate = [kept], logging.WARNING, False
    try:
        with captured():
            root.warning("in the block")
        root.setLevel(logging.ERROR)  # as `set_verbosity_error()` does, after the block
        with captured() as said:
            logging.getLogger("transformers.generation").warning("caught although below ERROR")
        logging.getLogger("transformers.generation").warning("below the level: dropped")
        logging.getLogger("transformers.generation").error("shown as before")
    finally:
        root.handlers, root.level, root.propagate = saved
    assert said == ["caught although below ERROR"]
    assert kept.messages == ["shown as before"]


def test_verbose_catches_nothing() -> None:
    with captured(verbose=True) as said, pytest.warns(UserWarning):
        warnings.warn("shown as the library meant", UserWarning, stacklevel=1)
    assert said == []


def test_one_note_cut_short_and_counting_the_rest() -> None:
    ticker = Notes()
    said = ["x " * 300, "second", "second", "third"]
    fold(ticker, "adapter 'a'", said)
    (note,) = ticker.notes
    assert note.startswith("adapter 'a': x x x") and "\n" not in note
    assert note.endswith("... (and 2 more; --verbose shows them)")
    assert len(note) < 260


def test_false_alarms_make_no_note_and_a_load_report_becomes_its_counts() -> None:
    ticker = Notes()
    fold(
        ticker,
        "adapter 'a'",
        [REPORT, "Already found a `peft_config` attribute"],
        ADAPTER_FALSE_ALARMS,
    )
    fold(ticker, "adapter 'a'", ["`CLIPImageProcessor` requires torchvision (not installed)"])
    assert ticker.notes == []
    fold(ticker, "model base", [REPORT])
    assert ticker.notes == [
        "model base: LlamaForCausalLM LOAD REPORT from: base: 2 missing, 1 unexpected"
    ]
