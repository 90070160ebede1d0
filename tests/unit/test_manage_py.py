"""``./manage.py`` works as the README writes it, from a new shell with no virtualenv activated."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_manage_py_finds_the_venv_from_a_plain_shell():
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None or subprocess.run([python, "-c", "import django"], capture_output=True).returncode == 0:
        pytest.skip("needs a system python3 without Django")
    run = subprocess.run(
        ["./manage.py", "check"], cwd=ROOT, env={"PATH": "/usr/bin:/bin", "DEBUG": "1"}, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "System check identified no issues" in run.stdout
