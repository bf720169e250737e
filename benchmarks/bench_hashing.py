"""How much the hash cache saves: identify() on 1 GB of weights, cold cache then warm.

    python benchmarks/bench_hashing.py [--mb-per-file 256] [--files 4]

"Cold" means an empty hash cache (a fresh XDG_CACHE_HOME), not a cold page cache:
the files were just written, so the first run measures sha256, not the disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

CHUNK = 1 << 20
OLD_NS = 1_600_000_000 * 10**9


def make_model(folder: Path, files: int, mb_per_file: int) -> int:
    """Write `files` random .safetensors-named files; returns the total bytes."""
    folder.mkdir(parents=True)
    for i in range(files):
        path = folder / f"model-{i + 1:05d}-of-{files:05d}.safetensors"
        with open(path, "wb") as f:
            for _ in range(mb_per_file):
                f.write(os.urandom(CHUNK))
        # A downloaded model is older than the cache's "just written" window.
        os.utime(path, ns=(OLD_NS, OLD_NS))
    (folder / "config.json").write_text("{}")
    os.utime(folder / "config.json", ns=(OLD_NS, OLD_NS))
    return files * mb_per_file * CHUNK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--mb-per-file", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-hashing-"))
    try:
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        from runner.record import identity

        size = make_model(work / "model", args.files, args.mb_per_file)
        # The cache keeps no hash of a file changed within its racy window (ctime included,
        # which utime cannot set back): a downloaded model is older than that.
        time.sleep(identity.RACY_NS / 1e9 + 0.1)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            ident = identity.identify("bench", work / "model", None)
            times.append(time.perf_counter() - start)
        identity._caches.clear()  # a new process: the cache is read from its file
        start = time.perf_counter()
        assert identity.identify("bench", work / "model", None) == ident
        times.append(time.perf_counter() - start)
        cold, warm, fresh = times
        print(f"model: {len(ident['files'])} files, {size / 1e9:.2f} GB")
        print(f"cold cache:              {cold:8.3f} s  ({size / cold / 1e6:.0f} MB/s)")
        print(f"warm cache:              {warm * 1e3:8.3f} ms")
        print(f"warm cache, new process: {fresh * 1e3:8.3f} ms")
        print(f"speed-up: {cold / warm:.0f}x (in process), {cold / fresh:.0f}x (new process)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
