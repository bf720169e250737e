"""The schema as an editor reads it: the real yaml-language-server (what VS Code's YAML
extension, Neovim, Helix and JetBrains run) driven over stdio, on documents that carry the
`# yaml-language-server: $schema=...` modeline, opened under their real file:// paths.

`make test` installs the pinned server into .node/ when npm is present; without node or the
package these tests skip, saying so.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsp import Client

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / ".node" / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../schemas/spec.schema.json\n"
COMMON = {"id", "seed"}  # and `prompt`, already written in the documents below

pytestmark = [
    pytest.mark.editor,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(
        not SERVER.exists(),
        reason="yaml-language-server is not installed: `make editor` (needs npm) puts it in .node/",
    ),
]


@pytest.fixture(scope="module")
def server() -> Iterator[Client]:
    client = Client(["node", str(SERVER), "--stdio"], ROOT)
    yield client
    client.close()


def _open(server: Client, name: str, text: str) -> str:
    """TEXT opened as if it were specs/NAME, so that the relative modeline finds the schema
    (the file itself is never written)."""
    return server.open(ROOT / "specs" / name, MODELINE + text)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_shipped_specs_have_no_diagnostics(server: Client, spec: Path) -> None:
    assert server.diagnostics(server.open(spec)) == []


TRANSFORMERS = "model:\n  family: transformers\n  path: builtin:tiny-causal-lm\n"
DIFFUSERS = "model:\n  family: diffusers\n  path: builtin:tiny-sd\n"

# name -> (document after the modeline, {the line, as written: words its message must hold});
# each diagnostic starts at that line's key.
BROKEN = {
    "diffusers-argument-in-transformers-step": (
        f"version: 1\n{TRANSFORMERS}steps:\n  - op: generate\n    prompt: hi\n"
        "    num_inference_steps: 3\n",
        {"    num_inference_steps: 3": ["'num_inference_steps'", "diffusers", "transformers"]},
    ),
    "transformers-argument-in-diffusers-defaults": (
        f"version: 1\n{DIFFUSERS}defaults:\n  generate:\n    max_new_tokens: 8\n"
        "steps:\n  - op: generate\n    prompt: a cat\n    do_sample: true\n",
        {
            "    max_new_tokens: 8": ["'max_new_tokens'", "transformers", "diffusers"],
            "    do_sample: true": ["'do_sample'", "transformers", "diffusers"],
        },
    ),
    "diffusers-model-option-in-transformers": (
        f"version: 1\n{TRANSFORMERS}  scheduler: {{type: DDIMScheduler}}\n"
        "steps:\n  - op: generate\n    prompt: hi\n",
        {"  scheduler: {type: DDIMScheduler}": ["'scheduler'", "diffusers model option"]},
    ),
    "unknown-key": (
        f"version: 1\nsead: 3\n{TRANSFORMERS}steps:\n  - op: generate\n    prompt: hi\n",
        {"sead: 3": ["sead"]},
    ),
    "op-typo": (
        f"version: 1\n{TRANSFORMERS}steps:\n  - op: generat\n    prompt: hi\n",
        {"  - op: generat": ["generate"]},
    ),
    "missing-prompt": (
        f"version: 1\n{DIFFUSERS}steps:\n  - op: generate\n    seed: 1\n",
        {"  - op: generate": ["prompt"]},
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_specs_are_flagged_at_the_key_naming_it(server: Client, case: str) -> None:
    text, expected = BROKEN[case]
    lines = (MODELINE + text).splitlines()
    found = {
        lines[d["range"]["start"]["line"]]: (d["range"]["start"]["character"], d["message"])
        for d in server.diagnostics(_open(server, f"_{case}.yaml", text))
    }
    assert sorted(found) == sorted(expected), found
    for line, words in expected.items():
        column, message = found[line]
        assert all(word in message for word in words), message
        assert "Matches a schema that is not allowed" not in message
        if case != "op-typo":  # a key's diagnostic starts where the key does
            assert column == len(line) - len(line.lstrip(" -")), message


# Written down from the spec reference (README), not read from the grammar under test.
FAMILY_ARGUMENTS = {
    "transformers": {
        "chat",
        "do_sample",
        "max_new_tokens",
        "num_beams",
        "repetition_penalty",
        "temperature",
        "top_k",
        "top_p",
    },
    "diffusers": {
        "guidance_scale",
        "height",
        "lora_scale",
        "negative_prompt",
        "num_images_per_prompt",
        "num_inference_steps",
        "scheduler",
        "width",
    },
}
MODEL_OPTIONS = {"transformers": {"attn_implementation"}, "diffusers": {"components", "scheduler"}}


def _family_keys(family: str) -> set[str]:
    return FAMILY_ARGUMENTS[family]


@pytest.mark.parametrize("family", ["transformers", "diffusers"])
@pytest.mark.parametrize("where", ["step", "defaults"])
def test_completion_offers_exactly_the_familys_arguments(
    server: Client, family: str, where: str
) -> None:
    model = TRANSFORMERS if family == "transformers" else DIFFUSERS
    if where == "step":
        text = f"version: 1\n{model}steps:\n  - op: generate\n    prompt: hi\n    \n"
        expected = _family_keys(family) | COMMON | {"expect"}  # a step's, not a default
    else:
        text = f"version: 1\n{model}defaults:\n  generate:\n    prompt: hi\n    \nsteps: [{{op: disable}}]\n"
        expected = _family_keys(family) | {"seed"}
    line = (MODELINE + text).splitlines().index("    ")
    items = server.completion(_open(server, f"_complete-{where}-{family}.yaml", text), line, 4)
    labels = [item["label"] for item in items]
    assert sorted(labels) == sorted(expected)  # each once, and nothing of the other family
    for item in items:  # a snippet that writes the key with a colon, never `key: key`
        text = item.get("insertText", item["label"])
        assert text.startswith(item["label"] + ":"), item
        assert f": {item['label']}" not in text and f",{item['label']}|" not in text, item


def test_a_new_step_offers_each_op(server: Client) -> None:
    text = f"version: 1\n{TRANSFORMERS}steps:\n  - op: disable\n  - \n"
    line = (MODELINE + text).splitlines().index("  - ")
    items = server.completion(_open(server, "_new-step.yaml", text), line, 4)
    offered: dict[str, list[str]] = {}
    for item in items:
        offered.setdefault(item["label"], []).append(item.get("insertText", "").strip())
    for op in ("load", "set_adapters", "generate", "compare", "disable", "enable"):
        assert any(text.startswith(f"op: {op}") for text in offered[f"op: {op}"]), offered
    assert all("prompt:" in text for text in offered["op: generate"])
    assert all("adapters:" in text for text in offered["op: load"])


def test_hover_on_op_describes_that_op(server: Client) -> None:
    op = "compare"
    text = f"version: 1\n{TRANSFORMERS}steps:\n  - op: disable\n  - op: {op}\n    prompt: hi\n"
    line = (MODELINE + text).splitlines().index(f"  - op: {op}")
    uri = _open(server, "_hover.yaml", text)
    shown = server.hover(uri, line, len("  - op: ") + 2)
    served = json.loads((ROOT / "schemas" / "spec.schema.json").read_text())  # what it was given
    description = served["definitions"][op]["properties"]["op"]["description"]
    assert shown.split("\n\n")[1] == description.replace("_", "\\_"), shown
    assert f"- op: {op}" in shown  # and an example of it
    other = server.hover(uri, line - 1, len("  - op: ") + 2)
    assert other.split("\n\n")[1] != shown.split("\n\n")[1]  # each op its own


@pytest.mark.parametrize("family", ["transformers", "diffusers"])
def test_completion_in_model_offers_the_familys_options(server: Client, family: str) -> None:
    text = f"version: 1\nmodel:\n  family: {family}\n  path: x\n  \nsteps: [{{op: disable}}]\n"
    line = (MODELINE + text).splitlines().index("  ")
    items = server.completion(_open(server, f"_model-{family}.yaml", text), line, 2)
    own = MODEL_OPTIONS[family]
    assert sorted(item["label"] for item in items) == sorted(
        {"revision", "variant", "trust_remote_code", "quantization"} | own
    )
    assert all(item["insertText"].startswith(item["label"] + ":") for item in items), items
