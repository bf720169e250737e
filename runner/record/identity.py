"""What a model or adapter was, byte for byte: its path, hub commit and file hashes.

Every file of the folder counts (weights, configs, tokenizers, chat templates, remote
code, model cards), except hidden ones such as .git and .cache, which no library reads.
Hashing a multi-GB model on every run is too slow, so sha256s are cached in
$XDG_CACHE_HOME/runner/hashes.json, under what any rewrite of a file changes: its device,
inode, size, mtime and ctime (as git and DVC do). A file swapped for another of the same
size, its mtime set back, still gets a new ctime, which no program can set back.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from runner.meta import cache_home
from runner.record.files import sha256_file, write_atomic
from runner.record.manifest import Identity
from runner.sources.folders import inside

CACHE_VERSION = 2  # entries of other versions are not trusted
_COMMIT = re.compile(r"[0-9a-f]{40}")
# A file changed this close to when it was hashed may change again within the same
# timestamp tick, leaving its stat as it was, so its hash is not cached (git's "racy clean").
RACY_NS = 2_000_000_000


def _stamp(st: os.stat_result) -> dict[str, int]:
    """What changes whenever a file's bytes may have: the cache's key besides the path."""
    return {
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


class HashCache:
    """sha256 by resolved path and stamp (device, inode, size, mtime, ctime), in one JSON file."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}  # absent or corrupt: start afresh
        if (
            isinstance(loaded, dict)
            and loaded.get("version") == CACHE_VERSION
            and isinstance(loaded.get("files"), dict)
        ):
            self.entries = loaded["files"]

    def sha256(self, path: Path) -> str:
        """The file's sha256, from the cache when its stamp is still the one it was hashed at."""
        real = os.path.realpath(path)
        st = os.stat(real)
        stamp = _stamp(st)
        entry = self.entries.get(real)
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and {k: entry.get(k) for k in stamp} == stamp
        ):
            return str(entry["sha256"])
        started = time.time_ns()
        digest = sha256_file(Path(real))
        stable = _stamp(os.stat(real)) == stamp
        if stable and max(st.st_mtime_ns, st.st_ctime_ns) < started - RACY_NS:
            self.entries[real] = {**stamp, "sha256": digest}
            self.dirty = True
        return digest

    def save(self) -> None:
        """Write the cache atomically, dropping files that no longer exist; errors are ignored."""
        if not self.dirty:
            return
        files = {p: e for p, e in sorted(self.entries.items()) if os.path.exists(p)}
        try:
            data = {"version": CACHE_VERSION, "files": files}
            write_atomic(self.file, json.dumps(data, allow_nan=False).encode("utf-8"))
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


def tracked_files(local: Path) -> dict[str, Path]:
    """relpath -> path of every file a library may read from a model or adapter: every
    regular file under the folder, except hidden files and folders; or the file itself.

    A symlink counts only while it stays inside the folder, or inside the hub cache's
    `blobs/` where snapshots link (trust.inside): `lora/etc -> /etc` records nothing of /etc.
    """
    if local.is_file():
        return {local.name: local}
    found: dict[str, Path] = {}
    seen: set[str] = set()
    for top, dirs, files in os.walk(local, followlinks=True):
        real = os.path.realpath(top)
        if real in seen or not inside(local, Path(top)):  # a symlink loop, or a way out
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and inside(local, Path(top, d))
        )  # .git, .cache
        for name in files:
            path = Path(top, name)
            if not name.startswith(".") and inside(local, path) and path.is_file():
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


def identify(
    written: str, local: Path | None, revision: str | None, subfolder: str | None = None
) -> Identity:
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
    return Identity(
        path=written, resolved=resolved, revision=commit, files=files, subfolder=subfolder
    )
