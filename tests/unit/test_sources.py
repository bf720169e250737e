"""The rules about models and adapters on disk that validation and the backends share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub.utils import HFValidationError, validate_repo_id
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import SourceError
from runner.sources import folders, names

IDS = [
    "gpt2",
    "openai-community/gpt2",
    "Foo-BAR_foo.bar123/x",
    "a/b/c",
    "foo--bar",
    "foo..bar",
    "x.git",
    ".hidden",
    "trailing-",
    "café/lora",
    "has space",
    "",
    "/",
    "a" * 96,
    "a" * 97,
    "o/" + "b" * 96,
    "o/" + "b" * 97,
    "x\n",
]


def hub_accepts(repo_id: str) -> bool:
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


@pytest.mark.parametrize("repo_id", IDS)
def test_hub_ids_are_judged_as_huggingface_hub_judges_them(repo_id: str) -> None:
    assert (names.hub_id_problem(repo_id) is None) == hub_accepts(repo_id)


@given(st.text(alphabet="ab-_./é \n0", max_size=12))
def test_hub_id_rule_agrees_with_huggingface_hub_on_any_text(repo_id: str) -> None:
    assert (names.hub_id_problem(repo_id) is None) == hub_accepts(repo_id)


def test_a_malformed_adapter_config_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{'peft_type': 'LORA'}")
    with pytest.raises(SourceError) as caught:
        folders.adapter_config(tmp_path)
    assert str(caught.value) == (
        f"'{tmp_path / 'adapter_config.json'}' is not valid JSON "
        "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe", "is not valid JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (b'{"r": 4}', "names no peft_type"),
    ],
)
def test_an_adapter_config_must_be_a_peft_config(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / "adapter_config.json").write_bytes(content)
    with pytest.raises(SourceError, match=reason):
        folders.adapter_config(tmp_path)


def write_adapter(folder: Path, base: str) -> Path:
    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "base_model_name_or_path": base, "revision": "v2"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_an_adapter_base_resolves_against_the_adapter_folder(tmp_path: Path) -> None:
    (tmp_path / "models" / "base").mkdir(parents=True)
    adapter = write_adapter(tmp_path / "models" / "adapters" / "x", "../../base")
    assert folders.adapter_base(adapter) == (str(tmp_path / "models" / "base"), None)
    hub = write_adapter(tmp_path / "hub", "someone/base")
    assert folders.adapter_base(hub) == ("someone/base", "v2")


@pytest.mark.parametrize(
    ("base", "reason"),
    [
        ("../missing", "names base model '../missing', which is no folder"),
        ("/no/such/base", "names base model '/no/such/base', which is no folder"),
        ("not a/hub id", "neither a local folder nor a hub id"),
        ("builtin:nothing", "which is no builtin"),
        ("", "names no base model"),
    ],
)
def test_an_adapter_base_that_cannot_load_is_refused(
    tmp_path: Path, base: str, reason: str
) -> None:
    with pytest.raises(SourceError, match=reason):
        folders.adapter_base(write_adapter(tmp_path / "a", base))


def test_a_weight_name_must_be_in_the_folder(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    assert folders.named_weight(tmp_path, "a.safetensors") == tmp_path / "a.safetensors"
    with pytest.raises(
        SourceError, match=r"holds no file 'b.safetensors' \(it holds a.safetensors\)"
    ):
        folders.named_weight(tmp_path, "b.safetensors")
    with pytest.raises(SourceError, match="plain file name"):
        folders.named_weight(tmp_path, "../a.safetensors")
