#!/usr/bin/env python3
"""Django's command-line entry point for the notification service.

Run as ``./manage.py ...`` from any shell: when the Python running it has no
Django (a new shell, the system Python), it runs itself again with the
project's ``.venv`` (made by ``scripts/setup``), so no activation is needed.
"""

import os
import sys
from pathlib import Path

VENV_PYTHON = Path(__file__).resolve().parent / ".venv" / "bin" / "python"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.base")
    try:
        from django.core.management import execute_from_command_line
    except ImportError:
        if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
            os.execv(VENV_PYTHON, [str(VENV_PYTHON), *sys.argv])  # noqa: S606 (our own interpreter, same argv)
        sys.exit("Django is not installed here: run scripts/setup (it makes .venv), then ./manage.py again.")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
