# The one image for the web app, the migration job and every queue worker
# (docker-compose.yml runs one container per worker and shard).

FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements/base.txt /tmp/requirements.txt
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim
# The MariaDB client library that mysqlclient was built against; no compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /app --shell /usr/sbin/nologin notifications
COPY --from=build /venv /venv
WORKDIR /app
COPY . /app
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=settings.base
# The admin's CSS and JS, served by the web app itself (WhiteNoise) with DEBUG off.
RUN DEBUG=0 python manage.py collectstatic --noinput -v 0
USER notifications
# A worker finishes its batch on SIGTERM, acknowledges it and exits 0. The
# exec form keeps Python the process that receives it.
STOPSIGNAL SIGTERM
CMD ["python", "manage.py", "process_queue", "--list"]
