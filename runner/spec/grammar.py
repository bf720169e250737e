"""The spec's JSON Schema, expanded from the vocabulary (runner.spec.vocabulary).

This is the one place that says what a spec may contain. `runner schema` prints what
`build()` returns and `schemas/spec.schema.json` is generated from it (`make schema`; a
test holds them equal), so the schema an editor reads, the validator and the meaning checks
cannot drift apart. The expansion narrows each generating op per model family, so that an
editor offers only that family's arguments, and refuses the other family's at their key.
"""

from __future__ import annotations

from typing import Any

from runner.spec.vocabulary import (
    FAMILIES,
    GENERATING,
    MODEL_OPTIONS,
    family_of,
    generate_arguments,
    op_definitions,
    properties,
    wrong_family,
    wrong_family_option,
)


def _defaults_generate() -> dict[str, Any]:
    return {
        "description": "Default generate arguments.",
        "type": "object",
        "additionalProperties": False,
        "properties": generate_arguments(),
    }


def _if(path_value: dict[str, Any]) -> dict[str, Any]:
    ((key, value),) = path_value.items()
    return {"properties": {key: value}, "required": [key]}


def _is_op(op: str) -> dict[str, Any]:
    """A step of OP. Only a mapping is one: an editor would otherwise hold a step still being
    typed (null) to every op's definition at once."""
    return {"type": "object", **_if({"op": {"const": op}})}


def _narrowed(properties: dict[str, Any], family: str) -> dict[str, Any]:
    """PROPERTIES (of a generating op, or defaults.generate) for FAMILY: its own arguments,
    and each of the other family's refused at the key, naming the family.

    A key of the other family stays listed (accepting anything, never suggested), so that
    the refusal below is the one message about it: an editor's YAML language server shows a
    schema's `errorMessage` for a `false` property, at the key, but ignores it next to
    `not`. Completion then offers only the family's keys.
    """
    own: dict[str, Any] = {}
    refusals = []
    for name, schema in properties.items():
        owner = family_of(name)
        if owner is None or owner == family:
            own[name] = schema
        else:
            message = wrong_family(name, family)
            own[name] = {"description": message, "doNotSuggest": True}
            refusals.append({"properties": {name: False}, "errorMessage": message})
    return {"properties": own, "allOf": refusals}


def _family_definition(definition: dict[str, Any], family: str) -> dict[str, Any]:
    narrowed = _narrowed(definition["properties"], family)
    return {**definition, **narrowed}


def _family_definitions(definitions: dict[str, Any]) -> dict[str, Any]:
    """Each generating op once per family: `generate_transformers`, `generate_diffusers`."""
    return {
        f"{op}_{family}": _family_definition(definitions[op], family)
        for op in GENERATING
        for family in FAMILIES
    }


def _generating_steps(suffix: str) -> dict[str, Any]:
    """Steps whose generating ops are checked against `#/definitions/{op}{suffix}`."""
    return {
        "items": {
            "allOf": [
                {"if": _is_op(op), "then": {"$ref": f"#/definitions/{op}{suffix}"}}
                for op in GENERATING
            ]
        }
    }


def _family_rules() -> list[dict[str, Any]]:
    """The model's family selects which generate arguments and model options exist: for
    each family, generating steps and defaults.generate take that family's definitions, and
    a model option of the other family is refused at its key; with no family known, every
    argument is taken (the missing or unknown family is the error then)."""
    rules: list[dict[str, Any]] = []
    defaults = _defaults_generate()
    for family in FAMILIES:
        options = [
            {"properties": {name: False}, "errorMessage": wrong_family_option(name, family)}
            for name, (owner, _) in MODEL_OPTIONS.items()
            if owner != family
        ]
        # The model's own properties only list the options; here they are checked, and
        # offered to complete, for their family alone.
        offered = {
            name: schema for name, (owner, schema) in MODEL_OPTIONS.items() if owner == family
        }
        rules.append(
            {
                "if": _if({"model": _if({"family": {"const": family}})}),
                "then": {
                    "properties": {
                        "model": {"properties": offered, "allOf": options},
                        "steps": _generating_steps(f"_{family}"),
                        "defaults": {
                            "properties": {"generate": _family_definition(defaults, family)}
                        },
                    }
                },
            }
        )
    rules.append(
        {
            "if": _if({"model": _if({"family": {"enum": list(FAMILIES)}})}),
            "else": {
                "properties": {
                    "model": {"properties": {n: s for n, (_, s) in MODEL_OPTIONS.items()}},
                    "steps": _generating_steps(""),
                    "defaults": {"properties": {"generate": defaults}},
                }
            },
        }
    )
    return rules


def _prompt_required() -> dict[str, Any]:
    """A generating step needs a prompt unless defaults.generate gives one."""
    given = _if({"defaults": _if({"generate": {"required": ["prompt"]}})})
    needed = {"if": _if({"op": {"enum": list(GENERATING)}}), "then": {"required": ["prompt"]}}
    return {"if": given, "else": {"properties": {"steps": {"items": needed}}}}


def _properties(steps: dict[str, Any]) -> dict[str, Any]:
    """The top-level properties, `steps` holding one of the op definitions STEPS."""
    found = properties()
    found["steps"] = {**found["steps"], "items": _step_items(steps)}
    return found


def _step_items(steps: dict[str, Any]) -> dict[str, Any]:
    """One step, of the op definitions STEPS. Its `op` has no description of its own: an
    editor's hover shows the first description it meets, which is then the chosen op's."""
    ops = list(steps)
    return {
        "type": "object",
        "description": "One step; `op` says which.",
        "required": ["op"],
        "properties": {
            "op": {
                "enum": ops,
                "enumDescriptions": [steps[op]["properties"]["op"]["description"] for op in ops],
            }
        },
        "allOf": [
            # A new step (no op yet) in an editor offers each op with the keys it needs.
            {
                "if": {"type": "object", "required": ["op"]},
                "else": {"defaultSnippets": [_snippet(op, steps[op]) for op in ops]},
            },
            # A generating op's definition follows model.family (see _family_rules).
            *(
                {"if": _is_op(op), "then": {"$ref": f"#/definitions/{op}"}}
                for op in ops
                if op not in GENERATING
            ),
        ],
    }


def _snippet(op: str, definition: dict[str, Any]) -> dict[str, Any]:
    needed = [*definition.get("required", []), *(["prompt"] if op in GENERATING else [])]
    body = {"op": op, **{key: f"${{{n}}}" for n, key in enumerate(needed, 1)}}
    return {
        "label": f"op: {op}",
        "description": definition["properties"]["op"]["description"],
        "body": body,
    }


def build() -> dict[str, Any]:
    """The spec's JSON Schema (draft-07)."""
    steps = op_definitions()
    definitions = {**steps, **_family_definitions(steps)}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://runner.invalid/schemas/spec.schema.json",
        "$comment": "Generated from runner/spec/vocabulary.py by runner/spec/grammar.py; do "
        "not edit: `make schema` writes it again, and a test holds it equal.",
        "title": "runner spec",
        "description": "A runner pipeline spec: a base model, named adapters and an ordered "
        "list of steps.",
        "type": "object",
        "required": ["version", "model", "steps"],
        "additionalProperties": False,
        "properties": _properties(steps),
        "allOf": [*_family_rules(), _prompt_required()],
        "definitions": definitions,
    }
