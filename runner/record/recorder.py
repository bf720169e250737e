"""What a run records: the manifest, kept current after every step, and the step outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import __version__
from runner.backends import Completion, Picture
from runner.record import rundir
from runner.record.identity import sha256_bytes
from runner.spec.types import Adapter, Spec, resolved


@dataclass
class Recorder:
    """Owns one run directory; every write goes through it, whole or not at all."""

    run: Path
    spec: Spec
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, out: Path, spec: Spec) -> Recorder:
        from runner.record.environment import git_commit

        digest = sha256_bytes(spec.raw)
        rec = cls(rundir.create(out, spec.name, digest), spec)
        rec.manifest = {
            "schema_version": 1,
            "status": "running",
            "started": rundir.utc_now(),
            "ended": None,
            "runner": {"version": __version__, "git_commit": git_commit()},
            "spec": {
                "file": str(spec.file.resolve()),
                "sha256": digest,
                "name": spec.name,
                "base_dir": str(spec.base_dir),
            },
            "environment": {},
            "settings": {},
            "inputs": {"model": None, "adapters": {}},
            "steps": [],
            "error": None,
        }
        rundir.write_atomic(rec.run / "spec.yaml", spec.raw)
        rundir.write_atomic(rec.run / "resolved.json", rundir.to_json(resolved(spec)))
        rec.save()
        return rec

    @property
    def spec_sha256(self) -> str:
        return str(self.manifest["spec"]["sha256"])

    def save(self) -> None:
        rundir.write_atomic(self.run / rundir.MANIFEST, rundir.to_json(self.manifest))

    def step(self, entry: dict[str, Any]) -> None:
        self.manifest["steps"].append(entry)
        self.save()

    def finish(self, status: str, error: dict[str, Any] | None = None) -> None:
        self.manifest.update(status=status, ended=rundir.utc_now(), error=error)
        self.save()
        rundir.write_sums(self.run)

    def completions(
        self, folder: str, items: list[Completion], adapters: dict[str, float] | None
    ) -> list[dict[str, str]]:
        lines = [
            json.dumps(
                {
                    "prompt": c.prompt,
                    "text": c.text,
                    "token_ids": c.token_ids,
                    "seed": c.seed,
                    "adapters": adapters,
                },
                ensure_ascii=False,
                allow_nan=False,
            )
            + "\n"
            for c in items
        ]
        return [self._write(f"{folder}/completions.jsonl", "".join(lines).encode("utf-8"))]

    def pictures(
        self, folder: str, items: list[Picture], adapters: dict[str, float] | None
    ) -> list[dict[str, str]]:
        from runner.record.pnginfo import png_bytes

        return [
            self._write(
                f"{folder}/{k}.png",
                png_bytes(
                    picture,
                    adapters=adapters,
                    spec_sha256=self.spec_sha256,
                    runner_version=__version__,
                ),
            )
            for k, picture in enumerate(items)
        ]

    def model_identity(self, written: str, source: str, revision: str | None) -> None:
        from runner.record.identity import hub_snapshot, identify

        local = Path(source) if Path(source).exists() else hub_snapshot(source, revision)
        self.manifest["inputs"]["model"] = identify(written, local, revision)

    def input_identity(self, name: str, adapter: Adapter, local: Path | None) -> None:
        from runner.record.identity import identify

        if adapter.config is not None:
            entry = {
                "path": None,
                "config": {"type": adapter.config.type, **adapter.config.options},
            }
        else:
            entry = identify(adapter.path or "", local, adapter.revision)
        self.manifest["inputs"]["adapters"][name] = entry

    def _write(self, rel: str, data: bytes) -> dict[str, str]:
        rundir.write_atomic(self.run / rel, data)
        return {"path": rel, "sha256": sha256_bytes(data)}
