import pytest
from django.db import OperationalError


@pytest.mark.django_db
def test_health_is_healthy(client):
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert {"database", "broker", "storage"} <= set(body["checks"])
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.django_db
def test_health_is_degraded_when_database_is_unreachable(client, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def unreachable(self, sql, params=None):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(CursorWrapper, "execute", unreachable)
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == {
        "ok": False,
        "error": "OperationalError",
        "ms": body["checks"]["database"]["ms"],
    }
    assert "could not connect" not in response.content.decode()


@pytest.mark.django_db
def test_health_is_degraded_when_storage_fails(client, monkeypatch):
    from django.core.files.storage import default_storage

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(default_storage, "save", broken)
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"]["ok"] is False
