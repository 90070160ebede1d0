import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.base")
application = get_wsgi_application()

# The web app does not start on development secrets outside DEBUG (see zerver/checks.py).
from zerver.checks import describe, production_errors  # noqa: E402 (needs the app registry loaded above)

if _errors := production_errors():
    raise ImproperlyConfigured(describe(_errors))
