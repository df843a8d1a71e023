"""Per-script environments from a local wheel (no network): built once under
concurrency, reused, verified by importing, failures reported; prune_envs."""

import base64
import hashlib
import os
import threading
import time
import zipfile
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from executions.runner import EnvironmentBuildFailed, ensure_environment
from executions.runner.environments import LAST_USED, environment_dir

pytestmark = pytest.mark.slow


def _wheel(folder, name, version, files):
    """Write a pure-Python wheel by hand: ``files`` maps paths to source text."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    contents[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    contents[f"{info}/top_level.txt"] = "\n".join({p.split("/")[0] for p in files}) + "\n"
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in contents.items():
            zf.writestr(member, text)
    return path


@pytest.fixture
def local_index(tmp_path, settings):
    """A folder of wheels used instead of PyPI (``--no-index --find-links``)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    os.chmod(tmp_path, 0o755)
    _wheel(
        wheels, "scriptorium-testpkg", "1.0", {"scriptorium_testpkg/__init__.py": "VALUE = 42\n"}
    )
    _wheel(
        wheels,
        "scriptorium-broken",
        "1.0",
        {"scriptorium_broken/__init__.py": "raise ImportError('needs a missing C library')\n"},
    )
    settings.ENVS_INSTALL_ARGS = ["--no-index", "--find-links", str(wheels)]
    return wheels


def test_environment_is_built_once_under_concurrency_and_reused(local_index, run):
    reqs = ["scriptorium-testpkg==1.0"]
    logs, results, errors = [], [], []

    def ask():
        try:
            results.append(ensure_environment(reqs, on_log=logs.append))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1 and results[0].exists()
    assert sum("Building environment" in line for line in logs) == 1, logs
    assert not (results[0].parent.parent.parent / "scriptorium-testpkg").exists()

    r = run(
        "import scriptorium_testpkg\ndef main():\n    return {'v': scriptorium_testpkg.VALUE}\n",
        requirements=["scriptorium-testpkg == 1.0"],  # same set, spelled differently
    )
    assert r.status == "succeeded", r.log
    assert r.result == {"v": 42}
    assert "Building environment" not in r.log


def test_base_environment_does_not_see_the_servers_packages(run, backend):
    r = run(
        """
        import importlib.util, sys
        def main():
            return {"django": importlib.util.find_spec("django") is not None,
                    "prefix": sys.prefix}
        """
    )
    assert r.status == "succeeded", r.log
    assert r.result["django"] is False
    # ns and bwrap show the environment at a fixed path (the data dir stays hidden)
    expected = str(environment_dir([])) if backend == "rlimit" else "/opt/scriptorium/env"
    assert r.result["prefix"] == expected


def test_failed_install_fails_the_run_with_the_installer_output(local_index, run, settings):
    r = run("def main():\n    return {}\n", requirements=["no-such-package-xyz==9.9"])
    assert (r.status, r.error_code) == ("failed", "DEPENDENCY_INSTALL_FAILED")
    assert "no-such-package-xyz" in r.log and "Environment build failed" in r.log
    env = environment_dir(["no-such-package-xyz==9.9"])
    assert not env.exists()
    assert not [p for p in env.parent.iterdir() if p.name.startswith(".build-")]


def test_package_that_does_not_import_fails_the_build(local_index):
    with pytest.raises(EnvironmentBuildFailed) as caught:
        ensure_environment(["scriptorium-broken"])
    assert caught.value.code == "DEPENDENCY_INSTALL_FAILED"
    assert "needs a missing C library" in caught.value.output
    assert not environment_dir(["scriptorium-broken"]).exists()


def test_prune_envs_removes_only_unused_environments(local_index):
    old = ensure_environment(["scriptorium-testpkg==1.0"]).parent.parent
    recent = ensure_environment([]).parent.parent
    month_ago = time.time() - 40 * 86400
    os.utime(old / LAST_USED, (month_ago, month_ago))

    out = StringIO()
    call_command("prune_envs", "--days", "30", "--dry-run", stdout=out)
    assert f"Would remove {old.name}" in out.getvalue() and old.exists()

    out = StringIO()
    call_command("prune_envs", "--days", "30", stdout=out)
    assert f"Removed {old.name}" in out.getvalue()
    assert not old.exists() and recent.exists()
    assert "Removed 1 environment(s)." in out.getvalue()

    with pytest.raises(CommandError):
        call_command("prune_envs", "--days", "-1")


def test_direct_references_are_never_installed(run, listener_no_traffic):
    """'# Requirements: probe @ http://127.0.0.1:PORT/...' made the server's installer
    (root, the host's network) fetch from the host's loopback and probe host paths."""
    from scripts.inspection import inspect_source

    port, seen = listener_no_traffic
    source = f"# Requirements: probe @ http://127.0.0.1:{port}/p-1.0-py3-none-any.whl\n"
    source += "def main():\n    return {}\n"
    inspection = inspect_source(source, filename="probe.py")
    assert inspection.requirements == []
    assert any("direct reference" in w for w in inspection.warnings)
    for requirement in (
        f"probe @ http://127.0.0.1:{port}/x.whl",
        "probe @ file:///root/",
        "--index-url=x",
    ):
        r = run("def main():\n    return {}\n", requirements=[requirement])
        assert (r.status, r.error_code) == ("failed", "DEPENDENCY_INSTALL_FAILED"), r.log
        assert "only requirements from the package index" in r.error_message
    assert seen == []


@pytest.fixture
def listener_no_traffic():
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    seen, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            seen.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join(2)
    server.close()
