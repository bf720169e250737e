"""What a model or adapter was, byte for byte: its path, hub commit and file hashes.

Hashing a multi-GB model on every run is too slow, so sha256s are cached in
$XDG_CACHE_HOME/runner/hashes.json by (resolved path, size, mtime_ns).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from runner import cache_home
from runner.record.files import sha256_file, write_atomic
from runner.record.manifest import Identity

# Weights, configs and tokenizer files; .py because remote code changes results too.
SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".json", ".txt", ".model"}
    | {".tiktoken", ".py"}
)
_COMMIT = re.compile(r"[0-9a-f]{40}")
# A file modified this close to when it was hashed may change again within the same
# mtime tick, so its hash is not cached (git's "racy clean" problem).
RACY_NS = 2_000_000_000


class HashCache:
    """sha256 by (resolved path, size, mtime_ns), kept in one JSON file."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}  # absent or corrupt: start afresh
        if isinstance(loaded, dict) and isinstance(loaded.get("files"), dict):
            self.entries = loaded["files"]

    def sha256(self, path: Path) -> str:
        """The file's sha256, from the cache when its size and mtime still match."""
        real = os.path.realpath(path)
        st = os.stat(real)
        entry = self.entries.get(real)
        if (
            isinstance(entry, dict)
            and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns
            and isinstance(entry.get("sha256"), str)
        ):
            return str(entry["sha256"])
        started = time.time_ns()
        digest = sha256_file(Path(real))
        after = os.stat(real)
        stable = (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
        if stable and st.st_mtime_ns < started - RACY_NS:
            self.entries[real] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            self.dirty = True
        return digest

    def save(self) -> None:
        """Write the cache atomically, dropping files that no longer exist; errors are ignored."""
        if not self.dirty:
            return
        files = {p: e for p, e in sorted(self.entries.items()) if os.path.exists(p)}
        try:
            write_atomic(self.file, json.dumps({"version": 1, "files": files}).encode("utf-8"))
            self.dirty = False
        except OSError:
            pass  # a cache that cannot be written only costs time


def cache_file() -> Path:
    return cache_home() / "hashes.json"


_caches: dict[Path, HashCache] = {}


def hash_cache() -> HashCache:
    """The process-wide cache for the current cache file, loaded once."""
    file = cache_file()
    if file not in _caches:
        _caches[file] = HashCache(file)
    return _caches[file]


def is_tracked(path: Path) -> bool:
    """A weight, config or tokenizer file."""
    return path.suffix.lower() in SUFFIXES or path.name.lower().startswith("tokenizer")


def tracked_files(local: Path) -> dict[str, Path]:
    """relpath -> path of every tracked file under a folder, following symlinks; or the file."""
    if local.is_file():
        return {local.name: local}
    found: dict[str, Path] = {}
    seen: set[str] = set()
    for top, dirs, files in os.walk(local, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a symlink loop
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .git, .cache
        for name in files:
            path = Path(top, name)
            if is_tracked(path) and path.is_file():
                found[path.relative_to(local).as_posix()] = path
    return dict(sorted(found.items()))


def snapshot_commit(local: Path) -> str | None:
    """The commit of a path inside a hub cache snapshot (`models--o--n/snapshots/<sha>/...`)."""
    parts = Path(os.path.abspath(local)).parts
    for i in range(1, len(parts) - 1):
        if parts[i] == "snapshots" and _COMMIT.fullmatch(parts[i + 1]) and "--" in parts[i - 1]:
            return parts[i + 1]
    return None


def hub_cache_dir() -> Path:
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        home = os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface")
        return Path(os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub"))


def hub_snapshot(repo_id: str, revision: str | None, cache_dir: Path | None = None) -> Path | None:
    """The cached snapshot folder of a hub model id at a revision, without network; else None."""
    # The hub cache layout is what snapshot_download(local_files_only=True) reads; reading it
    # directly cannot reach the network whatever HF_HUB_OFFLINE says.
    if not repo_id or repo_id.count("/") > 1 or repo_id.startswith(("/", ".")) or ".." in repo_id:
        return None
    repo = (cache_dir or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))
    commit = revision if revision and _COMMIT.fullmatch(revision) else None
    if commit is None:
        try:
            commit = (repo / "refs" / (revision or "main")).read_text(encoding="utf-8").strip()
        except OSError:
            return None
    snapshot = repo / "snapshots" / commit
    return snapshot if _COMMIT.fullmatch(commit) and snapshot.is_dir() else None


def identify(written: str, local: Path | None, revision: str | None) -> Identity:
    """The path, resolved folder, hub commit and file hashes of a model or adapter.

    `local` is the file or folder that was loaded; when None and `written` is a hub id,
    its cached snapshot is looked up. `revision` is what the spec asked for; the
    recorded revision is the commit it resolved to, or None when unknown.
    """
    if local is None and not written.startswith("builtin:"):
        local = hub_snapshot(written, revision)
    commit = snapshot_commit(local) if local is not None else None
    if commit is None and revision and _COMMIT.fullmatch(revision):
        commit = revision
    files: dict[str, str] = {}
    if local is not None:
        cache = hash_cache()
        try:
            files = {rel: cache.sha256(path) for rel, path in tracked_files(local).items()}
        finally:
            cache.save()
    resolved = os.path.abspath(local) if local is not None else None
    return Identity(path=written, resolved=resolved, revision=commit, files=files)
