"""The JSON Schema (the one place that says what a spec may contain) and its messages."""

from __future__ import annotations

import difflib
import json
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING, Any

from runner.errors import Located
from runner.spec import grammar, validcache
from runner.spec.document import Document, Path_, format_path

if TYPE_CHECKING:
    from jsonschema import ValidationError

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@cache
def schema_text() -> str:
    """The schema as `runner schema` prints it and schemas/spec.schema.json holds it."""
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


@cache
def schema() -> dict[str, Any]:
    return grammar.build()


def ops() -> list[str]:
    """The step ops the schema allows, in schema order."""
    return list(schema()["definitions"])


def schema_problems(doc: Document, raw: bytes) -> list[Located]:
    """Every schema violation in DOC (read from RAW), each with a message a person can act on."""
    known = validcache.key(schema_text(), raw)
    if validcache.known(known):
        return []
    from jsonschema import Draft7Validator

    problems: list[Located] = []
    for error in Draft7Validator(schema()).iter_errors(doc.data):
        problems.extend(_translate(error, doc))
    if not problems:
        validcache.remember(known)
    return problems


def _found(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    kind = {str: "string", int: "integer", float: "number"}.get(type(value), type(value).__name__)
    return f"{kind} {json.dumps(value)}"


def _expected(types: str | list[str]) -> str:
    names = [_TYPE_NAMES[t] for t in ([types] if isinstance(types, str) else types)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _where(path: Path_) -> str:
    return "at the top level" if not path else f"in {format_path(path)}"


def _suggest(word: str, choices: list[str]) -> str:
    folded = {c.lower(): c for c in choices}  # `dpmsolvermultistepscheduler` is close too
    close = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean '{folded[close[0]]}'?)" if close else ""


# An enum longer than this (the scheduler classes) is not listed in full in a message.
_LISTED = 12


def _translate(error: ValidationError, doc: Document) -> list[Located]:
    problems = _messages(error, doc)
    expected = error.schema.get("type") if isinstance(error.schema, dict) else None
    if isinstance(error.instance, bool) and "string" in (expected or ()):
        hint = " (YAML reads unquoted yes/no/on/off as true/false: quote the value)"
        problems = [replace(p, message=p.message + hint) for p in problems]
    return problems


def _messages(error: ValidationError, doc: Document) -> list[Located]:
    path: Path_ = tuple(error.absolute_path)
    value, rule, schema_node = error.instance, error.validator, error.schema
    custom = schema_node.get("errorMessage") if isinstance(schema_node, dict) else None
    if custom and rule == "not":  # a key this spec may not use: point at the key
        return [doc.problem(path, custom, key=True)]
    if custom:
        return [doc.problem(path, f"{custom}, found {_found(value)}")]
    if rule == "additionalProperties":
        allowed = sorted(schema_node.get("properties", {}))
        return [
            doc.problem(
                (*path, key),
                f"unknown key '{key}' {_where(path)}{_suggest(key, allowed)}; "
                f"allowed: {', '.join(allowed)}",
                key=True,
            )
            for key in value
            if key not in allowed
        ]
    if rule == "required":
        missing = [k for k in error.validator_value if k not in value]
        return [doc.problem(path, f"missing required key '{k}'") for k in missing]
    if rule == "enum" and path and path[-1] == "op":
        choices = error.validator_value
        return [
            doc.problem(
                path,
                f"unknown op {json.dumps(value)}{_suggest(str(value), choices)}; "
                f"ops: {', '.join(choices)}",
            )
        ]
    if rule == "enum":
        choices = [str(c) for c in error.validator_value]
        expected = (
            f"expected one of: {', '.join(choices)}"
            if len(choices) <= _LISTED
            else f"expected one of the {len(choices)} names `runner schema` lists"
        )
        suggestion = _suggest(str(value), choices)
        return [doc.problem(path, f"{_found(value)} is not allowed{suggestion}; {expected}")]
    if rule == "type":
        return [
            doc.problem(path, f"expected {_expected(error.validator_value)}, found {_found(value)}")
        ]
    if rule == "const":
        return [
            doc.problem(path, f"must be {json.dumps(error.validator_value)}, found {_found(value)}")
        ]
    if rule == "pattern":
        return [doc.problem(path, f"{_found(value)} does not match {error.validator_value}")]
    if rule in ("minItems", "minProperties", "minLength"):
        return [doc.problem(path, "must not be empty")]
    bounds = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if rule in bounds:
        return [doc.problem(path, f"must be {bounds[rule]} {error.validator_value}, found {value}")]
    if rule == "multipleOf":
        return [doc.problem(path, f"must be a multiple of {error.validator_value}, found {value}")]
    return [doc.problem(path, error.message)]
