"""The storage tests run against local disk and against a real S3 endpoint: moto's
server, started once per session on 127.0.0.1 (no in-process mocking of boto3)."""

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

MOTO_CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region_name": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """URL of a moto S3 server on a free 127.0.0.1 port, stopped after the session."""
    port = _free_port()
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def s3_storage_settings(endpoint: str, bucket: str, location: str = "scriptorium") -> dict:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "location": location,
            "file_overwrite": False,
            "default_acl": None,
            **MOTO_CREDENTIALS,
        },
    }


@pytest.fixture(scope="session")
def boto_session(moto_endpoint):
    """One real boto3 session for the whole run: a new one per test re-reads botocore's
    service models (0.2-0.3 s each); requests still go to the moto server."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


def make_bucket(session, endpoint: str) -> str:
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["local", "s3"])
def store(request, settings, tmp_path, monkeypatch):
    """Point the project's one storage at a fresh folder or a fresh moto bucket."""
    if request.param == "local":
        default = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "files")},
        }
    else:
        from storages.backends.s3 import S3Storage

        endpoint = request.getfixturevalue("moto_endpoint")
        session = request.getfixturevalue("boto_session")
        monkeypatch.setattr(S3Storage, "_create_session", lambda self: session)
        default = s3_storage_settings(endpoint, make_bucket(session, endpoint))
    settings.STORAGES = {**settings.STORAGES, "default": default}
    settings.STORAGE_BACKEND = request.param
    return request.param


@pytest.fixture
def objects(store):
    """``objects()`` -> the set of keys in storage right now."""
    from storage import backend

    return lambda: {key for key, _ in backend.iter_objects()}


@pytest.fixture
def store_fixture_local(settings, tmp_path):
    """Local disk only (for tests where the backend does not matter: admin)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "files")},
        },
    }
    return "local"
