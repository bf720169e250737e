"""A new adapter from loaded ones, as peft's `LoraModel.add_weighted_adapter` makes it.

Neither transformers' PEFT integration nor diffusers has a PeftModel (or a LoraModel) to
call `add_weighted_adapter` on: each injects peft's LoRA layers into its own modules and
keeps their configs in the module's `peft_config`. Each such module (the causal LM; a
pipeline's unet, transformer and text encoders) gets a LoraModel around it for the call,
made without injecting anything, so the merge is peft's own code, per component, and its
mathematics (`peft.utils.merge_utils`) the same as `add_weighted_adapter` by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from runner.errors import StepError

if TYPE_CHECKING:
    from runner.spec.types import Merge

# Each module's merge runs right after torch.manual_seed(MERGE_SEED): the dare methods drop
# values at random, and the same spec must give the same adapter.
MERGE_SEED = 0


def tuner(module: Any) -> Any:
    """A peft LoraModel around MODULE, whose LoRA layers peft injected already: it shares
    the module's `peft_config`, so an adapter it adds is the module's."""
    from peft.tuners.lora import LoraModel

    shell = LoraModel.__new__(LoraModel)
    torch.nn.Module.__init__(shell)
    shell.model = module
    shell.peft_config = module.peft_config
    shell.targeted_module_names = []
    shell.targeted_parameter_names = []
    shell.active_adapter = next(iter(module.peft_config), "default")
    return shell


def refusals(configs: dict[str, Any], names: list[str]) -> str | None:
    """Why peft's merge would give a wrong adapter of these, or None: its mathematics leaves
    DoRA's magnitudes and LoRA biases out, and scales the result as plain LoRA."""
    for name in names:
        config = configs[name]
        kind = str(getattr(config, "peft_type", ""))
        if kind not in ("LORA", "PeftType.LORA"):
            return f"adapter '{name}' is {kind.removeprefix('PeftType.')}; only LoRA adapters merge"
        if getattr(config, "use_dora", False):
            return f"adapter '{name}' is DoRA (use_dora): peft's merge drops its magnitudes"
        if getattr(config, "lora_bias", False):
            return f"adapter '{name}' has LoRA biases (lora_bias): peft's merge drops them"
        if getattr(config, "use_rslora", False):
            return (
                f"adapter '{name}' uses rank-stabilised scaling (use_rslora): peft's merge "
                "would scale the result by alpha / sqrt(r) again"
            )
    return None


def merge(modules: dict[str, Any], recipe: Merge) -> list[str]:
    """Add the recipe's adapter to each of MODULES (component -> module) that holds any of the
    recipe's adapters, as `add_weighted_adapter` would; returns the components it went to.
    On failure no component keeps a part of it."""
    name, names = recipe.name, [n for n, _ in recipe.weights]
    holders = {
        part: module
        for part, module in modules.items()
        if any(n in (getattr(module, "peft_config", None) or {}) for n in names)
    }
    if not holders:
        raise StepError("none of the adapters is loaded into the model")
    for part, module in holders.items():
        problem = refusals(module.peft_config, [n for n in names if n in module.peft_config])
        if problem:
            raise StepError(problem)
        if name in module.peft_config:
            raise StepError(f"an adapter named '{name}' is loaded already ({part})")
    done: list[str] = []
    try:
        for part, module in holders.items():
            present = [(n, w) for n, w in recipe.weights if n in module.peft_config]
            torch.manual_seed(MERGE_SEED)  # dare's random drops
            with torch.no_grad():
                tuner(module).add_weighted_adapter(
                    adapters=[n for n, _ in present],
                    weights=[w for _, w in present],
                    adapter_name=name,
                    combination_type=recipe.method,
                    svd_rank=recipe.svd_rank,
                    density=recipe.density,
                    majority_sign_method=recipe.majority_sign_method,
                )
            done.append(part)
    except (ValueError, TypeError, RuntimeError) as error:
        for part in [*done, *[p for p in holders if p not in done]]:
            if name in holders[part].peft_config:
                tuner(holders[part]).delete_adapter(name)
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StepError(f"peft cannot merge them with {recipe.method}: {text}") from error
    return done
