"""Production smoke test: config.settings.production under gunicorn (the repo's
config/gunicorn.conf.py) against the machine's PostgreSQL (a fresh database, dropped
afterwards) and Redis, driven over HTTP like a client would: /health/, a JWT login, an
upload and a sync run, the SSE stream of that run, an artifact download, an API key.

Bounded: every step has a timeout and the whole test must finish within 60 s; gunicorn
is started in its own process group and killed at the end, whatever happened.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings
from psycopg import sql

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BUDGET_SECONDS = 60
PASSWORD = "smoke-test-password-7391"
HELLO = (
    b"def main(name: str = 'world') -> dict:\n"
    b"    print('hello', name)\n"
    b"    return {'greeting': f'hello {name}'}\n"
)
WRITER = b"from pathlib import Path\n\nPath('report.txt').write_text('smoke file\\n')\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin_connection():
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture
def smoke_database():
    """A new, empty PostgreSQL database (URL); dropped afterwards."""
    name = f"scriptorium_smoke_{os.getpid()}_{secrets.token_hex(4)}"
    db = settings.DATABASES["default"]
    with _admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    user = db.get("USER") or "postgres"
    auth = f"{user}:{db['PASSWORD']}" if db.get("PASSWORD") else user
    yield f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"
    with _admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def production_env(smoke_database):
    """The environment of a production process (nothing inherited from the tests)."""
    data_dir = Path(tempfile.mkdtemp(prefix="scriptorium-smoke-"))
    data_dir.chmod(0o711)
    unique = f"smoke-{os.getpid()}-{secrets.token_hex(3)}"
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(60),
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=smoke_database,
        REDIS_URL=settings.REDIS_URL,
        CACHE_KEY_PREFIX=unique,
        Q_CLUSTER_NAME=unique,
        DATA_DIR=str(data_dir),
        SITE_URL="http://127.0.0.1",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    yield env
    shutil.rmtree(data_dir, ignore_errors=True)


def _manage(env, *args, stdin: str | None = None, timeout: float = 40) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def test_production_settings_serve_under_gunicorn(production_env, tmp_path):
    started = time.monotonic()
    env = production_env
    _manage(env, "migrate", "--noinput")
    _manage(
        env,
        "create_user",
        "--username",
        "smoke",
        "--email",
        "smoke@example.com",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    gunicorn_env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "1",
        "WEB_THREADS": "4",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "config/gunicorn.conf.py",
                "config.wsgi:application",
            ],
            cwd=ROOT,
            env=gunicorn_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _smoke(base, process, log_path)
    except BaseException:
        print(log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        _stop(process)
    elapsed = time.monotonic() - started
    print(f"production smoke test: {elapsed:.1f} s")
    assert elapsed < BUDGET_SECONDS, elapsed


def _smoke(base: str, process: subprocess.Popen, log_path: Path) -> None:
    http = requests.Session()
    deadline = time.monotonic() + 20
    health = None
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn exited"
        try:
            health = http.get(f"{base}/health/", timeout=5)
            break
        except requests.ConnectionError:
            time.sleep(0.2)
    assert health is not None, "gunicorn did not answer within 20 s"
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "healthy", health.text
    assert health.json()["checks"]["database"]["vendor"] == "postgresql"
    assert health.json()["checks"]["broker"]["kind"] == "redis"

    token = http.post(
        f"{base}/api/v1/auth/token/",
        json={"username": "smoke", "password": PASSWORD},
        timeout=10,
    )
    assert token.status_code == 200, token.text
    http.headers["Authorization"] = f"Bearer {token.json()['access']}"

    for name, source in (("hello.py", HELLO), ("writer.py", WRITER)):
        uploaded = http.post(f"{base}/api/v1/scripts/", files={"file": (name, source)}, timeout=10)
        assert uploaded.status_code == 201, uploaded.text

    run = http.post(f"{base}/api/v1/run/hello.py", json={"data": {"name": "smoke"}}, timeout=30)
    assert run.status_code == 200, run.text
    body = run.json()
    assert body["success"] is True and body["result"] == {"greeting": "hello smoke"}, body

    events = []
    with http.get(
        f"{base}/api/v1/executions/{body['execution_id']}/events/", stream=True, timeout=10
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        for line in stream.iter_lines(decode_unicode=True):
            events.append(line)
            if line.startswith("data:") and '"succeeded"' in line:
                break
    text = "\n".join(events)
    assert "event: log" in text and "hello smoke" in text, text
    assert "event: status" in text, text

    written = http.post(f"{base}/api/v1/run/writer.py", json={}, timeout=30)
    assert written.status_code == 200, written.text
    run_id = written.json()["execution_id"]
    files = http.get(f"{base}/api/v1/executions/{run_id}/files/", timeout=10)
    assert files.status_code == 200, files.text
    listing = files.json()
    names = [f["name"] for f in (listing["results"] if "results" in listing else listing)]
    assert "report.txt" in names, listing
    download = http.get(f"{base}/api/v1/executions/{run_id}/files/report.txt", timeout=10)
    assert download.status_code == 200 and download.content == b"smoke file\n"

    made = http.post(f"{base}/api/v1/auth/api-keys/", json={"name": "smoke"}, timeout=10)
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    me = requests.get(
        f"{base}/api/v1/auth/me/", headers={"Authorization": f"Api-Key {key}"}, timeout=10
    )
    assert me.status_code == 200 and me.json()["username"] == "smoke", me.text

    # The access log names paths only: no token, no key, no query string.
    http.get(f"{base}/api/v1/auth/me/?secret=in-query", timeout=10)
    time.sleep(0.3)
    logged = log_path.read_text(errors="replace")
    assert "/api/v1/auth/me/" in logged
    assert key not in logged and token.json()["access"] not in logged
    assert "in-query" not in logged
    assert json.dumps(PASSWORD)[1:-1] not in logged
