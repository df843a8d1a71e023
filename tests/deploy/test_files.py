"""The deployment files say what docs/deploy.md promises (Docker cannot run here)."""

import runpy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_is_slim_non_root_with_sandbox_tools_and_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert lines[[i for i, line in enumerate(lines) if line.startswith("FROM")][0]] == (
        "FROM python:3.11-slim"
    )
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "bubblewrap" in text and "util-linux" in text
    assert "HEALTHCHECK" in text and "/health/" in text
    assert "collectstatic" in text
    assert "config/gunicorn.conf.py" in text
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_compose_runs_web_worker_and_services_from_env():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"web", "worker", "db", "redis", "minio"} <= set(services)
    assert "gunicorn -c config/gunicorn.conf.py" in " ".join(services["web"]["command"])
    assert services["worker"]["command"] == ["python", "manage.py", "run_worker"]
    for name in ("web", "worker"):
        assert services[name]["env_file"] == ".env"
        assert services[name]["environment"]["STORAGE_BACKEND"] == "s3"
        assert "seccomp=unconfined" in services[name]["security_opt"]


def test_gunicorn_settings_follow_the_environment(monkeypatch):
    monkeypatch.setenv("SYNC_RUN_WAIT", "100")
    monkeypatch.setenv("WEB_WORKERS", "3")
    monkeypatch.setenv("WEB_THREADS", "5")
    conf = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    assert conf["workers"] == 3 and conf["threads"] == 5
    assert conf["timeout"] > 100
    log_format = conf["access_log_format"]
    assert "%(U)s" in log_format  # the path...
    for leak in ("%(q)s", "%(r)s", "{authorization}i", "{cookie}i", "%(f)s"):
        assert leak not in log_format  # ...never the query string, request line or headers


def test_env_example_documents_the_new_settings():
    text = (ROOT / ".env.example").read_text()
    for name in ("AUDIT_RETENTION_DAYS", "WEB_WORKERS", "WEB_THREADS", "POSTGRES_PASSWORD"):
        assert f"# {name}=" in text, name
