"""Data files (`data:`): read without model libraries, located errors in the file itself,
limits, references resolved into the typed steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.spec import data
from runner.spec.load import load
from runner.spec.types import Compare, Generate

MODEL = "model: {family: transformers, path: builtin:tiny-causal-lm}\n"


def _spec(tmp_path: Path, body: str) -> Path:
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\n" + MODEL + body)
    return spec


def _problems(spec: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(spec)
    return [str(p) for p in caught.value.problems]


def test_the_three_formats_read_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"q": "one"}\n\n{"q": "two", "n": 1}\n')
    (tmp_path / "b.csv").write_text('q,label\n"x, y",1\nz,0\n')
    (tmp_path / "c.txt").write_text("first line\n\nsecond line\n")
    a = data.read("a", "a.jsonl", tmp_path)
    assert a.values("q") == ("one", "two") and a.lines == (1, 3)
    b = data.read("b", "b.csv", tmp_path)
    assert b.values("q") == ("x, y", "z") and b.values("label", data.INDEX) == (1, 0)
    assert b.lines == (2, 3)
    c = data.read("c", "c.txt", tmp_path)
    assert c.values("text") == ("first line", "second line")
    import hashlib

    assert a.sha256 == hashlib.sha256((tmp_path / "a.jsonl").read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("qa.jsonl", '{"q": "a"}\n[1, 2]\n', "qa.jsonl:2: not a JSON object"),
        ("qa.jsonl", '{"q": "a"}\n\n{"q": \n', "qa.jsonl:3: not JSON: Expecting value"),
        ("qa.jsonl", '{"q": NaN}\n', "qa.jsonl:1: not JSON: NaN is not a JSON number"),
        ("qa.csv", "q,a\nx\n", "qa.csv:2: 1 fields, but the header has 2"),
        ("qa.csv", "q,q\nx,y\n", "qa.csv:1: column 'q' twice in the header"),
        ("qa.jsonl", "", "qa.jsonl: holds no records"),
        ("qa.json", "{}", "qa.json: unknown data format '.json'"),
    ],
)
def test_a_bad_file_is_one_error_located_in_it(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(data.DataError) as caught:
        data.read("qa", name, tmp_path)
    assert str(caught.value).startswith(message)


def test_not_utf8_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_bytes(b"ok\nok\n\xff\n")
    with pytest.raises(data.DataError, match=r"^t.txt:3: not UTF-8"):
        data.read("t", "t.txt", tmp_path)


def test_limits_on_bytes_and_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t.txt").write_text("a\nb\nc\n")
    monkeypatch.setattr(data, "MAX_RECORDS", 2)
    with pytest.raises(data.DataError, match=r"^t.txt:3: more than 2 records"):
        data.read("t", "t.txt", tmp_path)
    monkeypatch.setattr(data, "MAX_BYTES", 4)
    with pytest.raises(data.DataError, match=r"^t.txt: larger than 4 bytes"):
        data.read("t", "t.txt", tmp_path)


def test_a_missing_field_is_located_at_the_record(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "qa.jsonl").write_text('{"q": "a"}\n{"r": "b"}\n{"q": 3}\n')
    spec = _spec(
        tmp_path,
        "data:\n  qa: {path: d/qa.jsonl}\nsteps:\n  - op: generate\n"
        "    prompt: {data: qa, field: q}\n",
    )
    (problem,) = _problems(spec)
    assert problem == f"{tmp_path}/d/qa.jsonl:2:1: data.qa: no field 'q' (fields: r)"
    (tmp_path / "d" / "qa.jsonl").write_text('{"q": "a"}\n{"q": 3}\n')
    (problem,) = _problems(spec)
    assert problem.endswith("qa.jsonl:2:1: data.qa: field 'q' is 3, expected a string")


def test_missing_file_and_undeclared_set_point_into_the_spec(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        "data:\n  qa: {path: nowhere.jsonl}\nsteps:\n  - op: generate\n"
        "    prompt: {data: other, field: q}\n",
    )
    problems = _problems(spec)
    assert problems[0].startswith(f"{spec}:4:14: data.qa.path: nowhere.jsonl: does not exist")
    assert problems[1] == (
        f"{spec}:7:20: step 1 (generate): prompt.data: data 'other' is not declared under data (declared: qa)"
    )


def test_a_data_name_is_a_key_never_a_path(tmp_path: Path) -> None:
    (tmp_path / "qa.txt").write_text("x\n")
    spec = _spec(
        tmp_path, "data:\n  ../up: {path: qa.txt}\nsteps:\n  - {op: generate, prompt: x}\n"
    )
    assert any("data" in p and "../up" in p for p in _problems(spec))


def test_references_become_one_value_per_record(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("The cat\nA bird\n")
    spec = load(
        _spec(
            tmp_path,
            "data:\n  p: {path: p.txt}\nadapters:\n  a: {path: builtin:tiny-causal-lm-lora-a}\n"
            "steps:\n  - op: generate\n    prompt: {data: p, field: text}\n"
            "  - {op: load, adapters: a}\n"
            "  - op: compare\n    adapters: [base, a]\n    prompt: {data: p, field: text}\n",
        )
    )
    generate, _, compare = spec.steps
    assert isinstance(generate, Generate) and generate.prompts == ("The cat", "A bird")
    assert generate.batch
    assert isinstance(compare, Compare) and compare.prompts == ("The cat", "A bird")
    assert spec.data["p"].records == ({"text": "The cat"}, {"text": "A bird"})


def test_validation_reads_data_without_model_libraries(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "p.txt").write_text("The cat\n")
    spec = _spec(
        tmp_path,
        "data:\n  p: {path: p.txt}\nsteps:\n  - {op: generate, prompt: {data: p, field: text}}\n",
    )
    code = (
        "import sys; from runner.spec.load import load; load(__import__('pathlib').Path(sys.argv[1]));"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(spec)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_compare_counts_one_prompt_per_record(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("".join(f"prompt {i}\n" for i in range(30)))
    spec = _spec(
        tmp_path,
        "data:\n  p: {path: p.txt}\nsteps:\n"
        "  - {op: compare, adapters: [base], seed: [0, 1], max_cells: 50,"
        " prompt: {data: p, field: text}}\n",
    )
    (problem,) = _problems(spec)
    assert "makes 60 cells (1 row x 30 prompts x 2 seeds), more than 50" in problem
