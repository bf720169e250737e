"""The usual names of samplers, as image tools write them, for a diffusers scheduler.

AUTOMATIC1111's web UI names a sampler and its sigma schedule in one (`DPM++ 2M Karras`);
diffusers names a scheduler class and its config (`DPMSolverMultistepScheduler` with
`use_karras_sigmas: true`). The table follows the mapping in diffusers' scheduler docs.
Pure Python: the record and the report read it without diffusers.
"""

from __future__ import annotations

from typing import Any

# Config keys that choose a sigma schedule; a sampler name implies each is off unless its
# entry below says otherwise (`Euler` with exponential sigmas is not plain `Euler`).
SIGMA_SCHEDULES = (
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "use_lu_lambdas",
    "use_flow_sigmas",
)
_KARRAS = {"use_karras_sigmas": True}
_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_2M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
_3M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}
_SINGLE = {"algorithm_type": "dpmsolver++"}

# (usual name, scheduler class, the config values it needs)
SAMPLERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("DPM++ 2M", "DPMSolverMultistepScheduler", _2M),
    ("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {**_2M, **_KARRAS}),
    ("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _2M_SDE),
    ("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", {**_2M_SDE, **_KARRAS}),
    ("DPM++ 3M SDE", "DPMSolverMultistepScheduler", _3M_SDE),
    ("DPM++ 3M SDE Karras", "DPMSolverMultistepScheduler", {**_3M_SDE, **_KARRAS}),
    ("DPM++ SDE", "DPMSolverSinglestepScheduler", _SINGLE),
    ("DPM++ SDE Karras", "DPMSolverSinglestepScheduler", {**_SINGLE, **_KARRAS}),
    ("DPM2", "KDPM2DiscreteScheduler", {}),
    ("DPM2 Karras", "KDPM2DiscreteScheduler", _KARRAS),
    ("DPM2 a", "KDPM2AncestralDiscreteScheduler", {}),
    ("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", _KARRAS),
    ("Euler", "EulerDiscreteScheduler", {}),
    ("Euler a", "EulerAncestralDiscreteScheduler", {}),
    ("Heun", "HeunDiscreteScheduler", {}),
    ("LMS", "LMSDiscreteScheduler", {}),
    ("LMS Karras", "LMSDiscreteScheduler", _KARRAS),
    ("DDIM", "DDIMScheduler", {}),
    ("DDPM", "DDPMScheduler", {}),
    ("PLMS", "PNDMScheduler", {}),
    ("UniPC", "UniPCMultistepScheduler", {}),
    ("LCM", "LCMScheduler", {}),
)


def sampler_name(scheduler: str, config: dict[str, Any]) -> str | None:
    """The usual name of SCHEDULER (a class name) with CONFIG, or None where none matches."""
    for name, cls, needs in SAMPLERS:
        if cls != scheduler:
            continue
        wanted = {**dict.fromkeys(SIGMA_SCHEDULES, False), **needs}
        if all(
            bool(config.get(k)) == v if isinstance(v, bool) else config.get(k) == v
            for k, v in wanted.items()
        ):
            return name
    return None
