"""Issue 9's hostile scripts, run as an ordinary user through the sync run API, on
each isolating backend (ns, the default, and bubblewrap). Each test is one item of
"What was seen"; each script is bounded, so a containment bug fails a test and not
the machine."""

import os
import socket
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from executions.runner import identity, sandbox
from tests.executions.runner.conftest import base_spec, require_bwrap, require_ns

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["ns", "bwrap"])
def isolating(request, settings):
    (require_ns if request.param == "ns" else require_bwrap)()
    settings.SANDBOX_BACKEND = request.param
    return request.param


@pytest.fixture
def hostile(api, upload):
    """``hostile(source, data=None, **script_fields)`` -> the sync API's JSON answer
    for ``source`` uploaded and run by the ordinary user ``alice``."""

    def go(source, data=None, **fields):
        name = f"h{uuid.uuid4().hex[:8]}.py"
        script = upload(source, name=name)
        if fields:
            type(script).objects.filter(pk=script.pk).update(**fields)
        response = api.post(f"/api/v1/run/{name}", {"data": data or {}}, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    return go


def test_server_files_are_not_there(hostile, isolating):
    """The database, .env, the data dir, stored files, other runs' workspaces: none of
    them exists inside a run (rlimit: a script read db.sqlite3 and .env)."""
    paths = [
        str(Path(settings.DATABASES["default"]["NAME"])),
        str(settings.BASE_DIR / ".env"),
        str(settings.BASE_DIR / "config" / "settings" / "base.py"),
        str(settings.DATA_DIR),
        str(settings.MEDIA_ROOT),
        str(settings.WORKSPACES_DIR),
        "/etc/shadow",
        "/root",
        "/var/lib/postgresql",
    ]
    body = hostile(
        """
        import os
        def main(paths: list) -> dict:
            return {p: os.path.exists(p) for p in paths}
        """,
        {"paths": paths},
    )
    assert body["success"], body
    assert body["result"] == dict.fromkeys(paths, False)


def test_a_run_sees_only_its_own_processes_and_can_signal_nothing_else(hostile, isolating):
    """A script read another run's workspace and input through /proc and killed it."""
    body = hostile(
        """
        import os, signal
        def main() -> dict:
            mine, others, signalled = os.getuid(), [], []
            for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
                try:
                    if os.stat(f"/proc/{pid}").st_uid != mine:
                        others.append(int(pid))
                        os.kill(int(pid), 0)
                        signalled.append(int(pid))
                except OSError:
                    pass
            return {"pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                    "others": others, "signalled": signalled}
        """
    )
    assert body["success"], body
    assert body["result"]["signalled"] == []
    assert len(body["result"]["pids"]) <= 3  # init, the script, at most its `ls`


def test_tmp_var_tmp_and_dev_shm_are_private_and_capped(hostile, isolating, settings):
    """/tmp, /var/tmp and /dev/shm were the host's (rlimit) and /dev/shm was uncapped
    under bwrap (3 GB of host memory)."""
    marker = f"scriptorium-private-{uuid.uuid4().hex}"
    settings.RUN_MEMORY_MB = 256
    body = hostile(
        """
        import os
        def main(marker: str) -> dict:
            for d in ("/tmp", "/var/tmp", "/dev/shm"):
                with open(f"{d}/{marker}", "w") as fh:
                    fh.write("x")
            written, error = 0, ""
            try:
                with open("/dev/shm/fill", "wb") as fh:
                    for _ in range(64):  # ceiling: 1 GB
                        fh.write(b"\\0" * (16 << 20))
                        fh.flush()
                        written += 16
            except OSError as exc:
                error = type(exc).__name__
            return {"written_mb": written, "error": error}
        """,
        {"marker": marker},
    )
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not os.path.exists(f"{d}/{marker}")
    if body["success"]:
        assert body["result"]["written_mb"] <= 256 and body["result"]["error"], body
    else:  # the memory cgroup killed it: also contained
        assert body["error"]["code"] in ("MEMORY_LIMIT", "KILLED"), body


def test_memory_limit_holds_for_the_whole_tree(hostile, isolating, settings):
    """8 forked children held 3.2 GB against a 512 MB limit (a per-process limit)."""
    if not sandbox.describe()["cgroup"].startswith("v"):
        pytest.skip("this host gives the server no cgroup (limits are per process)")
    settings.RUN_MEMORY_MB = 256
    body = hostile(
        """
        import os, time
        def main() -> dict:
            kids = []
            for _ in range(8):  # ceiling: 8 x 100 MB
                pid = os.fork()
                if pid == 0:
                    block = bytearray(100 << 20)
                    for i in range(0, len(block), 4096):
                        block[i] = 1
                    time.sleep(1)
                    os._exit(0)
                kids.append(pid)
            killed = sum(os.waitpid(p, 0)[1] & 0x7F == 9 for p in kids)
            return {"killed": killed}
        """
    )
    assert body["success"], body
    assert body["result"]["killed"] >= 6  # at most two 100 MB children fit in 256 MB


def test_fork_bomb_takes_only_its_own_slots(hostile, isolating, settings):
    """Every run shared uid 65534: a fork bomb took that uid's slots machine-wide.
    Now one run's bomb is capped by its own limit while another run forks freely."""
    settings.RUN_MAX_PROCESSES = 30
    bomb = """
        import os, time
        def main() -> dict:
            made = 0
            for _ in range(200):  # ceiling: 200
                try:
                    pid = os.fork()
                except OSError:
                    break
                if pid == 0:
                    time.sleep(4)
                    os._exit(0)
                made += 1
            time.sleep(1.5)
            return {"made": made}
        """
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("bomb", hostile(bomb)))
    thread.start()
    time.sleep(0.8)
    other = hostile(
        """
        import subprocess, sys
        def main() -> dict:
            ok = [subprocess.run([sys.executable, "-c", "pass"]).returncode for _ in range(5)]
            return {"ok": ok}
        """
    )
    thread.join(30)
    assert other["success"] and other["result"] == {"ok": [0] * 5}, other
    assert results["bomb"]["success"] and results["bomb"]["result"]["made"] < 30


def test_network_allowed_never_reaches_the_hosts_own_services(hostile, isolating):
    """A run allowed network reached PostgreSQL, Redis and the web server on the host's
    loopback. Directly it now has only its own loopback; through the policy proxy the
    host's addresses are refused."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    try:
        body = hostile(
            """
            import http.client, os, socket
            def main(port: int) -> dict:
                out = {"proxy": os.environ.get("HTTPS_PROXY", "")}
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    out["direct"] = "connected"
                except OSError as exc:
                    out["direct"] = type(exc).__name__
                host, _, proxy_port = out["proxy"].rsplit("/", 1)[-1].partition(":")
                conn = http.client.HTTPConnection(host, int(proxy_port), timeout=5)
                try:
                    conn.request("GET", f"http://127.0.0.1:{port}/")
                    response = conn.getresponse()
                    out["proxied"] = response.status
                    out["reason"] = response.read().decode()
                except OSError as exc:
                    out["proxied"] = type(exc).__name__
                return out
            """,
            {"port": port},
            network_allowed=True,
        )
    finally:
        server.close()
    assert body["success"], body
    result = body["result"]
    assert result["direct"] == "ConnectionRefusedError"  # its own loopback, nobody there
    assert result["proxy"] and result["proxied"] == 403, result
    assert "loopback" in result["reason"], result


def test_a_daemon_that_clears_its_environment_dies_with_the_run(hostile, isolating):
    """rlimit: a daemon that cleared its environment outlived the run (the sweep looked
    for SCRIPTORIUM_RUN_ID). Now nothing runs as the run's uid once it has ended."""
    body = hostile(
        """
        import os, time
        def main() -> dict:
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execve("/bin/sleep", ["sleep", "30"], {})
                os._exit(0)
            time.sleep(0.3)
            return {"uid": os.getuid()}
        """
    )
    assert body["success"], body
    uid = body["result"]["uid"]
    if uid != os.geteuid():  # a root server: the run had a uid of its own
        time.sleep(0.2)
        assert identity.processes_of(uid) == []


def test_home_is_writable_and_outside_the_collected_folder(hostile, isolating):
    """matplotlib's caches (~/.cache, ~/.config) were listed among a run's files."""
    body = hostile(
        """
        import os, pathlib
        def main() -> dict:
            home = pathlib.Path.home()
            (home / ".cache" / "fontconfig").mkdir(parents=True)
            (home / ".cache" / "fontconfig" / "cache-4").write_text("x")
            pathlib.Path("report.txt").write_text("kept")
            return {"home": str(home), "cwd": os.getcwd()}
        """
    )
    assert body["success"], body
    from executions.models import Execution

    run = Execution.objects.get(pk=body["execution_id"])
    assert [a.name for a in run.artifacts.all()] == ["report.txt"]
    assert not body["result"]["home"].startswith(body["result"]["cwd"])


def test_two_instances_with_colliding_run_ids_leave_each_other_alone(isolating, settings):
    """The cleanup killed every process of the run uid carrying SCRIPTORIUM_RUN_ID=<pk>:
    `make test` next to `make run` killed live runs whose ids collided. Two runs with
    the same id (as two instances would have) now finish independently."""
    from executions.runner import run_script

    def spec(source):
        return base_spec(source, run_id="7", filename="same.py")  # the same id in two instances

    outcomes = {}

    def long_run():
        slow = "import time\ndef main():\n    time.sleep(1.5)\n    return {'alive': True}\n"
        with run_script(spec(slow), on_log=lambda _t: None) as outcome:
            outcomes["long"] = outcome

    thread = threading.Thread(target=long_run)
    thread.start()
    time.sleep(0.5)
    with run_script(spec("def main():\n    return {}\n"), on_log=lambda _t: None) as outcome:
        assert outcome.status == "succeeded"
    thread.join(20)
    assert outcomes["long"].status == "succeeded" and outcomes["long"].result == {"alive": True}


def test_identities_are_never_reused(settings):
    """Each attempt gets its own name and (as root) its own uid, also for equal run ids."""
    first, second = identity.acquire("7"), identity.acquire("7")
    try:
        assert first.name != second.name
        if os.geteuid() == 0:
            assert first.uid != second.uid
    finally:
        first.release()
        second.release()


def test_a_data_dir_under_a_private_parent_works(hostile, settings, tmp_path):
    """With the data dir under a 0700 parent and no bubblewrap every run failed with
    "No module named '_scriptorium_harness'". The default sandbox (ns) binds what a
    run needs as root; bwrap and rlimit, started as the run's uid, get a clear refusal."""
    require_ns()
    settings.SANDBOX_BACKEND = "ns"
    private = tmp_path / "home-of-root"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    data = private / "var"
    settings.DATA_DIR = data
    settings.ENVS_DIR = data / "envs"
    settings.WORKSPACES_DIR = data / "workspaces"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    body = hostile("def main() -> dict:\n    return {'ok': True}\n")
    assert body["success"] and body["result"] == {"ok": True}, body


def test_rlimit_is_refused_for_ordinary_users_unless_named(api, staff_api, upload, settings):
    """A backend that cannot isolate runs is never chosen silently."""
    from tests.executions.runner.conftest import require_rlimit_reachable

    require_rlimit_reachable()
    upload("def main() -> dict:\n    return {'ok': 1}\n", name="plain.py")
    settings.SANDBOX_BACKEND = "auto"
    real = sandbox.available_backends
    try:
        sandbox.available_backends = lambda: ["rlimit"]
        refused = api.post("/api/v1/run/plain.py", {"data": {}}, format="json").json()
        assert refused["success"] is False
        assert refused["error"]["code"] == "SANDBOX_UNAVAILABLE", refused
        assert "SANDBOX_BACKEND=rlimit" in refused["error"]["message"]
        staff = staff_api.post("/api/v1/run/plain.py", {"data": {}}, format="json").json()
        assert staff["success"] is True, staff
        settings.SANDBOX_BACKEND = "rlimit"  # the operator opts in by name
        allowed = api.post("/api/v1/run/plain.py", {"data": {}}, format="json").json()
        assert allowed["success"] is True, allowed
    finally:
        sandbox.available_backends = real


def test_bwrap_under_a_private_parent_is_refused_clearly(hostile, settings, tmp_path):
    require_bwrap()
    if os.geteuid() != 0:
        pytest.skip("only a root server runs bwrap as another uid")
    settings.SANDBOX_BACKEND = "bwrap"
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    settings.DATA_DIR = private / "var"
    settings.ENVS_DIR = private / "var" / "envs"
    settings.WORKSPACES_DIR = private / "var" / "workspaces"
    body = hostile("def main() -> dict:\n    return {}\n")
    assert body["error"]["code"] == "SANDBOX_UNAVAILABLE", body
    assert str(private) in body["error"]["message"]


def test_text_no_database_can_store_is_a_clear_error_not_an_internal_one(hostile, isolating):
    """A NUL or a lone surrogate in the result or the error message: PostgreSQL's
    jsonb and text refuse them, which ended the run with INTERNAL_ERROR."""
    nul = hostile("def main() -> dict:\n    return {'a': 'x\\u0000y'}\n")
    assert nul["success"] is False and nul["error"]["code"] == "RESULT_NOT_JSON", nul
    assert "NUL" in nul["error"]["message"]
    lone = hostile("def main() -> dict:\n    return {'a': '\\ud800'}\n")
    assert lone["error"]["code"] == "RESULT_NOT_JSON", lone
    raised = hostile("def main() -> dict:\n    raise ValueError('bad\\x00byte \\ud800')\n")
    assert raised["error"]["code"] == "SCRIPT_ERROR", raised
    assert "bad" in raised["error"]["message"] and "\x00" not in raised["error"]["message"]


def test_an_internal_error_still_removes_the_workspace(isolating, settings, monkeypatch):
    """Any internal failure ends the run with a clear code and removes the workspace."""
    from executions.runner import run, run_script

    def broken(*args, **kwargs):
        raise RuntimeError("the environment store is broken")

    monkeypatch.setattr(run, "ensure_environment", broken)
    spec = base_spec("def main():\n    return {}\n", run_id="internal", filename="x.py")
    with pytest.raises(RuntimeError):
        with run_script(spec, on_log=lambda _t: None):
            pass
    deadline = time.monotonic() + 5
    top = Path(settings.WORKSPACES_DIR)
    while time.monotonic() < deadline and any(top.iterdir()):
        time.sleep(0.02)
    assert list(top.iterdir()) == []
