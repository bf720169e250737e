"""The spec language's vocabulary, as data: the ops, their arguments per family, the model
options and the top-level keys, each with its JSON Schema; `runner.spec.grammar` expands
them into the spec's schema. Adding an argument or an op is an edit here alone.
"""

from __future__ import annotations

from typing import Any

from runner.spec import weights
from runner.spec.block_presets import PRESET
from runner.spec.schedulers import SCHEDULERS

FAMILIES = ("transformers", "diffusers")


NAME_PATTERN = "^[a-z0-9][a-z0-9._-]*$"


# Names become folder names (with a time stamp and a hash); file systems take 255 bytes.
NAME_MAX = 100


NAME_MESSAGE = (
    "expected lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
)


# Where a spec (or a run's device override) may run; the CLI and the API check the same.
DEVICE_PATTERN = "^(auto|cpu|cuda|cuda:[0-9]+|mps)$"


DEVICE_MESSAGE = "expected auto, cpu, cuda, cuda:N or mps"


# torch.manual_seed takes an unsigned 64-bit seed; image k of a step draws from seed + k,
# which a meaning check keeps within this bound too.
MAX_SEED = 2**63 - 1


# Counts and sizes reach the libraries as C ints; a larger one fails deep inside them.
MAX_COUNT = 2**31 - 1
CHECKPOINT_EVERY = 10  # a train step's default steps between two checkpoints


def _prompts(what: str) -> dict[str, Any]:
    return {
        "description": what,
        "type": ["string", "array"],
        "items": {"type": "string"},
        "minItems": 1,
    }


# `{data: NAME, field: F}`: field F of every record of a data set (runner.spec.data).
DATA_REF_KEYWORDS: dict[str, Any] = {
    "required": ["data", "field"],
    "additionalProperties": False,
    "properties": {
        "data": {
            "description": "A data set declared under `data`.",
            "type": "string",
            "pattern": NAME_PATTERN,
            "errorMessage": NAME_MESSAGE,
        },
        "field": {"description": "The field of each record.", "type": "string", "minLength": 1},
    },
}


def _or_data(schema: dict[str, Any]) -> dict[str, Any]:
    """SCHEMA, or a reference to a data field standing for one value per record."""
    return {
        **schema,
        "description": schema["description"] + " Or {data: NAME, field: F}: one per record.",
        "type": [*schema["type"], "object"],
        **DATA_REF_KEYWORDS,
    }


PROMPT = _or_data(_prompts("A prompt, or a list of prompts run as one batch."))


SEED = {
    "description": "Seed for this step. Default: the spec's seed.",
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_SEED,
}


# A scheduler by name, for the model and for one generate step. Open to every key: they
# are the scheduler class's own config keys, checked when it is built (diffusers drops a key
# a class does not take without a word, so the backend refuses it instead).
SCHEDULER: dict[str, Any] = {
    "description": "A diffusers scheduler (sampler) by class name, built from the pipeline's own "
    "scheduler config with the other keys overriding it (diffusers), e.g. "
    "{type: DPMSolverMultistepScheduler, use_karras_sigmas: true} is DPM++ 2M Karras.",
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {
            "description": "The scheduler class, as diffusers names it.",
            "enum": list(SCHEDULERS),
        }
    },
    "additionalProperties": {
        "description": "A config key of the scheduler class, overriding the pipeline's value; a "
        "key the class does not take fails the run, naming it."
    },
}


# Generate arguments: name -> (family, JSON Schema). A key of the other family is refused.
# runner.spec.arguments types them, one class per family (tests/unit/test_arguments holds
# the two to each other).
ARGUMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "max_new_tokens": (
        "transformers",
        {
            "description": "Maximum number of new tokens to generate (transformers). "
            "Default: the model's generation config.",
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_COUNT,
        },
    ),
    "do_sample": (
        "transformers",
        {
            "description": "Sample instead of greedy decoding (transformers). Default: the "
            "model's generation config (greedy unless it says otherwise).",
            "type": "boolean",
        },
    ),
    "temperature": (
        "transformers",
        {
            "description": "Sampling temperature (transformers).",
            "type": "number",
            "exclusiveMinimum": 0,
        },
    ),
    "top_p": (
        "transformers",
        {
            "description": "Nucleus sampling probability mass (transformers).",
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
        },
    ),
    "top_k": (
        "transformers",
        {
            "description": "Sample from the k most likely tokens (transformers).",
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_COUNT,
        },
    ),
    "num_beams": (
        "transformers",
        {
            "description": "Beam search width (transformers). Default: the model's generation "
            "config.",
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_COUNT,
        },
    ),
    "repetition_penalty": (
        "transformers",
        {
            "description": "Penalty for repeated tokens (transformers).",
            "type": "number",
            "exclusiveMinimum": 0,
        },
    ),
    "chat": (
        "transformers",
        {
            "description": "Apply the tokenizer's chat template to each prompt (transformers). "
            "Default false.",
            "type": "boolean",
            "default": False,
        },
    ),
    "negative_prompt": (
        "diffusers",
        _prompts(
            "What the image should not show (diffusers): a string, or a list with one entry "
            "per prompt."
        ),
    ),
    "num_inference_steps": (
        "diffusers",
        {
            "description": "Denoising steps (diffusers). Default: the pipeline's.",
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_COUNT,
        },
    ),
    "guidance_scale": (
        "diffusers",
        {
            "description": "Classifier-free guidance scale (diffusers). Default: the pipeline's.",
            "type": "number",
            "minimum": 0,
        },
    ),
    "height": (
        "diffusers",
        {
            "description": "Image height in pixels, a multiple of 8 (diffusers). Default: the "
            "pipeline's.",
            "type": "integer",
            "minimum": 8,
            "maximum": MAX_COUNT,
            "multipleOf": 8,
        },
    ),
    "width": (
        "diffusers",
        {
            "description": "Image width in pixels, a multiple of 8 (diffusers). Default: the "
            "pipeline's.",
            "type": "integer",
            "minimum": 8,
            "maximum": MAX_COUNT,
            "multipleOf": 8,
        },
    ),
    "num_images_per_prompt": (
        "diffusers",
        {
            "description": "Images per prompt (diffusers). Default 1.",
            "type": "integer",
            "default": 1,
            "minimum": 1,
            "maximum": MAX_COUNT,
        },
    ),
    "lora_scale": (
        "diffusers",
        {
            "description": "Scale applied to every active LoRA at generation time (diffusers). "
            "Default 1.0.",
            "type": "number",
            "default": 1.0,
        },
    ),
    "scheduler": (
        "diffusers",
        {
            **SCHEDULER,
            "description": "The scheduler for this step only, the same shape as "
            "model.scheduler: built from the pipeline's own scheduler config (diffusers). The next "
            "step runs the model's scheduler again.",
        },
    ),
}


# Model options besides family, path, revision, variant and remote code:
# name -> (family, JSON Schema). An option of the other family is refused.
MODEL_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "scheduler": ("diffusers", SCHEDULER),
    "components": (
        "diffusers",
        {
            "description": "Pipeline components left out, each set to null, as "
            "from_pretrained(NAME=None) does (diffusers), e.g. text_encoder_3: null for "
            "Stable Diffusion 3 without its T5 encoder.",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "description": "null: leave this component out.",
                "type": "null",
                "errorMessage": "a component can only be left out (null)",
            },
        },
    ),
    "attn_implementation": (
        "transformers",
        {
            "description": "The attention implementation, passed to from_pretrained "
            "(transformers). Default: transformers' choice (sdpa where torch has it).",
            "enum": ["eager", "sdpa", "flash_attention_2"],
        },
    ),
}


# Ops that take the family's generate arguments.
GENERATING = ("generate", "compare")


# More cells than this in one compare step need the step's explicit `max_cells`.
MAX_CELLS = 10_000
# No compare step makes more cells than this, whatever its `max_cells`: each cell is an
# output, a line of cells.jsonl and a tile of the grid, and the rows are built in memory.
CELLS_CEILING = 100_000


def family_of(argument: str) -> str | None:
    """The family a generate argument belongs to, or None for one of every family."""
    entry = ARGUMENTS.get(argument)
    return entry[0] if entry else None


def wrong_family(argument: str, family: str) -> str:
    """The message for a generate argument of the other family."""
    owner = family_of(argument)
    return f"'{argument}' is a {owner} generate argument, but model.family is {family}"


def wrong_family_option(option: str, family: str) -> str:
    """The message for a model option of the other family."""
    owner = MODEL_OPTIONS[option][0]
    return f"'{option}' is a {owner} model option, but model.family is {family}"


def adapter_weight(sweep: bool) -> dict[str, Any]:
    """An adapter's weight: a number, or per component and per UNet block as diffusers'
    set_adapters takes them (runner.spec.weights); SWEEP: a compare row's, where lists sweep."""
    number: dict[str, Any] = {"type": "number"}
    numbers = {"items": number, "minItems": 1}
    one: dict[str, Any] = {"type": ["number", "array"], **numbers} if sweep else number
    # A block's value: a number or one per layer of the block; swept, a list of those.
    per_layer = {"type": ["number", "array"], **numbers}
    block = {"type": ["number", "array"], "items": per_layer, "minItems": 1} if sweep else per_layer
    kinds = ["number", "array", "object"] if sweep else ["number", "object"]
    side = {
        "description": "One weight for the side's blocks, or block_N -> weight (a list: one "
        "per layer of the block).",
        "type": kinds,
        **numbers,
        "minProperties": 1,
        "propertyNames": {"pattern": weights.BLOCK_PATTERN},
        "additionalProperties": {"description": "The block's weight.", **block},
    }
    unet = {
        "description": "The UNet's weight, or per block: down, mid, up.",
        "type": kinds,
        **numbers,
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            "down": side,
            "mid": {"description": "The mid block's weight.", **one},
            "up": side,
            PRESET: {
                "description": "A LoRA Block Weight preset by name (SD 1.x UNets), e.g. MIDD: "
                "its BASE value goes to text_encoder unless the weight sets one."
                + (" A list of names makes a row for each." if sweep else ""),
                "type": ["string", "array"] if sweep else "string",
                "items": {"type": "string"},
                "minItems": 1,
            },
        },
    }
    component = {"description": "The component's weight.", **one}
    components = {
        name: unet if name == "unet" else {**component, "type": kinds}
        for name in weights.LORA_COMPONENTS
    }
    plain = {"type": kinds, **numbers, "minProperties": 1, "additionalProperties": False}
    return {
        "description": "The adapter's weight (base + weight x its change), or per component "
        "{unet: 0.8, text_encoder: 0.3} and per UNet block {unet: {down: .., mid: .., up: "
        "{block_0: ..}}} as diffusers' set_adapters takes them; a component left out: 1.0; "
        "{weight: .., steps: [start, stop]}: only for denoising steps start to stop - 1"
        + ("; a list of weights makes a row for each." if sweep else "."),
        **plain,
        "properties": {
            **components,
            weights.WEIGHT: {
                "description": "With steps: the weight while the adapter runs (a number or "
                "per component). Default 1.0.",
                **plain,
                "properties": components,
            },
            weights.STEPS: {
                "description": "[start, stop] (diffusers): the adapter runs for denoising "
                "steps start to stop - 1 (counted from 0) and is off (weight 0) for the others.",
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
                "minItems": 2,
                "maxItems": 2,
            },
        },
    }


COMPARE_ROWS: dict[str, Any] = {
    "description": "The rows, one adapter setting each, in order: `base` (no adapter), a name, "
    "a list of names (each at 1.0), or a mapping name -> weight, where a list of weights makes "
    "one row per value (several lists: every combination, the first adapter's varying slowest).",
    "type": "array",
    "minItems": 1,
    "items": {
        "description": "One row: `base`, a name, a list of names or a mapping name -> weight(s).",
        "type": ["string", "array", "object"],
        "items": {"type": "string"},
        "minItems": 1,
        "minProperties": 1,
        "additionalProperties": adapter_weight(sweep=True),
    },
}


def _per_prompt(what: str) -> dict[str, Any]:
    return {
        "description": f"{what}: a string for every prompt, or a list with one per prompt.",
        "type": ["string", "array"],
        "items": {"type": "string"},
        "minItems": 1,
    }


# What a generate or compare step is expected to make (CONTRACT section 9), checked after
# the step: a failed expectation leaves the run succeeded and makes `runner run` exit 4.
EXPECT: dict[str, Any] = {
    "description": "What the step is expected to make, checked after it (the run still "
    "succeeds; `runner run` exits 4 when one fails). Text checks apply to each completion "
    "(in a compare: each cell of a non-base row).",
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "differs_from_base": {
            "description": "Every non-base row of the compare changes something (is no "
            "no-op row). Needs a compare step with a `base` row.",
            "type": "boolean",
        },
        "min_distance": {
            "description": "Every non-base cell of the compare is at least this far from its "
            "base cell: `mean_abs` (images, 0-255) or `kl` (text). Needs a `base` row.",
            "type": "number",
            "minimum": 0,
        },
        "contains": _or_data(_per_prompt("Text the completion contains")),
        "not_contains": _or_data(_per_prompt("Text the completion does not contain")),
        "equals": _or_data(_per_prompt("The completion's whole text")),
        "regex": _or_data(
            _per_prompt("A Python regular expression the completion matches (re.search)")
        ),
    },
}


TEXT_EXPECTATIONS = ("contains", "not_contains", "equals", "regex")

# What a compare scores per cell besides its outputs (CONTRACT section 10).
IMAGE_METRICS = ("clip_score",)
METRICS: dict[str, Any] = {
    "description": "Metrics of each cell, summarised per row as a score table: `clip_score` "
    "(images: 100 x the cosine of the image's and the prompt's CLIP embeddings, floored at "
    "0; needs `clip`).",
    "type": "array",
    "items": {"enum": list(IMAGE_METRICS)},
    "minItems": 1,
    "uniqueItems": True,
}
CLIP: dict[str, Any] = {
    "description": "The CLIP model `clip_score` embeds images and prompts with.",
    "type": "object",
    "required": ["path"],
    "additionalProperties": False,
    "properties": {
        "path": {
            "description": "A hub id (e.g. openai/clip-vit-base-patch32), a local folder "
            "or builtin:NAME.",
            "type": "string",
            "minLength": 1,
        }
    },
}


# What hover on a step's `op` shows in an editor besides the op's description.
_EXAMPLES = {
    "load": "- op: load\n  adapters: [styles, cereal]",
    "set_adapters": "- op: set_adapters\n  adapters: {styles: 0.7, cereal: 0.5}",
    "generate": "- op: generate\n  id: plain\n  prompt: a cat in a hat\n  seed: 7",
    "disable": "- op: disable\n- op: generate\n  prompt: the base model alone",
    "enable": "- op: enable",
    "compare": "- op: compare\n  id: styles\n  adapters: [base, styles, {styles: [0.5, 1.0]}]\n"
    "  prompt: [a cat in a hat, a cabin in the snow]\n  seed: [0, 1]",
    "score": "- op: score\n  id: loglik\n  adapters: [base, a, b]\n"
    "  context: {data: qa, field: question}\n  continuation: {data: qa, field: answer}",
    "fuse": "- op: fuse\n  lora_scale: 1.0",
    "unfuse": "- op: fuse\n- op: generate\n  prompt: a cat\n- op: unfuse",
    "delete": "- op: delete\n  adapters: cereal",
}


def _op(op: str, description: str) -> dict[str, Any]:
    schema = {"description": description, "const": op}
    if op in _EXAMPLES:
        schema["markdownDescription"] = f"{description}\n\n```yaml\n{_EXAMPLES[op]}\n```"
    return schema


def _step(op: str, description: str, **properties: Any) -> dict[str, Any]:
    return {
        "op": _op(op, description),
        "id": {
            "description": "Names the step and its output folder; unique in the spec.",
            "type": "string",
            "pattern": NAME_PATTERN,
            "maxLength": NAME_MAX,
            "errorMessage": NAME_MESSAGE,
        },
        **properties,
    }


def generate_arguments() -> dict[str, Any]:
    return {"prompt": PROMPT, "seed": SEED, **{k: s for k, (_, s) in ARGUMENTS.items()}}


def op_definitions() -> dict[str, Any]:
    return {
        "load": {
            "type": "object",
            "required": ["adapters"],
            "additionalProperties": False,
            "properties": _step(
                "load",
                "Attach declared adapters; the last one loaded becomes the only active adapter.",
                adapters={
                    "description": "The adapters to load: a name or a list of names declared "
                    "under `adapters`.",
                    "type": ["string", "array"],
                    "items": {"type": "string"},
                    "minItems": 1,
                },
                strict={
                    "description": "Fail the load when some of an adapter's keys match no "
                    "module of the model (default: a warning).",
                    "type": "boolean",
                },
            ),
        },
        "set_adapters": {
            "type": "object",
            "required": ["adapters"],
            "additionalProperties": False,
            "properties": _step(
                "set_adapters",
                "Choose the active adapters.",
                adapters={
                    "description": "A name, a list of names (all active, weight 1.0), or a "
                    "mapping name -> weight.",
                    "type": ["string", "array", "object"],
                    "items": {"type": "string"},
                    "minItems": 1,
                    "minProperties": 1,
                    "additionalProperties": adapter_weight(sweep=False),
                },
            ),
        },
        "generate": {
            "type": "object",
            "additionalProperties": False,
            "properties": _step(
                "generate",
                "Generate text or images with the active adapters.",
                **generate_arguments(),
                expect=EXPECT,
            ),
        },
        "compare": {
            "type": "object",
            "required": ["adapters"],
            "additionalProperties": False,
            "properties": _step(
                "compare",
                "Generate every prompt and seed under each adapter setting (row), side by side.",
                adapters=COMPARE_ROWS,
                prompt=_or_data(_prompts("A prompt, or a list of prompts: a column for each.")),
                seed={
                    "description": "A seed, or a list of seeds: a column for each. Default: the "
                    "spec's seed.",
                    "type": ["integer", "array"],
                    "minimum": 0,
                    "maximum": MAX_SEED,
                    "items": SEED,
                    "minItems": 1,
                },
                max_cells={
                    "description": f"Allow more cells (rows x prompts x seeds x images) than "
                    f"{MAX_CELLS}, up to {CELLS_CEILING}, the most one compare step may make. "
                    f"Default {MAX_CELLS}.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": CELLS_CEILING,
                },
                **{k: s for k, (_, s) in ARGUMENTS.items()},
                expect=EXPECT,
                metrics=METRICS,
                clip=CLIP,
            ),
        },
        "disable": {
            "type": "object",
            "additionalProperties": False,
            "properties": _step("disable", "Run the base model; adapters stay loaded."),
        },
        "enable": {
            "type": "object",
            "additionalProperties": False,
            "properties": _step("enable", "Run the adapters that were active again."),
        },
        "score": _score_definition(),
        **making_definitions(),
        "fuse": {
            "type": "object",
            "additionalProperties": False,
            "properties": _step(
                "fuse",
                "Fold the active adapters into the base weights (diffusers fuse_lora; "
                "transformers: peft's merge_adapter), recording a hash of the weights it changes.",
                lora_scale={
                    "description": "Scale of the fused adapters, on top of their weights "
                    "(diffusers). Default 1.0.",
                    "type": "number",
                    "default": 1.0,
                },
            ),
        },
        "unfuse": {
            "type": "object",
            "additionalProperties": False,
            "properties": _step(
                "unfuse",
                "Take the fused adapters out of the base weights again; the step fails unless "
                "the base weights are bit-identical to what fuse recorded.",
            ),
        },
        "delete": {
            "type": "object",
            "required": ["adapters"],
            "additionalProperties": False,
            "properties": _step(
                "delete",
                "Remove adapters from the model and from memory (diffusers delete_adapters, "
                "peft delete_adapter), recording the process's memory before and after.",
                adapters={
                    "description": "The adapters to delete: a name or a list of loaded names.",
                    "type": ["string", "array"],
                    "items": {"type": "string"},
                    "minItems": 1,
                },
            ),
        },
    }


def _score_definition() -> dict[str, Any]:
    """`op: score`: how likely each row (as compare's) finds continuations given contexts."""
    texts = _prompts("A text, or a list of texts: one per record.")
    return {
        "type": "object",
        "required": ["adapters", "context"],
        "additionalProperties": False,
        "properties": _step(
            "score",
            "Score each row (transformers): the log-likelihood of each continuation (or each "
            "choice) given its context, as lm-evaluation-harness computes it.",
            adapters=COMPARE_ROWS,
            context=_or_data({**texts, "description": "The contexts, one per record."}),
            continuation=_or_data(
                {**texts, "description": "The continuations scored after each context."}
            ),
            choices=_or_data(
                {
                    "description": "Multiple choice: the choices of each record, a list of "
                    "strings (one list for every record, or a list of them).",
                    "type": ["array"],
                    "minItems": 1,
                    "items": {"type": ["string", "array"], "items": {"type": "string"}},
                }
            ),
            label=_or_data(
                {
                    "description": "Multiple choice: the index of the right choice of each record.",
                    "type": ["integer", "array"],
                    "minimum": 0,
                    "maximum": MAX_COUNT,
                    "minItems": 1,
                    "items": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
                }
            ),
        ),
    }


_LORA_CONFIG: dict[str, Any] = {
    "description": "A PEFT config for a new adapter (transformers only).",
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"description": "The PEFT method.", "enum": ["lora"]},
        "r": {
            "description": "LoRA rank. Default 8.",
            "type": "integer",
            "default": 8,
            "minimum": 1,
            "maximum": MAX_COUNT,
        },
        "lora_alpha": {
            "description": "LoRA alpha; the scale is lora_alpha / r. Default 8.",
            "type": "number",
            "default": 8,
        },
        "lora_dropout": {
            "description": "Dropout on the LoRA input during training (off in generation). "
            "Default 0.",
            "type": "number",
            "default": 0,
            "minimum": 0,
            "maximum": 1,
        },
        "bias": {
            "description": "Which biases train: none | all | lora_only. Default none.",
            "enum": ["none", "all", "lora_only"],
            "default": "none",
        },
        "task_type": {"description": "PEFT task type, e.g. CAUSAL_LM.", "type": "string"},
        "target_modules": {
            "description": "Module names (or one regex) to adapt. Default: the library's "
            "choice for the architecture.",
            "type": ["string", "array"],
            "items": {"type": "string"},
        },
        "modules_to_save": {
            "description": "Modules trained and saved in full besides the adapter.",
            "type": "array",
            "items": {"type": "string"},
        },
        "use_rslora": {
            "description": "Rank-stabilised scale lora_alpha / sqrt(r). Default false.",
            "type": "boolean",
            "default": False,
        },
        "use_dora": {
            "description": "Weight-decomposed LoRA (DoRA). Default false.",
            "type": "boolean",
            "default": False,
        },
        "init_lora_weights": {
            "description": "true (B = 0, no change until trained), false (random), or a named "
            "scheme such as gaussian.",
            "type": ["boolean", "string"],
        },
        "fan_in_fan_out": {
            "description": "Set for layers that store weights as (fan_in, fan_out), e.g. GPT-2 "
            "Conv1D.",
            "type": "boolean",
        },
        "layers_to_transform": {
            "description": "Layer indices to adapt.",
            "type": ["integer", "array"],
            "minimum": 0,
            "maximum": MAX_COUNT,
            "items": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
        },
        "rank_pattern": {
            "description": "Per-module rank overrides.",
            "type": "object",
            "additionalProperties": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
        },
        "alpha_pattern": {
            "description": "Per-module alpha overrides.",
            "type": "object",
            "additionalProperties": {"type": "number"},
        },
    },
}


_NULLABLE_STRING = ["string", "null"]


DATA: dict[str, Any] = {
    "description": "Named record sets, each read from a file and hashed as an input: .jsonl "
    "(one JSON object a line), .csv (a header row) or .txt (one record a line, field `text`). "
    "A step takes a field of every record as {data: NAME, field: F}.",
    "type": "object",
    "propertyNames": {"pattern": NAME_PATTERN, "maxLength": NAME_MAX},
    "additionalProperties": {
        "description": "A data file.",
        "type": "object",
        "required": ["path"],
        "additionalProperties": False,
        "properties": {
            "path": {
                "description": "The file, relative to the spec's folder (or absolute).",
                "type": "string",
                "minLength": 1,
            }
        },
    },
}


QUANTIZATION: dict[str, Any] = {
    "description": "Load the base quantized (needs bitsandbytes: pip install "
    "'peft-runner[quant]'): transformers' BitsAndBytesConfig, diffusers' "
    "PipelineQuantizationConfig. LoRA adapters load on top; fuse is refused.",
    "type": "object",
    "required": ["backend", "bits"],
    "additionalProperties": False,
    "properties": {
        "backend": {"description": "The quantization library.", "enum": ["bitsandbytes"]},
        "bits": {"description": "4 or 8 bits per weight.", "enum": [4, 8]},
        "quant_type": {
            "description": "The 4-bit data type (bits 4 only). Default nf4.",
            "enum": ["nf4", "fp4"],
        },
        "compute_dtype": {
            "description": "The dtype 4-bit layers compute in (bits 4 only). Default: the "
            "spec's dtype.",
            "enum": ["float32", "float16", "bfloat16"],
        },
        "components": {
            "description": "The pipeline components quantized (diffusers), e.g. [unet, "
            "text_encoder]. Default: the denoiser (unet or transformer).",
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
        },
    },
}


def properties() -> dict[str, Any]:
    """The spec's top-level properties; `steps` gets its items from the grammar."""
    return {
        "version": {"description": "The spec language version; must be 1.", "const": 1},
        "name": {
            "description": "Names the run directory. Default: the file's stem.",
            "type": "string",
            "pattern": NAME_PATTERN,
            "maxLength": NAME_MAX,
            "errorMessage": NAME_MESSAGE,
        },
        "description": {"description": "Free text.", "type": "string"},
        "seed": {
            "description": "Default seed of every generate step. Default 0.",
            "type": "integer",
            "default": 0,
            "minimum": 0,
            "maximum": MAX_SEED,
        },
        "device": {
            "description": "auto | cpu | cuda | cuda:N | mps. auto: cuda, else mps, else cpu. "
            "Default auto.",
            "type": "string",
            "default": "auto",
            "pattern": DEVICE_PATTERN,
            "errorMessage": DEVICE_MESSAGE,
        },
        "dtype": {
            "description": "auto | float32 | float16 | bfloat16. auto: float16 on cuda/mps, "
            "float32 on cpu. Default auto.",
            "enum": ["auto", "float32", "float16", "bfloat16"],
            "default": "auto",
        },
        "deterministic": {
            "description": "Use deterministic algorithms where the device allows and fix the "
            "thread count. Default true.",
            "type": "boolean",
            "default": True,
        },
        "model": {
            "description": "The base model.",
            "type": "object",
            "required": ["family", "path"],
            "additionalProperties": False,
            "properties": {
                "family": {
                    "description": "transformers (a causal LM) or diffusers (a text-to-image "
                    "pipeline).",
                    "enum": list(FAMILIES),
                },
                "path": {
                    "description": "Hub id, local directory (an adapter directory loads its "
                    "base with the adapter as 'default'), or builtin:NAME.",
                    "type": "string",
                    "minLength": 1,
                },
                "revision": {
                    "description": "Hub revision: branch, tag or commit. Default: main.",
                    "type": _NULLABLE_STRING,
                },
                "variant": {
                    "description": "Weights variant (diffusers), e.g. fp16. Default none.",
                    "type": _NULLABLE_STRING,
                },
                "quantization": QUANTIZATION,
                "trust_remote_code": {
                    "description": "Run code shipped with the model. Default false; never true "
                    "unless written here.",
                    "type": "boolean",
                    "default": False,
                },
                # Checked and offered by family (see _family_rules).
                **{
                    name: {"description": s["description"], "doNotSuggest": True}
                    for name, (_, s) in MODEL_OPTIONS.items()
                },
            },
        },
        "adapters": {
            "description": "Adapter name -> how to get it. Names: [A-Za-z0-9_-]+.",
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "description": "An adapter: `path` to load one, or `config` to build a new one.",
                "additionalProperties": False,
                "properties": {
                    "path": {
                        "description": "Hub id, local directory or file, or builtin:NAME.",
                        "type": "string",
                        "minLength": 1,
                    },
                    "weight_name": {
                        "description": "A file name inside `path` to load. Default: the "
                        "library's default file.",
                        "type": _NULLABLE_STRING,
                    },
                    "subfolder": {
                        "description": "A folder inside `path` (a hub repo or a local folder) "
                        "that holds the adapter, e.g. loras/style. Default: none.",
                        "type": _NULLABLE_STRING,
                    },
                    "revision": {
                        "description": "Hub revision: branch, tag or commit. Default: main.",
                        "type": _NULLABLE_STRING,
                    },
                    "allow_pickle": {
                        "description": "Allow a pickled .bin/.pt checkpoint. Default false.",
                        "type": "boolean",
                        "default": False,
                    },
                    "config": _LORA_CONFIG,
                },
            },
        },
        "data": DATA,
        "defaults": {
            "description": "Default arguments merged into every step of that op.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                # What it takes follows model.family (see _family_rules), so that an editor
                # offers only that family's arguments here.
                "generate": {"description": "Default generate arguments.", "type": "object"}
            },
        },
        "steps": {
            "description": "The steps, executed in order.",
            "type": "array",
            "minItems": 1,
        },
    }


# --- making adapters: merge, save (CONTRACT section 11) ------------------------------------

# peft's combination types (`add_weighted_adapter`), and which of them take which option.
MERGE_METHODS = (
    "linear",
    "cat",
    "svd",
    "ties",
    "ties_svd",
    "dare_linear",
    "dare_ties",
    "dare_linear_svd",
    "dare_ties_svd",
    "magnitude_prune",
    "magnitude_prune_svd",
)
DENSITY_METHODS = tuple(
    m for m in MERGE_METHODS if m.split("_")[0] in ("ties", "dare", "magnitude")
)
SIGN_METHODS = ("ties", "ties_svd", "dare_ties", "dare_ties_svd")
SVD_METHODS = tuple(m for m in MERGE_METHODS if m.endswith("svd"))
# The adapter file formats each family writes, its own first (the default).
SAVE_FORMATS = {"transformers": ("peft",), "diffusers": ("diffusers", "kohya")}

_EXAMPLES.update(
    merge="- op: merge\n  name: blend\n  method: ties\n  adapters: {a: 1.0, b: 0.5}\n"
    "  density: 0.5",
    save="- op: save\n  adapter: blend\n  format: peft",
    train="- op: train\n  adapter: fresh\n  text: {data: corpus, field: text}\n  steps: 50",
)

_ADAPTER_NAME = {
    "description": "An adapter name: [A-Za-z0-9_-]+.",
    "type": "string",
    "pattern": "^[A-Za-z0-9_-]+$",
    "errorMessage": "expected letters, digits, '_' or '-'",
}


def making_definitions() -> dict[str, Any]:
    """The ops that make adapters and write them (merge, save)."""
    return {
        "merge": {
            "type": "object",
            "required": ["name", "adapters"],
            "additionalProperties": False,
            "properties": _step(
                "merge",
                "A new adapter from loaded ones, as peft's add_weighted_adapter makes it; it "
                "becomes the only active adapter and is written into the step's output folder.",
                name={
                    **_ADAPTER_NAME,
                    "description": "The new adapter's name, not declared under adapters.",
                },
                method={
                    "description": "peft's combination_type. Default linear.",
                    "enum": list(MERGE_METHODS),
                    "default": "linear",
                },
                adapters={
                    "description": "The loaded adapters to merge, name -> weight (or a list "
                    "of names, each at 1.0).",
                    "type": ["object", "array"],
                    "items": {"type": "string"},
                    "minItems": 1,
                    "minProperties": 1,
                    "additionalProperties": {"type": "number"},
                },
                density={
                    "description": "The fraction of values kept (ties, dare and "
                    "magnitude_prune methods; required there).",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1,
                },
                majority_sign_method={
                    "description": "How ties elects each value's sign: total | frequency. "
                    "Default total.",
                    "enum": ["total", "frequency"],
                },
                svd_rank={
                    "description": "The merged rank (svd methods). Default: the largest rank "
                    "merged.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_COUNT,
                },
            ),
        },
        "train": {
            "type": "object",
            "required": ["adapter", "steps"],
            "additionalProperties": False,
            "properties": _step(
                "train",
                "Fine-tune a loaded LoRA on texts, or on prompts and completions (the loss on "
                "the completion alone), with AdamW (transformers); it is active afterwards and "
                "written, with loss.jsonl, into the step's output folder.",
                adapter={**_ADAPTER_NAME, "description": "The loaded adapter to train."},
                text=_or_data(_prompts("The training texts, one per record.")),
                prompt=_or_data(_prompts("The prompts, one per record (with completion).")),
                completion=_or_data(
                    _prompts("The completions, one per prompt: the loss is on these alone.")
                ),
                steps={
                    "description": "Optimizer steps.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_COUNT,
                },
                learning_rate={
                    "description": "AdamW's learning rate, constant. Default 1e-4.",
                    "type": "number",
                    "exclusiveMinimum": 0,
                },
                batch_size={
                    "description": "Records per step. Default 4.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_COUNT,
                },
                max_length={
                    "description": "Tokens per record at most (longer ones are cut). Default 128.",
                    "type": "integer",
                    "minimum": 2,
                    "maximum": MAX_COUNT,
                },
                seed=SEED,
                checkpoint_every={
                    "description": "Steps between two checkpoints (the adapter, the optimizer "
                    "and the RNG state, in the step's folder), from which `runner run --resume` "
                    f"continues an interrupted run. Default {CHECKPOINT_EVERY}.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_COUNT,
                },
            ),
        },
        "save": {
            "type": "object",
            "required": ["adapter"],
            "additionalProperties": False,
            "properties": _step(
                "save",
                "Write a loaded, merged or trained adapter into the step's output folder.",
                adapter={**_ADAPTER_NAME, "description": "The adapter to write."},
                format={
                    "description": "peft (a PEFT adapter folder; transformers), diffusers (a "
                    "LoRA .safetensors) or kohya (diffusers pipelines). Default: the family's "
                    "own (peft, diffusers).",
                    "enum": sorted({f for fs in SAVE_FORMATS.values() for f in fs}),
                },
            ),
        },
    }
