# Scriptorium: one image for the web tier (gunicorn) and the workers (run_worker).
#   docker build -t scriptorium .
#   docker compose up -d            (compose.yaml: web, worker, PostgreSQL, Redis, MinIO)
# Scripts run in a sandbox built from Linux namespaces: see docs/deploy.md for what the
# container must be allowed (the default Docker seccomp profile refuses it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    DATA_DIR=/data \
    STATIC_ROOT=/app/static \
    RUN_BASE_PYTHON=/usr/local/bin/python3.11 \
    PORT=8000

# bubblewrap: the sandbox's second backend; util-linux: setpriv/unshare the runner uses;
# tini: PID 1 that forwards signals and reaps the runs' leftovers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap util-linux tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 scriptorium \
    && useradd --system --uid 10001 --gid scriptorium --home-dir /app \
       --shell /usr/sbin/nologin scriptorium

WORKDIR /app
COPY requirements/base.txt requirements/base.txt
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir -r requirements/base.txt

COPY --chown=root:root . .
# Static files are collected into the image (whitenoise serves them). The values below
# exist only for this command: the production settings refuse to load without them.
RUN SECRET_KEY=collectstatic-only-not-a-secret-0123456789-0123456789-0123456789 \
    ALLOWED_HOSTS=build DEBUG=false DATA_DIR=/tmp/build-data \
    python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/build-data \
    && mkdir -p /data && chown scriptorium:scriptorium /data && chmod 0711 /data

USER scriptorium
VOLUME ["/data"]
EXPOSE 8000

# /health/ answers 200 only when the database, broker, storage and sandbox all work.
# X-Forwarded-Proto: the check is plain HTTP inside the container (no SSL redirect).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD python -c "import os,sys,urllib.request as u; r=u.Request('http://127.0.0.1:%s/health/' % os.environ.get('PORT','8000'), headers={'X-Forwarded-Proto':'https'}); sys.exit(0 if u.urlopen(r, timeout=8).status == 200 else 1)"

ENTRYPOINT ["tini", "--"]
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi:application"]
