"""The spec language: schema, located errors, meaning checks, and the validate/schema commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import SpecError
from runner.running.interpreter import OPS
from runner.spec import schema, vocabulary
from runner.spec.load import load

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests" / "examples" / "invalid"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
INVALID_SPECS = sorted(INVALID.glob("*.yaml"))


def cli(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    runner = CliRunner()
    old = Path.cwd()
    if cwd:
        os.chdir(cwd)
    try:
        result = runner.invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


@pytest.mark.parametrize("spec", INVALID_SPECS, ids=lambda p: p.stem)
def test_invalid_spec_gives_exactly_the_golden_output(spec: Path) -> None:
    code, output = cli("validate", spec.name, cwd=INVALID)
    assert code == 1
    assert output == spec.with_suffix(".out").read_text()


@pytest.mark.parametrize("spec", INVALID_SPECS, ids=lambda p: p.stem)
def test_errors_are_located_inside_the_file(spec: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load(spec)
    lines = spec.read_bytes().count(b"\n") + 1
    assert all(1 <= p.line <= lines and p.col >= 1 for p in caught.value.problems)


def test_errors_found_out_of_order_are_reported_sorted_by_line(tmp_path: Path) -> None:
    # The schema finds the bad seed (line 9) before the meaning checks find the undeclared
    # adapter (line 6): the output must still read top to bottom.
    spec = tmp_path / "order.yaml"
    spec.write_text(
        "version: 1\n"
        "model: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "steps:\n"
        "  - op: generate\n"
        "    prompt: x\n"
        "  - {op: load, adapters: nope}\n"
        "  - op: generate\n"
        "    prompt: y\n"
        "    seed: -1\n"
    )
    code, output = cli("validate", str(spec))
    assert code == 1
    lines = [int(line.split(":")[1]) for line in output.splitlines()]
    assert lines == [6, 9]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_shipped_specs_validate(spec: Path) -> None:
    code, output = cli("validate", str(spec))
    assert (code, output) == (0, f"{spec}: ok\n")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_shipped_specs_carry_the_schema_modeline(spec: Path) -> None:
    first = spec.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/spec.schema.json"


def test_schema_ops_equal_interpreter_ops_and_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Steps", 1)[1].split("\n#", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
    assert schema.ops() == list(OPS) == documented


def _properties(node: object, where: str = "$") -> list[tuple[str, dict]]:
    found = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            if isinstance(sub, dict) and "not" not in sub:
                found.append((f"{where}.{name}", sub))
        for key, sub in node.items():
            if key not in ("if", "then", "allOf"):  # conditions, not what users write
                found += _properties(sub, f"{where}.{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            found += _properties(sub, f"{where}[{i}]")
    return found


def test_schema_is_draft07_strict_and_described() -> None:
    doc = schema.schema()
    assert doc["$schema"] == "http://json-schema.org/draft-07/schema#"
    props = _properties(doc)
    assert len(props) > 40
    undescribed = [
        w for w, sub in props if not {"description", "const", "enumDescriptions"} & set(sub)
    ]
    assert undescribed == []

    # every object the user writes is closed to unknown keys
    def objects(node: object) -> list[dict]:
        if isinstance(node, dict):
            own = [node] if node.get("type") == "object" and "properties" in node else []
            return own + [o for k, v in node.items() if k != "if" for o in objects(v)]
        if isinstance(node, list):
            return [o for v in node for o in objects(v)]
        return []

    # ...but a scheduler's, whose keys are its class's config, checked when it is built
    def scheduler(o: dict) -> bool:
        return o.get("properties") is vocabulary.SCHEDULER["properties"]

    steps = doc["properties"]["steps"]["items"]
    closed = [o for o in objects(doc) if o is not steps and not scheduler(o)]
    assert closed and all(o.get("additionalProperties") is False for o in closed)
    schedulers = [o for o in objects(doc) if scheduler(o)]
    assert schedulers and all("description" in o["additionalProperties"] for o in schedulers)


def test_schema_command_prints_the_schema_file() -> None:
    code, output = cli("schema")
    assert code == 0
    assert json.loads(output) == json.loads((ROOT / "schemas" / "spec.schema.json").read_text())


def test_all_files_are_reported_and_exit_is_one_if_any_fails() -> None:
    good, bad = SPECS[0], INVALID / "wrong-op.yaml"
    code, output = cli("validate", str(good), str(bad))
    assert code == 1
    assert output.startswith(f"{good}: ok\n{bad}:6:9: step 1 (generat): op: unknown op")


def test_missing_spec_file_is_a_located_error(tmp_path: Path) -> None:
    code, output = cli("validate", str(tmp_path / "nope.yaml"))
    assert code == 1
    assert output == f"{tmp_path / 'nope.yaml'}:1:1: $: the spec file does not exist\n"


def test_valid_spec_builds_typed_steps_with_defaults(tmp_path: Path) -> None:
    spec_file = tmp_path / "My Spec.yaml"
    spec_file.write_text(
        "version: 1\nseed: 5\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "adapters:\n  a: {path: builtin:tiny-causal-lm-lora-a}\n"
        "defaults: {generate: {max_new_tokens: 3, seed: 9}}\n"
        "steps:\n  - op: load\n    adapters: a\n  - op: set_adapters\n    adapters: {a: 0.5}\n"
        "  - op: generate\n    prompt: hi\n  - op: generate\n    prompt: [x, y]\n    seed: 1\n"
        "    max_new_tokens: 4\n"
    )
    spec = load(spec_file)
    assert spec.name == "my-spec" and spec.device == "auto" and spec.deterministic is True
    load_step, set_step, gen1, gen2 = spec.steps
    assert load_step.adapters == ("a",) and load_step.line == 8
    assert set_step.weights == (("a", 0.5),)
    assert (gen1.prompts, gen1.batch, gen1.seed, gen1.args.written()) == (
        ("hi",),
        False,
        9,
        {"max_new_tokens": 3},
    )
    assert (gen2.prompts, gen2.batch, gen2.seed, gen2.args.written()) == (
        ("x", "y"),
        True,
        1,
        {"max_new_tokens": 4},
    )


def test_adapter_folder_as_model_brings_default(tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(
        '{"peft_type": "LORA", "base_model_name_or_path": "builtin:tiny-causal-lm"}'
    )
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        "version: 1\nmodel: {family: transformers, path: ./adapter}\n"
        "steps:\n  - op: set_adapters\n    adapters: default\n  - op: load\n    adapters: default\n"
    )
    with pytest.raises(SpecError) as caught:
        load(spec_file)
    assert [str(p) for p in caught.value.problems] == [
        f"{spec_file}:7:15: step 2 (load): adapters: adapter 'default' is already loaded (with the model)"
    ]


def test_a_valid_document_is_schema_checked_once(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "steps:\n  - op: generate\n    prompt: hi\n"
    )
    code = (
        "import sys\nfrom runner.cli import main\n"
        "try:\n    main(['validate', sys.argv[1]])\nexcept SystemExit as e:\n    print(e.code)\n"
        "print('jsonschema' in sys.modules)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def validate() -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", code, str(spec)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        return out.stdout.splitlines()[-2:]

    assert validate() == ["0", "True"]
    assert validate() == ["0", "False"]
    spec.write_text(spec.read_text().replace("prompt: hi", "promt: hi"))
    assert validate() == ["1", "True"]
    assert validate() == ["1", "True"]  # an invalid document is never remembered


def test_validation_and_run_errors_count_steps_alike(tmp_path: Path) -> None:
    # One number for a step everywhere a person reads it: the run's `where` and the
    # validation line both say `step 2 (generate)`; the API's path keeps JSON's steps[1].
    head = (
        "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "steps:\n  - op: disable\n  - op: generate\n    prompt: hi\n"
    )
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(head)
    bad.write_text(head + "    max_new_token: 3\n")
    assert load(good).where(2) == f"{good}:5: step 2 (generate)"
    with pytest.raises(SpecError) as caught:
        load(bad)
    (problem,) = caught.value.problems
    assert problem.path == "steps[1].max_new_token"
    assert str(problem).startswith(
        f"{bad}:7:5: step 2 (generate): max_new_token: unknown key 'max_new_token' in step 2 "
    )
