"""runner/spec/scheduler_keys.py, which `runner validate` checks scheduler keys against
without diffusers, is what the installed diffusers' classes take (as schedulers.py is)."""

from __future__ import annotations

from runner.backends import scheduling
from runner.spec.scheduler_keys import SCHEDULER_KEYS
from runner.spec.schedulers import SCHEDULERS


def test_the_kept_keys_are_the_installed_diffusers_keys() -> None:
    found = scheduling.scheduler_keys()
    assert list(SCHEDULER_KEYS) == list(SCHEDULERS) == list(found)
    assert {name: list(keys) for name, keys in SCHEDULER_KEYS.items()} == found, (
        "regenerate runner/spec/scheduler_keys.py with `make schema`"
    )


def test_every_kept_key_is_one_the_backend_accepts() -> None:
    # The validation rule and the run-time rule (check_options) agree on a real class.
    cls = scheduling.scheduler_class("DPMSolverMultistepScheduler")
    scheduling.check_options(cls, dict.fromkeys(SCHEDULER_KEYS["DPMSolverMultistepScheduler"]))
