"""The scheduler classes diffusers has, by name: what `scheduler.type` may say.

A constant, so that `runner validate` knows the names without importing diffusers. It is
generated from the installed diffusers (`runner.backends.scheduling.scheduler_classes()`),
and a test holds the two equal; after upgrading diffusers, regenerate it with

    python -c "from runner.backends.scheduling import scheduler_classes as s; print(s())"
"""

from __future__ import annotations

# diffusers 0.42.1
SCHEDULERS = (
    "AmusedScheduler",
    "BlockRefinementScheduler",
    "CMStochasticIterativeScheduler",
    "CogVideoXDDIMScheduler",
    "CogVideoXDPMScheduler",
    "ConsistencyDecoderScheduler",
    "CosineDPMSolverMultistepScheduler",
    "DDIMInverseScheduler",
    "DDIMParallelScheduler",
    "DDIMScheduler",
    "DDPMParallelScheduler",
    "DDPMScheduler",
    "DDPMWuerstchenScheduler",
    "DEISMultistepScheduler",
    "DPMSolverMultistepInverseScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSDEScheduler",
    "DPMSolverSinglestepScheduler",
    "DiscreteDDIMScheduler",
    "EDMDPMSolverMultistepScheduler",
    "EDMEulerScheduler",
    "EntropyBoundScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "FlowMapEulerDiscreteScheduler",
    "FlowMatchEulerDiscreteScheduler",
    "FlowMatchHeunDiscreteScheduler",
    "FlowMatchLCMScheduler",
    "HeliosDMDScheduler",
    "HeliosScheduler",
    "HeunDiscreteScheduler",
    "IPNDMScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KarrasVeScheduler",
    "LCMScheduler",
    "LMSDiscreteScheduler",
    "LTXEulerAncestralRFScheduler",
    "MiniMaxH3Scheduler",
    "PNDMScheduler",
    "PiflowScheduler",
    "RFD4ProteinaScheduler",
    "RePaintScheduler",
    "SASolverScheduler",
    "SCMScheduler",
    "ScoreSdeVeScheduler",
    "ScoreSdeVpScheduler",
    "TCDScheduler",
    "UnCLIPScheduler",
    "UniPCMultistepScheduler",
    "VQDiffusionScheduler",
)
