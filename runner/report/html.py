"""report.html: one self-contained page a browser opens offline from the run directory.

Inline CSS, no script, no font or image from elsewhere (a Content-Security-Policy says so
to the browser too); images by relative path, shown as thumbnails by CSS, never copied.
Everything that comes from the spec or the record is escaped: prompts and names are
hostile input. The page is a function of the run directory alone, so `runner report`
renders the same bytes the run wrote, also for runs made before report pages existed.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runner.errors import Refused, RunDirError
from runner.record import layout
from runner.record import manifest as m
from runner.record.files import write_atomic
from runner.record.trust import MANIFEST_LIMIT, read_run_file
from runner.report.markup import e, short
from runner.report.sections import step_section

_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
_CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1b1b;
background:#fafafa}
header,main,footer{max-width:1400px;margin:0 auto;padding:12px 24px}
h1{margin:8px 0 4px;font-size:24px}h2{font-size:18px;margin:0 0 8px}
h2 small,.muted{color:#666;font-weight:normal;font-size:13px}
.status{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600}
.succeeded{background:#dcf5dc;color:#185c18}.failed{background:#fbdcdc;color:#8a1212}
.interrupted,.running{background:#fdf0cf;color:#6b4d00}
.why{border-left:4px solid #c33;background:#fff;padding:6px 12px;white-space:pre-wrap}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dt{color:#666}dd{margin:0}
section.step{background:#fff;border:1px solid #e3e3e3;border-radius:6px;margin:14px 0;
padding:12px 16px}
section.step.failed,section.step.interrupted{border-color:#d99}
.scroll{overflow-x:auto}
table{border-collapse:collapse}th,td{border:1px solid #e3e3e3;padding:4px 8px;
vertical-align:top;text-align:left}
thead th{background:#f3f3f3}tbody th{background:#f7f7f7;white-space:nowrap;vertical-align:middle}
td.text{white-space:pre-wrap;min-width:12em;max-width:32em}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
mark{background:#ffe08a}.same{color:#777}.at{display:block;color:#8a5a00;font-size:12px}
.pass{background:#2e7d32;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
.noop{background:#c62828;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
.dist{display:block;color:#555;font-size:11px}details summary{font-size:11px;cursor:pointer}
img.thumb{width:160px;height:auto;display:block;background:#eee}
figure{display:inline-block;margin:0 12px 12px 0;vertical-align:top;max-width:160px}
figcaption{font-size:12px;color:#444;overflow-wrap:anywhere}
table.grid td{padding:2px}table.grid thead th{max-width:180px;overflow-wrap:break-word;
font-weight:normal}.clamp{display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:4;
line-clamp:4;overflow:hidden}
th{word-break:keep-all}table.grid thead th:first-child{white-space:nowrap;vertical-align:bottom}
table.grid td{text-align:center;vertical-align:middle}img.thumb{margin:0 auto}
.crisp img.thumb{image-rendering:pixelated}
"""


def render(run_dir: Path, manifest: m.Manifest, base: str = "") -> bytes:
    """The report page of RUN_DIR from its manifest and output files; BASE (see `base_for`)
    is where the run's files are seen from the page, for a page written elsewhere."""
    spec = _resolved(run_dir)
    name = manifest.spec.name
    body = [
        "<header>",
        f"<h1>{e(name)}</h1>",
        f"<p>{e(spec.get('description'))}</p>" if spec.get("description") else "",
        _status(manifest),
        _facts(manifest),
        _inputs(manifest),
        "</header>",
        "<main>",
        *(step_section(run_dir, step) for step in manifest.steps),
        "<p class=muted>No step finished.</p>" if not manifest.steps else "",
        "</main>",
        f"<footer class=muted>spec sha256 <code>{e(manifest.spec.sha256)}</code>; "
        f"made by runner {e(manifest.runner.get('version'))}. Every file is listed with its "
        "sha256 in SHA256SUMS (<code>runner verify</code> checks them).</footer>",
    ]
    return _page(f"{name} - runner report", "\n".join(part for part in body if part), base)


def page(run_dir: Path, manifest: m.Manifest) -> bytes:
    """The report page, or one that says why it could not be drawn: a run's own record
    matters more than its report page, so drawing it never fails a run."""
    try:
        return render(run_dir, manifest)
    except Exception as exc:  # noqa: BLE001
        return unavailable(manifest.spec.name, exc)


def unavailable(name: str, error: BaseException) -> bytes:
    """A page that says why the report could not be drawn; the run itself is unaffected."""
    text = f"{type(error).__name__}: {error}"
    body = (
        f"<header><h1>{e(name)}</h1><p class=why>The report page could not be drawn: "
        f"{e(text)}. The run's files are complete; <code>runner report</code> draws it "
        "again.</p></header>"
    )
    return _page(f"{name} - runner report", body)


def write(run_dir: Path, out: Path | None = None) -> Path:
    """Render RUN_DIR's report page again into OUT (default RUN_DIR/report.html)."""
    target = out or run_dir / layout.REPORT
    base = base_for(run_dir, target)
    write_atomic(target, render(run_dir, m.read(run_dir), base))
    return target


def base_for(run_dir: Path, page_file: Path) -> str:
    """The URL of RUN_DIR relative to PAGE_FILE's folder ('' when the page is in it), so a
    page written elsewhere still shows the run's images; refused where no relative path
    reaches the run (another drive), since an absolute file: URL breaks when either moves."""
    folder = page_file.absolute().parent
    try:
        rel = os.path.relpath(run_dir.absolute(), folder)
    except ValueError as exc:
        raise Refused(
            f"cannot write the report page to '{page_file}': its images in '{run_dir}' "
            f"cannot be reached by a relative path from there ({exc}); write it on the same "
            "drive as the run"
        ) from None
    if rel == os.curdir:
        return ""
    return quote(Path(rel).as_posix()) + "/"


def _page(title: str, body: str, base: str = "") -> bytes:
    # <base> makes every relative link and image of the page resolve from the run's folder.
    where = f'<base href="{e(base)}">\n' if base else ""
    page = (
        "<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n{where}'
        '<meta name=viewport content="width=device-width, initial-scale=1">\n'
        f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
        "</body>\n</html>\n"
    )
    return page.encode("utf-8")


def _resolved(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_run_file(run_dir, layout.RESOLVED, MANIFEST_LIMIT))
    except (RunDirError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _status(manifest: m.Manifest) -> str:
    status = manifest.status
    line = f"<p><span class='status {e(status)}'>{e(status)}</span></p>"
    if manifest.error is not None:
        line += _stopped(manifest.error, status)
    elif status == "running":
        line += "<p class=why>The run's process stopped before it recorded its end.</p>"
    return line


def _stopped(error: m.Failure, status: str) -> str:
    """Where and why the run stopped; an interrupt's message ('interrupted') is not repeated."""
    said = "" if error.message == status else f"\n{e(error.message)}"
    verb = "stopped by an interrupt" if status == "interrupted" else status
    return f"<p class=why>{e(verb)} at step {error.step}: {e(error.where)}{said}</p>"


def _duration(started: str, ended: str | None) -> str:
    if not ended:
        return ""
    try:
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
        seconds = (datetime.strptime(ended, fmt) - datetime.strptime(started, fmt)).total_seconds()
    except ValueError:
        return ""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.1f} s" if minutes else f"{rest:.2f} s"


def _facts(manifest: m.Manifest) -> str:
    settings, env = manifest.settings, manifest.environment
    facts: list[tuple[str, str]] = [
        ("started", e(manifest.started)),
        ("duration", e(_duration(manifest.started, manifest.ended)) or "-"),
    ]
    if settings is not None:
        device = settings.device + (f" ({settings.device_name})" if settings.device_name else "")
        facts += [
            ("device", e(device)),
            ("dtype", e(settings.dtype)),
            (
                "spec seed",
                e(settings.seed) + " <span class=muted>(for steps that set none; "
                "each step says which it used)</span>",
            ),
            ("threads", e(settings.threads)),
        ]
    libraries = env.get("libraries") if isinstance(env, dict) else None
    if isinstance(libraries, dict):
        shown = ", ".join(f"{k} {v}" for k, v in libraries.items() if v)
        facts.append(("libraries", e(shown)))
    if env.get("python"):
        where = f" on {env['platform']}" if env.get("platform") else ""
        facts.append(("python", e(f"{env['python']}{where}")))
    commit = manifest.runner.get("git_commit")
    facts.append(
        ("runner", e(manifest.runner.get("version")) + (f" ({e(short(commit))})" * bool(commit)))
    )
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return f"<dl class=facts>{rows}</dl>"


def _files(count: int) -> str:
    return f"{count} file" + "s" * (count != 1)


def _load(manifest: m.Manifest, name: str | None) -> str:
    """An adapter's load report (CONTRACT 9): its terminal line and its warnings."""
    record = manifest.adapters.get(name) if name is not None else None
    if record is None or record.load is None:
        return ""
    warnings = "".join(f"<p class=why>warning: {e(w)}</p>" for w in record.load.warnings)
    return f"<p class=load>{e(record.load.line(name or ''))}</p>{warnings}"


def _inputs(manifest: m.Manifest) -> str:
    entries = (
        [("model", manifest.inputs.model)]
        + [(f"adapter {name}", identity) for name, identity in manifest.inputs.adapters.items()]
        + [(f"clip model {path}", identity) for path, identity in manifest.inputs.clip.items()]
    )
    rows = []
    for what, identity in entries:
        if identity is None:
            continue
        source = identity.path if identity.path is not None else "built from a PEFT config"
        commit = (
            f"hub commit <code>{e(short(identity.revision))}</code>" if identity.revision else ""
        )
        weights = [f for f in identity.files if f.endswith(_WEIGHTS)]
        hashes = ", ".join(f"{e(f)} <code>{e(short(identity.files[f]))}</code>" for f in weights)
        listing = "".join(
            f"<li>{e(f)} <code>{e(short(h))}</code></li>" for f, h in identity.files.items()
        )
        files = (
            f"<details><summary>{_files(len(identity.files))}</summary><ul>{listing}</ul></details>"
            if identity.files
            else ""
        )
        config = f"<code>{e(json.dumps(identity.config))}</code>" if identity.config else ""
        config += _load(manifest, what.removeprefix("adapter ") if what != "model" else None)
        rows.append(
            f"<tr><th>{e(what)}</th><td>{e(source)}</td><td>{commit}</td>"
            f"<td>{hashes}{config}{files}</td></tr>"
        )
    if not rows:
        return ""
    head = "<tr><th></th><th>path</th><th>revision</th><th>sha256 (short)</th></tr>"
    return (
        f"<div class=scroll><table class=inputs><thead>{head}</thead>{''.join(rows)}</table></div>"
    )
