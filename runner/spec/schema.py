"""The JSON Schema (the one place that says what a spec may contain) and its messages."""

from __future__ import annotations

import datetime
import difflib
import json
import math
import re
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING, Any

from runner.errors import Located
from runner.spec import document, grammar, validcache
from runner.spec.document import Document, Path_, format_path
from runner.spec.values import is_number
from runner.spec.vocabulary import FAMILIES, family_of

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

# How this module reads the schema besides draft-07 itself (see _validator); part of the key
# under which valid documents are remembered, with the reader's revision, so that a change
# to either forgets them.
RULES = "finite numbers; patterns match as in ECMA-262; a false property is refused at its key"

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
    return list(schema()["properties"]["steps"]["items"]["properties"]["op"]["enum"])


def schema_problems(doc: Document, raw: bytes) -> list[Located]:
    """Every schema violation in DOC (read from RAW), each with a message a person can act on."""
    known = validcache.key(f"{schema_text()}{RULES}; reader {document.REVISION}", raw)
    if validcache.known(known):
        return []
    problems: list[Located] = []
    for error in _validator().iter_errors(doc.data):
        problems.extend(_translate(error, doc))
    if not problems:
        validcache.remember(known)
    return problems


@cache
def _validator() -> Validator:
    """Draft-07, as JSON means it: a number is finite (YAML's .nan and .inf are not JSON),
    and a pattern's `$` ends the string, where Python's would also match before a final
    newline (so "x\\n" would pass for a name and break every file that lists it); and a
    property whose schema is `false` is refused at its own path (jsonschema reports it at the
    object, without the key), with the errorMessage of the schema that lists it."""
    from jsonschema import Draft7Validator, ValidationError, validators

    def number(checker: Any, value: Any) -> bool:
        return is_number(value) and math.isfinite(value)

    def integer(checker: Any, value: Any) -> bool:
        return number(checker, value) and float(value).is_integer()

    def pattern(validator: Any, regex: str, value: Any, schema: Any) -> Any:
        if isinstance(value, str) and not _ecma(regex).search(value):
            yield ValidationError(f"{value!r} does not match {regex!r}")

    def properties(validator: Any, properties: dict[str, Any], value: Any, schema: Any) -> Any:
        if not isinstance(value, dict):
            return
        for name, sub in properties.items():
            if name not in value:
                continue
            if sub is False:
                yield ValidationError(f"{name!r} is not allowed", path=[name])
            else:
                yield from validator.descend(value[name], sub, path=name, schema_path=name)

    checker = Draft7Validator.TYPE_CHECKER.redefine_many({"number": number, "integer": integer})
    cls = validators.extend(
        Draft7Validator,
        {"pattern": pattern, "properties": properties},
        type_checker=checker,
    )
    return cls(schema())  # type: ignore[no-any-return]


@cache
def _ecma(regex: str) -> re.Pattern[str]:
    """REGEX with each `$` outside a class as `\\Z`: the end of the string, and only that."""
    out, escaped, in_class = [], False, False
    for char in regex:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "[]":
            in_class = char == "["
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return re.compile("".join(out))


def _found(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: ".inf", -math.inf: "-.inf"}.get(value, ".nan")
    if isinstance(value, datetime.datetime):
        return "a date and time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, bytes):
        return "binary data"
    kind = {str: "string", int: "integer", float: "number"}.get(type(value), type(value).__name__)
    return f"{kind} {json.dumps(value)}"


def _expected(types: str | list[str]) -> str:
    names = [_TYPE_NAMES[t] for t in ([types] if isinstance(types, str) else types)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _where(path: Path_) -> str:
    if not path:
        return "at the top level"
    if path[0] == "steps" and len(path) > 1 and isinstance(path[1], int):  # as a run counts
        return f"in step {path[1] + 1}" + (f"'s {format_path(path[2:])}" if path[2:] else "")
    return f"in {format_path(path)}"


def _suggest(word: str, choices: list[str]) -> str:
    folded = {c.lower(): c for c in choices}  # `dpmsolvermultistepscheduler` is close too
    close = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean '{folded[close[0]]}'?)" if close else ""


# An enum longer than this (the scheduler classes) is not listed in full in a message.
_LISTED = 12


def _translate(error: ValidationError, doc: Document) -> list[Located]:
    problems = _messages(error, doc)
    expected = error.schema.get("type") if isinstance(error.schema, dict) else None
    if "string" in (expected or ()):
        hint = ""
        if isinstance(error.instance, bool):
            hint = " (YAML reads unquoted yes/no/on/off as true/false: quote the value)"
        elif isinstance(error.instance, datetime.date):
            hint = " (quote it)"
        problems = [replace(p, message=p.message + hint) for p in problems]
    return problems


def _of_family(allowed: list[str], doc: Document, path: Path_) -> list[str]:
    """The keys allowed at PATH less the generate arguments of the other family, for a
    step or defaults.generate of a spec whose model.family is valid."""
    model = doc.data.get("model") if isinstance(doc.data, dict) else None
    family = model.get("family") if isinstance(model, dict) else None
    if family not in FAMILIES or not path or path[0] not in ("steps", "defaults"):
        return allowed
    return [k for k in allowed if family_of(k) in (None, family)]


def _messages(error: ValidationError, doc: Document) -> list[Located]:
    path: Path_ = tuple(error.absolute_path)
    value, rule, schema_node = error.instance, error.validator, error.schema
    custom = schema_node.get("errorMessage") if isinstance(schema_node, dict) else None
    if custom and rule in ("not", "properties"):  # a key this spec may not use: at the key
        return [doc.problem(path, custom, key=True)]
    if custom and rule == "pattern":
        return [doc.problem(path, f"{custom}, found {_found(value)}")]
    if rule == "additionalProperties":
        allowed = _of_family(sorted(schema_node.get("properties", {})), doc, path)
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
                f"unknown op {json.dumps(value) if isinstance(value, str) else _found(value)}"
                f"{_suggest(str(value), choices)}; "
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
        expected = _expected(error.validator_value)
        if is_number(value) and not math.isfinite(value):
            expected = expected.replace("a number", "a finite number")
        return [doc.problem(path, f"expected {expected}, found {_found(value)}")]
    if rule == "const":
        return [
            doc.problem(path, f"must be {json.dumps(error.validator_value)}, found {_found(value)}")
        ]
    if rule == "pattern":
        return [doc.problem(path, f"{_found(value)} does not match {error.validator_value}")]
    if rule in ("minItems", "minProperties", "minLength"):
        return [doc.problem(path, "must not be empty")]
    if rule == "maxLength":
        limit = error.validator_value
        return [doc.problem(path, f"must be at most {limit} characters, found {len(value)}")]
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
