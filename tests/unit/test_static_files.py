"""The production admin has its CSS: the web app serves collected static files with DEBUG off."""

import subprocess
import sys

from django.conf import settings


def test_admin_css_is_served_with_debug_off_after_collectstatic(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "0", "STATIC_ROOT": str(tmp_path / "static")}
    collect = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"]
    run = subprocess.run(collect, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    code = (
        "from django.test import Client; from django.templatetags.static import static; "
        "url = static('admin/css/base.css'); r = Client().get(url); "
        "print(url, r.status_code, r.headers['Content-Type'], r.headers.get('Cache-Control'))"
    )
    run = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=settings.BASE_DIR,
        env={**env, "ALLOWED_HOSTS": "testserver"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    url, status, content_type, cache = run.stdout.split(maxsplit=3)
    assert url.startswith("/static/admin/css/base.") and url.endswith(".css") and url != "/static/admin/css/base.css"
    assert (status, content_type) == ("200", "text/css;")
    assert "max-age" in cache  # hashed names are cached for good
