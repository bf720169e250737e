"""Run directory checks and run comparison, on run directories written by hand."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from runner.audit import checksums
from runner.audit import diff as audit
from runner.audit import outputs as compare
from runner.errors import RunDirError
from runner.record import environment, identity
from runner.record.manifest import parse

OLD_NS = 1_600_000_000 * 10**9  # 2020: old enough that the hash cache trusts the mtime


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png(path: Path, pixels: np.ndarray, text: str = "") -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", text)
    Image.fromarray(pixels.astype(np.uint8)).save(path, pnginfo=info)


def write_sums(run: Path) -> None:
    rels = sorted(
        p.relative_to(run).as_posix()
        for p in run.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    )
    lines = "".join(f"{sha((run / r).read_bytes())}  {r}\n" for r in rels)
    (run / "SHA256SUMS").write_text(lines)


def manifest(seed: int = 0, spec_sha: str = "a" * 64, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema_version": 1,
        "status": "succeeded",
        "started": "2025-01-01T00:00:00Z",
        "ended": "2025-01-01T00:00:05Z",
        "runner": {"version": "0.1.0", "git_commit": None},
        "spec": {"file": "/x/spec.yaml", "sha256": spec_sha, "name": "t", "base_dir": "/x"},
        "environment": {
            "python": "3.11.7",
            "platform": "Linux",
            "cpu": "AMD EPYC",
            "torch_threads": 1,
            "gpu": None,
            "libraries": {"torch": "2.13.0", "peft": "0.21.2"},
            "env": {"OMP_NUM_THREADS": None},
        },
        "settings": {
            "device": "cpu",
            "device_name": "cpu",
            "dtype": "float32",
            "seed": seed,
            "threads": 1,
            "deterministic": {"use_deterministic_algorithms": True, "threads": 1},
        },
        "inputs": {
            "model": {"path": "builtin:m", "resolved": "/c/m", "revision": None, "files": {}},
            "adapters": {
                "style": {
                    "path": "builtin:s",
                    "resolved": "/c/s",
                    "revision": None,
                    "files": {"adapter_model.safetensors": "ab" * 32},
                }
            },
        },
        "steps": [],
        "error": None,
    }
    base.update(overrides)
    return base


def make_run(
    root: Path,
    name: str,
    *,
    seed: int = 0,
    tokens: list[list[int]] | None = None,
    images: list[np.ndarray] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """A run dir: one text step with `tokens`, one image step with `images`."""
    run = root / name
    text_dir, image_dir = run / "outputs/01-text", run / "outputs/02-img"
    text_dir.mkdir(parents=True)
    image_dir.mkdir(parents=True)
    spec = f"version: 1\nseed: {seed}\nmodel: {{family: transformers, path: builtin:m}}\n"
    (run / "spec.yaml").write_text(spec)
    (run / "resolved.json").write_text(json.dumps({"seed": seed}))
    tokens = [[1, 2, 3], [4, 5, 6]] if tokens is None else tokens
    rows = [
        {"prompt": f"p{i}", "text": " ".join(map(str, t)), "token_ids": t, "seed": seed}
        for i, t in enumerate(tokens)
    ]
    (text_dir / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    images = [np.zeros((4, 4, 3))] if images is None else images
    for k, pixels in enumerate(images):
        png(image_dir / f"{k}.png", pixels, text=f"seed {seed}")
    steps: list[dict[str, Any]] = [
        {"index": i, "op": "generate", "id": step_id, "line": 4 + i, "status": "ok"}
        | {"seconds": 0.1, "arguments": {"seed": seed}, "outputs": []}
        for i, step_id in ((1, "text"), (2, "img"))
    ]
    for step, folder in zip(steps, (text_dir, image_dir), strict=True):
        for f in sorted(folder.iterdir()):
            rel = f.relative_to(run).as_posix()
            step["outputs"].append({"path": rel, "sha256": sha(f.read_bytes())})
    body = manifest(seed=seed, spec_sha=sha(spec.encode()), steps=steps)
    body.update(meta or {})
    (run / "manifest.json").write_text(json.dumps(body, indent=2))
    write_sums(run)
    return run


# verify


def test_verify_passes_an_intact_run(tmp_path: Path) -> None:
    report = checksums.verify(make_run(tmp_path, "r"))
    assert report.ok and report.checked == 5
    assert (report.missing, report.changed, report.extra) == ([], [], [])


def test_verify_catches_a_flipped_byte(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r")
    target = run / "outputs/02-img/0.png"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    report = checksums.verify(run)
    assert not report.ok and report.changed == ["outputs/02-img/0.png"]
    assert "changed: outputs/02-img/0.png" in checksums.format_verify(run, report)


def test_verify_catches_a_deleted_and_an_added_file(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r")
    (run / "resolved.json").unlink()
    (run / "outputs/02-img/1.png").write_bytes(b"sneaked in")
    report = checksums.verify(run)
    assert not report.ok
    assert report.missing == ["resolved.json"]
    assert report.extra == ["outputs/02-img/1.png"]


def test_verify_refuses_what_is_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="SHA256SUMS"):
        checksums.verify(tmp_path)
    with pytest.raises(RunDirError, match="not a directory"):
        checksums.verify(tmp_path / "nowhere")
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  ../outside\n")
    with pytest.raises(RunDirError, match="outside the run directory"):
        checksums.verify(tmp_path)


# identity


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setattr(identity, "_caches", {})
    return home


def model_dir(root: Path) -> Path:
    folder = root / "model"
    for sub in ("sub", ".git", ".cache/huggingface"):
        (folder / sub).mkdir(parents=True)
    files = {
        "model.safetensors": b"weights" * 1000,
        "config.json": b"{}",
        "sub/tokenizer.json": b'{"v": 1}',
        "chat_template.jinja": b"{{ messages }}",
        "modeling_tiny.py": b"# remote code",
        "README.md": b"a model card",
        ".gitattributes": b"not hashed",
        ".git/config": b"not hashed",
        ".cache/huggingface/model.metadata": b"not hashed",
    }
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
        os.utime(folder / rel, ns=(OLD_NS, OLD_NS))
    return folder


def test_identify_hashes_every_file_a_library_may_read(tmp_path: Path, cache_home: Path) -> None:
    folder = model_dir(tmp_path)
    ident = identity.identify("./model", folder, None)
    assert ident.path == "./model" and ident.resolved == str(folder)
    assert ident.revision is None
    assert ident.files == {
        "README.md": sha(b"a model card"),
        "chat_template.jinja": sha(b"{{ messages }}"),
        "config.json": sha(b"{}"),
        "model.safetensors": sha(b"weights" * 1000),
        "modeling_tiny.py": sha(b"# remote code"),
        "sub/tokenizer.json": sha(b'{"v": 1}'),
    }
    single = identity.identify("w.safetensors", folder / "model.safetensors", None)
    assert single.files == {"model.safetensors": sha(b"weights" * 1000)}


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model folders last changed (mtime and ctime) before the hash cache's racy window."""
    root = tmp_path_factory.mktemp("settled")
    for name in ("used", "in-place", "renamed-over", "corrupt"):
        model_dir(root / name)
    time.sleep(identity.RACY_NS / 1e9 + 0.2)
    return root


def cached(cache_home: Path) -> dict[str, Any]:
    files: dict[str, Any] = json.loads((cache_home / "runner/hashes.json").read_text())["files"]
    return files


def test_hash_cache_answers_for_a_file_that_did_not_change(settled: Path, cache_home: Path) -> None:
    folder = settled / "used" / "model"
    weights = str((folder / "model.safetensors").resolve())
    first = identity.identify("m", folder, None).files["model.safetensors"]
    assert cached(cache_home)[weights]["sha256"] == first
    # A new process reads the cache file: plant a marker there to see that it answers.
    stored = json.loads((cache_home / "runner/hashes.json").read_text())
    stored["files"][weights]["sha256"] = "from the cache"
    (cache_home / "runner/hashes.json").write_text(json.dumps(stored))
    identity._caches.clear()
    assert identity.identify("m", folder, None).files["model.safetensors"] == "from the cache"


@pytest.mark.parametrize("how", ["in-place", "renamed-over"])
def test_a_rewritten_file_never_reuses_a_hash(settled: Path, cache_home: Path, how: str) -> None:
    folder = settled / how / "model"
    weights = folder / "model.safetensors"
    assert identity.identify("m", folder, None).files["model.safetensors"] == sha(b"weights" * 1000)
    assert str(weights.resolve()) in cached(cache_home)  # so the cache is what is tested
    before = os.stat(weights)
    swapped = b"WEIGHTS" * 1000  # the same size
    if how == "in-place":
        weights.write_bytes(swapped)
    else:
        (folder / "new").write_bytes(swapped)
        os.replace(folder / "new", weights)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # the mtime set back
    after = os.stat(weights)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert identity.identify("m", folder, None).files["model.safetensors"] == sha(swapped)
    identity._caches.clear()  # a new process, reading the cache file
    assert identity.identify("m", folder, None).files["model.safetensors"] == sha(swapped)


def test_hash_cache_skips_files_changed_just_now(tmp_path: Path, cache_home: Path) -> None:
    fresh = tmp_path / "fresh.safetensors"
    fresh.write_bytes(b"x")
    os.utime(fresh, ns=(OLD_NS, OLD_NS))  # an old mtime; the ctime says it changed just now
    assert identity.identify("f", fresh, None).files == {"fresh.safetensors": sha(b"x")}
    assert not (cache_home / "runner/hashes.json").exists()


def test_hash_cache_survives_a_corrupt_file(settled: Path, cache_home: Path) -> None:
    cache = cache_home / "runner/hashes.json"
    cache.parent.mkdir(parents=True)
    cache.write_text('{"files": {"broken')
    folder = settled / "corrupt" / "model"
    files = identity.identify("m", folder, None).files
    assert files["config.json"] == sha(b"{}")
    assert str((folder / "config.json").resolve()) in cached(cache_home)


def hub_cache(root: Path, commit: str) -> Path:
    repo = root / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs/deadbeef").write_bytes(b"blob bytes")
    (snapshot / "model.safetensors").symlink_to("../../blobs/deadbeef")
    return snapshot


def test_hub_commit_comes_from_the_snapshot_path(tmp_path: Path, cache_home: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = hub_cache(tmp_path / "hub", commit)
    assert identity.snapshot_commit(snapshot / "model.safetensors") == commit
    assert identity.snapshot_commit(tmp_path / "snapshots" / "main") is None
    assert identity.hub_snapshot("org/name", None, tmp_path / "hub") == snapshot
    assert identity.hub_snapshot("org/name", commit, tmp_path / "hub") == snapshot
    assert identity.hub_snapshot("org/other", None, tmp_path / "hub") is None
    ident = identity.identify("org/name", snapshot, "main")
    assert ident.revision == commit
    assert ident.files == {"model.safetensors": sha(b"blob bytes")}


def test_identify_finds_a_hub_id_in_the_cache(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    commit = "f" * 40
    snapshot = hub_cache(tmp_path / "hub", commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ident = identity.identify("org/name", None, None)
    assert ident.resolved == str(snapshot) and ident.revision == commit
    assert identity.identify("builtin:x", None, None).files == {}


# outputs


def test_compare_outputs_finds_the_first_differing_token(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", tokens=[[1, 2, 3], [4, 5, 6, 7]])
    b = make_run(tmp_path, "b", tokens=[[1, 2, 3], [4, 5, 9, 7]])
    text = compare.compare_outputs(a, b)[0]
    assert (text.kind, text.status, text.prompt, text.token) == ("text", "differs", 1, 2)
    c = make_run(tmp_path, "c", tokens=[[1, 2, 3], [4, 5]])
    assert compare.compare_outputs(a, c)[0].token == 2  # a prefix differs where it ends
    assert compare.compare_outputs(a, a)[0].status == "same"


def test_compare_outputs_measures_image_differences(tmp_path: Path) -> None:
    base = np.full((4, 4, 3), 100)
    moved = base.copy()
    moved[1, 2, 0] = 110
    a = make_run(tmp_path, "a", images=[base, base])
    b = make_run(tmp_path, "b", seed=1, images=[base, moved])  # metadata differs in both
    first, second = compare.compare_outputs(a, b)[1:]
    assert first.psnr == math.inf and first.max_diff == 0  # the same pixels, other text
    assert first.status == "differs" and first.detail.startswith("PNG text ")
    assert second.status == "differs" and second.max_diff == 10
    assert second.psnr == pytest.approx(10 * math.log10(255**2 / (100 / 48)))
    c = make_run(tmp_path, "c", images=[np.zeros((8, 4, 3)), base])
    assert "size 4x4 -> 4x8" in compare.compare_outputs(a, c)[1].detail


def test_compare_outputs_reports_missing_outputs(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", images=[np.zeros((2, 2, 3)), np.zeros((2, 2, 3))])
    b = make_run(tmp_path, "b", images=[np.zeros((2, 2, 3))])
    statuses = {d.path: d.status for d in compare.compare_outputs(a, b)}
    assert statuses["outputs/02-img/1.png"] == "only_a"
    assert {d.path: d.status for d in compare.compare_outputs(b, a)}["outputs/02-img/1.png"] == (
        "only_b"
    )


# causes and diff


def test_likely_causes_names_versions_threads_and_inputs() -> None:
    a = manifest()
    b = manifest()
    b["environment"]["libraries"]["torch"] = "2.14.1"
    b["settings"]["threads"] = 2
    b["settings"]["deterministic"]["threads"] = 2
    b["environment"]["torch_threads"] = 2
    b["inputs"]["adapters"]["style"]["files"]["adapter_model.safetensors"] = "cd" * 32
    causes = audit.likely_causes(parse(a), parse(b))
    assert "torch 2.13.0 -> 2.14.1" in causes
    assert causes.count("threads 1 -> 2") == 1
    assert any(
        c.startswith("adapter 'style' file adapter_model.safetensors: sha256 abab") for c in causes
    )
    assert audit.likely_causes(parse(a), parse(manifest())) == []


def test_diff_of_runs_that_differ_only_by_seed_names_the_seed(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", seed=0)
    b = make_run(tmp_path, "b", seed=1)
    report = audit.diff(a, b)
    assert not report.same
    # the same pixels and tokens; the images' PNG text records the other seed
    assert [d.status for d in report.outputs] == ["same", "differs"]
    assert "-seed: 0" in report.spec and "+seed: 1" in report.spec
    assert "seed 0 -> 1" in report.settings
    assert report.environment == [] and report.inputs == []
    assert "seed 0 -> 1" in report.format_text()
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["same"] is False and data["outputs"][1]["psnr"] == "inf"
    assert audit.diff(a, a).same


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"steps": [1, 2]}, "manifest.steps[0] is 1, expected a mapping"),
        ({"settings": "cpu"}, 'manifest.settings is "cpu"'),
        ({"schema_version": 7}, "schema_version is 7, expected 1"),
        ({"inputs": {"model": []}}, "manifest.inputs.model is []"),
        ({"steps": [{"index": 1}]}, "manifest.steps[0] has no 'op'"),
        (
            {"inputs": {"adapters": {"a": {"path": None, "files": {"x": 3}}}}},
            "adapters.a.files.x is 3",
        ),
    ],
)
def test_a_malformed_manifest_is_one_line_in_diff_and_verify(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", meta=change)
    with pytest.raises(RunDirError, match="not a runner manifest") as caught:
        audit.diff(a, b)
    assert "\n" not in str(caught.value) and str(b / "manifest.json") in str(caught.value)
    assert named in str(caught.value)


def test_diff_refuses_a_dir_without_manifest(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a")
    (tmp_path / "b").mkdir()
    with pytest.raises(RunDirError, match="manifest"):
        audit.diff(a, tmp_path / "b")


# environment


def test_git_commit_reads_head(tmp_path: Path) -> None:
    git = tmp_path / ".git"
    git.mkdir()
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text(f"# pack-refs\n{'c' * 40} refs/heads/main\n")
    assert environment.read_head(git) == "c" * 40
    root = Path(environment.__file__).resolve().parent.parent
    if (root / ".git").exists():
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
        )
        assert environment.git_commit() == head.stdout.strip()


def test_the_run_writes_only_standard_json() -> None:
    from runner.record import manifest

    assert json.loads(manifest.to_json({"weight": 0.5})) == {"weight": 0.5}
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="not JSON compliant"):
            manifest.to_json({"weight": bad})


def _adapter_step(index: int, op: str, name: str, weights: str) -> dict[str, Any]:
    key = "name" if op == "merge" else "adapter"
    folder = f"outputs/{index:02d}-{op}"
    return {
        "index": index,
        "op": op,
        "line": index,
        "status": "ok",
        "seconds": 0.1,
        "arguments": {key: name},
        "outputs": [
            {"path": f"{folder}/adapter_config.json", "sha256": "0" * 64},
            {"path": f"{folder}/adapter_model.safetensors", "sha256": weights},
        ],
    }


def test_diff_names_each_adapter_whose_weights_changed() -> None:
    steps = [
        _adapter_step(1, "merge", "blend", "1" * 64),
        _adapter_step(2, "train", "fresh", "2" * 64),
        _adapter_step(3, "save", "fresh", "3" * 64),
        _adapter_step(4, "save", "blend", "4" * 64),
    ]
    other = json.loads(json.dumps(steps))
    other[1]["outputs"][1]["sha256"] = "5" * 64  # trained otherwise, so saved otherwise too
    other[2]["outputs"][1]["sha256"] = "6" * 64
    a, b = parse(manifest(steps=steps)), parse(manifest(steps=other))
    assert audit.adapter_changes(a, b) == [
        f"adapter 'fresh' changed (step 2 train): sha256 {'2' * 12}… -> {'5' * 12}…"
    ]
    other[0]["outputs"][1]["sha256"] = "7" * 64
    lines = audit.adapter_changes(a, parse(manifest(steps=other)))
    assert [line.split(" changed")[0] for line in lines] == ["adapter 'blend'", "adapter 'fresh'"]
    assert audit.adapter_changes(a, parse(manifest(steps=steps))) == []


def test_diff_names_a_clip_model_whose_files_changed() -> None:
    def clip(sha: str) -> dict[str, Any]:
        return {"path": "builtin:tiny-clip", "resolved": "/c/clip", "revision": None,
                "files": {"model.safetensors": sha}}  # fmt: skip

    a = parse(
        manifest(
            inputs={"model": None, "adapters": {}, "clip": {"builtin:tiny-clip": clip("1" * 64)}}
        )
    )
    b = parse(
        manifest(
            inputs={"model": None, "adapters": {}, "clip": {"builtin:tiny-clip": clip("2" * 64)}}
        )
    )
    assert audit.input_changes(a, b) == [
        f"clip model 'builtin:tiny-clip' file model.safetensors: sha256 {'1' * 12}… -> {'2' * 12}…"
    ]
    assert audit.input_changes(a, a) == []
