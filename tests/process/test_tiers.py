"""The unit tier's one rule, held by tests/conftest.py: a session of unit tests alone imports
no deep-learning library. Run as pytest runs it, on a copy of the conftest and two unit
tests, in a pytest-xdist worker, as the default options run it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
PLAIN = "def test_plain() -> None:\n    assert 1 + 1 == 2\n"


def unit_session(root: Path, heavy: str) -> subprocess.CompletedProcess[str]:
    """`pytest tests/unit` on the conftest, HEAVY's test and a plain one, in one xdist worker."""
    (root / "tests" / "unit").mkdir(parents=True)
    shutil.copyfile(TESTS / "conftest.py", root / "tests" / "conftest.py")
    (root / "tests" / "unit" / "test_heavy.py").write_text(heavy)
    (root / "tests" / "unit" / "test_plain.py").write_text(PLAIN)
    (root / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "1", "tests/unit"],
        cwd=root,
        capture_output=True,
        text=True,
    )


def test_a_unit_test_that_imports_torch_fails_by_name(tmp_path: Path) -> None:
    heavy = (
        "def test_heavy() -> None:\n    import torch\n\n    assert torch.tensor(1).item() == 1\n"
    )
    done = unit_session(tmp_path, heavy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tests/unit/test_heavy.py::test_heavy imported torch; a unit test never does" in (
        done.stdout
    ), done.stdout
    assert "1 error" in done.stdout and "2 passed" in done.stdout, done.stdout


def test_a_unit_module_that_imports_torch_fails_the_session(tmp_path: Path) -> None:
    heavy = "import torch\n\n\ndef test_heavy() -> None:\n    assert torch.tensor(1).item() == 1\n"
    done = unit_session(tmp_path, heavy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "collecting tests/unit imported torch" in done.stdout, done.stdout
    assert "test_heavy.py" in done.stdout  # where torch was first imported
