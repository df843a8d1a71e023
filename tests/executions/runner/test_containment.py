"""Hostile scripts, contained and reported, on every backend. Each is bounded (a
ceiling on what it tries) so a containment bug fails the test, not the machine."""

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from executions.runner import identity, sandbox

pytestmark = pytest.mark.slow


def _marked_processes(run_id: str) -> list[int]:
    marker = f"SCRIPTORIUM_RUN_ID={run_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if marker in fh.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                pass
    return found


def test_infinite_loop_times_out_and_the_whole_group_dies(run, backend):
    run_id = f"loop{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    r = run(
        """
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"])
        def main():
            while True:
                pass
        """,
        run_id=run_id,
        timeout_seconds=1.5,
    )
    assert (r.status, r.error_code) == ("timed_out", "TIMEOUT")
    assert "1.5 s" in r.error_message
    assert time.monotonic() - started < 8
    assert _marked_processes(run_id) == []


def test_cancel_kills_the_run(run, backend):
    started = time.monotonic()
    asked = time.monotonic() + 0.5
    r = run(
        "import time\ndef main():\n    time.sleep(30)\n",
        should_cancel=lambda: time.monotonic() > asked,
    )
    assert (r.status, r.error_code) == ("cancelled", "CANCELLED")
    assert time.monotonic() - started < 5


def test_memory_hog_hits_the_memory_limit(run, backend):
    r = run(
        """
        def main():
            hoard = []
            for _ in range(40):  # ceiling: 2 GB
                hoard.append(bytearray(50 * 1024 * 1024))
            return {"allocated_mb": 50 * len(hoard)}
        """,
        memory_mb=200,
    )
    assert (r.status, r.error_code) == ("failed", "MEMORY_LIMIT"), r.log
    assert "MemoryError" in r.log
    assert r.peak_memory_kb < 250 * 1024


def test_cpu_burner_hits_the_cpu_limit(run, backend):
    r = run("def main():\n    while True:\n        pass\n", cpu_seconds=1, timeout_seconds=10)
    assert (r.status, r.error_code) == ("failed", "CPU_LIMIT"), (r.error_message, r.log)
    assert r.duration_seconds < 6


def test_fork_bomb_is_bounded_by_the_process_limit(run, backend):
    run_id = f"fork{uuid.uuid4().hex[:8]}"
    r = run(
        """
        import os, time
        def main():
            made, error = 0, ""
            for _ in range(300):  # ceiling: 300 processes
                try:
                    pid = os.fork()
                except OSError as exc:
                    error = type(exc).__name__
                    break
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                made += 1
            return {"made": made, "error": error}
        """,
        run_id=run_id,
        max_processes=40,
        timeout_seconds=20,
    )
    assert r.status == "succeeded", r.log
    assert r.result["made"] < 40 and r.result["error"] == "BlockingIOError"
    assert _marked_processes(run_id) == []  # the sleeping children died with the run


def test_daemonised_child_does_not_outlive_the_run(run, backend):
    run_id = f"daemon{uuid.uuid4().hex[:8]}"
    r = run(
        """
        import os, time
        def main():
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    for fd in (0, 1, 2):
                        os.close(fd)
                    time.sleep(60)
                os._exit(0)
            time.sleep(0.2)
            return {}
        """,
        run_id=run_id,
    )
    assert r.status == "succeeded"
    time.sleep(0.1)
    assert _marked_processes(run_id) == []


def test_huge_output_is_truncated_and_server_memory_stays_flat(run, backend):
    def rss_kb():
        with open("/proc/self/status") as fh:
            return next(int(x.split()[1]) for x in fh if x.startswith("VmRSS"))

    before = rss_kb()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        r = run(
            """
            import sys
            block = ("x" * 1023 + "\\n") * 1024
            def main():
                for _ in range(1024):  # 1 GB
                    sys.stdout.write(block)
                print("the end")
                return {"done": True}
            """,
            log_bytes=1024 * 1024,
            timeout_seconds=60,
        )
    finally:
        done.set()
        sampler.join()
    assert r.status == "succeeded" and r.result == {"done": True}
    assert r.log_truncated
    assert r.log.endswith("further output is dropped (the run goes on).\n")
    assert len(r.log.encode()) < 1024 * 1024 + 200 and "the end" not in r.log
    assert r.log_bytes == 1024 * 1024
    assert peak[0] - before < 40 * 1024, f"server RSS grew by {peak[0] - before} kB"


def test_file_bigger_than_the_limit_and_too_many_files(run, backend):
    r = run(
        """
        def main():
            with open("big.bin", "wb") as fh:
                fh.write(b"x" * 2_000_000)
        """,
        max_file_bytes=1_000_000,
    )
    assert (r.status, r.error_code) == ("failed", "FILE_LIMIT"), r.log
    # The kernel stopped the write at the limit; the partial file is within it.
    assert len(r.files["big.bin"][1]) == 1_000_000
    r = run(
        """
        def main():
            for i in range(5):
                with open(f"f{i}.csv", "w") as fh:
                    fh.write("a,b\\n" * 100)
        """,
        max_files=3,
    )
    assert r.status == "succeeded"
    assert sorted(r.files) == ["f0.csv", "f1.csv", "f2.csv"]
    assert r.skipped_files == [
        "f3.csv: over the limit of 3 files",
        "f4.csv: over the limit of 3 files",
    ]
    assert "File not collected: f3.csv" in r.log


def test_writing_outside_the_workspace_fails(run, backend, tmp_path):
    targets = [
        str(settings.DATA_DIR / f"escape-{uuid.uuid4().hex}"),
        str(settings.WORKSPACES_DIR / f"escape-{uuid.uuid4().hex}"),
        f"{settings.BASE_DIR}/escape-{uuid.uuid4().hex}",
        "/etc/scriptorium-escape",
        "/usr/scriptorium-escape",
    ]
    r = run(
        """
        def main(targets: list):
            denied = []
            for path in targets:
                try:
                    with open(path, "w") as fh:
                        fh.write("escaped")
                except OSError:
                    denied.append(path)
            return {"denied": denied}
        """,
        inputs={"targets": targets},
    )
    assert r.status == "succeeded", r.log
    # Under bwrap, a path under /tmp is in the run's private /tmp: the write lands there
    # (gone with the run) or is denied when its folder does not exist there (a checkout
    # under /tmp). Everywhere else it must be denied; nowhere may it reach the host.
    private = {t for t in targets if backend == "bwrap" and t.startswith("/tmp/")}
    denied = set(r.result["denied"])
    assert set(targets) - private <= denied <= set(targets)
    assert not any(os.path.exists(t) for t in targets)


def test_bwrap_tmp_is_private(run, bwrap):
    name = f"/tmp/scriptorium-private-{uuid.uuid4().hex}"
    r = run(f"def main():\n    open({name!r}, 'w').write('x')\n    return {{}}\n")
    assert r.status == "succeeded"
    assert not os.path.exists(name)


def test_server_secrets_are_not_visible(run, backend, monkeypatch):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("SECRET_KEY", secret)
    monkeypatch.setenv("DATABASE_URL", f"postgres://u:{secret}@db/x")
    r = run(
        """
        import os
        def main(secret: str):
            seen = [k for k, v in os.environ.items() if secret in v]
            leaks = []
            for pid in [os.getppid()] + [p for p in os.listdir("/proc") if p.isdigit()]:
                try:
                    with open(f"/proc/{pid}/environ", "rb") as fh:
                        if secret.encode() in fh.read():
                            leaks.append(pid)
                except OSError:
                    pass
            return {"env": sorted(os.environ), "seen": seen, "leaks": leaks}
        """,
        inputs={"secret": secret},
    )
    assert r.status == "succeeded", r.log
    assert r.result["seen"] == [] and r.result["leaks"] == []
    assert "SECRET_KEY" not in r.result["env"] and "DATABASE_URL" not in r.result["env"]


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    yield server.getsockname()[1]
    server.close()


def test_network_reaches_the_hosts_loopback_only_when_listed(run, isolating_backend, settings):
    """Without network a run has only its own loopback; with network allowed it goes
    out through the policy proxy, which refuses the host's own addresses unless
    RUN_NETWORK_ALLOW lists them (the only loopback target a test may use)."""
    allowed, refused = socket.socket(), socket.socket()
    for server in (allowed, refused):
        server.bind(("127.0.0.1", 0))
        server.listen(5)
    ports = {"allowed": allowed.getsockname()[1], "refused": refused.getsockname()[1]}
    settings.RUN_NETWORK_ALLOW = [f"127.0.0.1:{ports['allowed']}"]
    source = """
        import http.client, os, socket
        def main(ports: dict):
            out = {}
            for name, port in ports.items():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    out[f"direct_{name}"] = "connected"
                except OSError as exc:
                    out[f"direct_{name}"] = type(exc).__name__
                proxy = os.environ.get("HTTPS_PROXY", "")
                if not proxy:
                    continue
                host, _, proxy_port = proxy.rsplit("/", 1)[-1].partition(":")
                conn = http.client.HTTPConnection(host, int(proxy_port), timeout=5)
                conn.request("CONNECT", f"127.0.0.1:{port}")
                out[f"proxied_{name}"] = conn.getresponse().status
                conn.close()
            return out
        """
    try:
        off = run(source, inputs={"ports": ports})
        on = run(source, inputs={"ports": ports}, network=True)
    finally:
        allowed.close()
        refused.close()
    assert off.result == {
        "direct_allowed": "ConnectionRefusedError",
        "direct_refused": "ConnectionRefusedError",
    }, off.log
    assert on.result == {
        "direct_allowed": "ConnectionRefusedError",  # its own loopback: nobody listens
        "direct_refused": "ConnectionRefusedError",
        "proxied_allowed": 200,
        "proxied_refused": 403,
    }, on.log


def test_killing_its_parent_does_not_hurt_the_server(run, backend):
    r = run(
        """
        import os, signal
        def main():
            try:
                os.kill(os.getppid(), signal.SIGKILL)
                return {"killed": os.getppid()}
            except OSError as exc:
                return {"error": type(exc).__name__}
        """
    )
    assert os.getpid()  # still here
    assert r.status in ("succeeded", "failed")
    if backend == "rlimit":
        assert r.result == {"error": "PermissionError"}


def test_symlink_to_etc_passwd_is_not_collected(run, backend):
    r = run(
        """
        import os
        def main():
            os.symlink("/etc/passwd", "passwd.txt")
            os.symlink("/etc", "etc")
            os.makedirs("sub")
            with open("sub/real.txt", "w") as fh:
                fh.write("mine")
        """
    )
    assert r.status == "succeeded"
    assert r.files == {"sub/real.txt": ("document", b"mine")}
    assert "passwd.txt: symbolic link (not collected)" in r.skipped_files
    assert "etc: symbolic link (not followed)" in r.skipped_files


def test_script_runs_unprivileged_with_no_groups_or_capabilities(run, backend):
    """Whatever starts the process (and however fast), the script is the run uid/gid,
    without the server's supplementary groups, with no capability, and cannot gain
    privileges through set-uid programs."""
    r = run(
        """
        import os
        def main():
            with open("/proc/self/status") as fh:
                status = {k: v.split() for k, v in (line.split(":", 1) for line in fh)}
            return {"status": status, "env": dict(os.environ)}
        """
    )
    assert r.status == "succeeded", r.log
    status = r.result["status"]
    env = r.result["env"]
    assert env["LANG"] == env["LC_ALL"] == "C.UTF-8"  # bwrap: put back by --setenv
    names = set(
        sandbox.scrubbed_env(env_dir=Path("e"), home=Path("h"), tmp="t", run_id="r", progress_fd=0)
    )
    assert set(env) == (names | {"PWD"} if backend == "bwrap" else names)  # bwrap sets PWD
    if os.geteuid() == 0:  # a uid of the run's own, from RUN_UID_RANGE
        low, high = identity.uid_range()
        uid = int(status["Uid"][0])
        assert low <= uid <= high
        assert status["Uid"] == [str(uid)] * 4 and status["Gid"] == [str(uid)] * 4
        assert status["Groups"] == []
    else:
        assert status["Uid"][0] != "0"
    for name in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status[name][0], 16) == 0, (name, status[name])
    assert status["NoNewPrivs"] == ["1"]


def test_without_setpriv_the_user_switch_still_happens(run, backend, monkeypatch):
    """The fallback where util-linux setpriv is missing: Popen switches the user."""
    if os.geteuid() != 0:
        pytest.skip("the server is not root: no user switch")
    monkeypatch.setattr(sandbox, "_setpriv_path", lambda: None)
    ident = identity.acquire("x")
    try:
        assert sandbox._switch_user(ident)[0] == []
    finally:
        ident.release()
    r = run(
        """
        import os
        def main():
            with open("/proc/self/status") as fh:
                nnp = [line.split()[1] for line in fh if line.startswith("NoNewPrivs")]
            return {"ids": list(os.getresuid() + os.getresgid()), "groups": os.getgroups(),
                    "nnp": nnp}
        """
    )
    assert r.status == "succeeded", r.log
    uid = r.result["ids"][0]
    assert uid != 0 and r.result == {"ids": [uid] * 6, "groups": [], "nnp": ["1"]}


def test_bwrap_etc_holds_only_the_listed_entries(run, bwrap):
    r = run(
        """
        import os
        def main():
            def read(path):
                try:
                    with open(path, "rb") as fh:
                        return fh.read().decode("latin-1")
                except OSError as exc:
                    return type(exc).__name__
            return {
                "etc": sorted(os.listdir("/etc")),
                "passwd": read("/etc/passwd"),
                "localtime": read("/etc/localtime").encode("latin-1").hex(),  # binary
                "certs": os.path.isdir("/etc/ssl/certs"),
                "resolv": read("/etc/resolv.conf"),
            }
        """
    )
    assert r.status == "succeeded", r.log
    expected = {
        name for name in sandbox._ETC_FILES + sandbox._ETC_DIRS if os.path.exists(f"/etc/{name}")
    }
    assert set(r.result["etc"]) == expected | {"resolv.conf"}
    with open("/etc/passwd", encoding="latin-1") as fh:
        assert r.result["passwd"] == fh.read()
    if os.path.exists("/etc/localtime"):
        with open("/etc/localtime", "rb") as fh:
            assert r.result["localtime"] == fh.read().hex()
    assert r.result["certs"] is os.path.isdir("/etc/ssl/certs")
    assert r.result["resolv"] == ""  # no resolver: an allowed network goes via the proxy


def test_etc_copy_follows_changes_and_keeps_modes(tmp_path, monkeypatch):
    """The sandbox's /etc copy: renewed when a file changes, symlinks followed, a file
    unreadable to others stays so, missing files and non-listed files absent."""
    from executions.runner.sandbox import etc_dir

    source = tmp_path / "etc"
    source.mkdir()
    (source / "passwd").write_text("root:x:0:0\n")
    (source / "group").write_text("secret\n")
    os.chmod(source / "group", 0o600)
    (source / "real-hosts").write_text("127.0.0.1 localhost\n")
    os.symlink(source / "real-hosts", source / "hosts")
    (source / "shadow").write_text("never copied\n")
    (source / "ssl").mkdir()
    monkeypatch.setattr(sandbox, "_ETC_ROOT", str(source))
    first = etc_dir()
    assert sorted(p.name for p in first.iterdir()) == [
        "group",
        "hosts",
        "passwd",
        "resolv.conf",
        "ssl",
    ]
    assert (first / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert not (first / "hosts").is_symlink()
    assert os.stat(first / "group").st_mode & 0o777 == 0o600
    assert os.stat(first / "passwd").st_mode & 0o777 == 0o644
    assert list((first / "ssl").iterdir()) == []
    assert etc_dir() == first
    (source / "passwd").write_text("root:x:0:0\nnew:x:1:1\n")
    second = etc_dir()
    assert second != first
    assert (second / "passwd").read_text() == "root:x:0:0\nnew:x:1:1\n"


def test_control_record_is_closed_before_the_script_runs(run, backend):
    r = run(
        """
        import os
        def main():
            links = []
            for fd in os.listdir("/proc/self/fd"):
                try:
                    links.append(os.readlink(f"/proc/self/fd/{fd}"))
                except OSError:
                    pass
            return {"links": links, "ctl": os.path.exists("../ctl")}
        """,
        inputs={},
    )
    assert r.status == "succeeded", r.log
    assert not any("scriptorium-control" in link for link in r.result["links"]), r.result
    assert r.result["ctl"] is False


def test_a_run_uid_without_a_name_is_switched_to_by_number(run, backend):
    import pwd

    if os.geteuid() != 0:
        pytest.skip("only a root server switches users")
    uid = next(u for u in range(54321, 54400) if not _has_passwd_entry(pwd, u))
    assert sandbox._id_names(uid, uid) == (str(uid), str(uid))
    assert sandbox._id_names(0, 0) == ("root", "root")
    r = run("import os\ndef main():\n    return {'ids': os.getresuid() + os.getresgid()}\n")
    assert r.status == "succeeded", r.log
    run_uid = r.result["ids"][0]
    assert not _has_passwd_entry(pwd, run_uid)  # run uids are nobody's on the host
    assert r.result == {"ids": [run_uid] * 6}


def test_runs_at_once_get_different_uids(run, backend):
    """Every run shared uid 65534 (a fork bomb took that uid's slots machine-wide, and
    runs could signal each other)."""
    if os.geteuid() != 0:
        pytest.skip("only a root server gives runs their own uids")
    source = "import os, time\ndef main():\n    time.sleep(0.5)\n    return {'uid': os.getuid()}\n"
    found = []
    threads = [threading.Thread(target=lambda: found.append(run(source))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len({r.result["uid"] for r in found}) == 3


def test_a_runs_whole_tree_is_killed_at_its_time_limit(run, backend):
    """Children that left the process group (setsid) and cleared their environment die
    with the run when it times out: nothing of the run's uid is left."""
    r = run(
        """
        import os, time
        def main():
            if os.fork() == 0:
                os.setsid()
                os.execve("/bin/sleep", ["sleep", "60"], {})
            print("uid", os.getuid(), flush=True)
            time.sleep(60)
        """,
        timeout_seconds=1,
    )
    assert r.status == "timed_out"
    uid = int(r.log.split("uid ", 1)[1].split()[0])
    if uid != os.geteuid():
        assert identity.processes_of(uid) == []


def _has_passwd_entry(pwd, uid):
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


TCP_HOARD = """
import socket, time
CEILING = 1024 << 20  # bound: 1 GB
def main():
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(512)
    port = srv.getsockname()[1]
    conns, total = [], 0
    chunk = b"x" * (1 << 16)
    while total < CEILING and len(conns) < 120:
        c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 20)
        c.connect(("127.0.0.1", port)); s, _ = srv.accept()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        c.setblocking(False)
        for _ in range(2000):
            try:
                total += c.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
                try:
                    total += c.send(chunk)
                except BlockingIOError:
                    break
            except OSError:
                break
            if total >= CEILING:
                break
        conns.append((c, s))
    return {"queued_mb": total >> 20, "conns": len(conns)}
"""


def test_unread_socket_buffers_count_against_the_memory_limit(run, isolating_backend):
    """Socket buffers on the run's own loopback were not charged to its cgroup (v1):
    1 GB of host TCP memory held by a run limited to 512 MB."""
    from executions.runner import cgroups

    if not cgroups.version():
        pytest.skip("this host gives the server no cgroup (limits are per process)")
    r = run(TCP_HOARD, memory_mb=200, timeout_seconds=30)
    if r.status == "succeeded":
        assert r.result["queued_mb"] < 260, r.result
    else:
        assert r.error_code in ("MEMORY_LIMIT", "KILLED", "SCRIPT_ERROR"), r.log


def test_the_kernel_surface_a_run_never_needs_is_closed(run, isolating_backend):
    """A nested user namespace gave a script every capability (and with it nf_tables,
    mounts...); keys it added outlived the run; io_uring, bpf, perf were open. A
    seccomp filter refuses them; threads, fork and subprocess still work."""
    r = run(
        """
        import ctypes, os, subprocess, sys, threading
        def main():
            libc = ctypes.CDLL(None, use_errno=True)
            def call(*args):
                result = libc.syscall(*args)
                return [result, ctypes.get_errno()]
            out = {
                "unshare_user": [libc.unshare(0x10000000), ctypes.get_errno()],
                "keyctl": call(250 if os.uname().machine == "x86_64" else 219, 0, 0, 0, 0, 0),
                "io_uring": call(425, 1, 0),
            }
            thread = threading.Thread(target=lambda: None)
            thread.start()
            thread.join()
            out["sub"] = subprocess.run([sys.executable, "-c", "print(1)"],
                                        capture_output=True, text=True).stdout
            pid = os.fork()
            if pid == 0:
                os._exit(7)
            out["fork"] = os.waitpid(pid, 0)[1] >> 8
            return out
        """
    )
    assert r.status == "succeeded", r.log
    eperm = [-1, 1]
    assert r.result == {
        "unshare_user": eperm,
        "keyctl": eperm,
        "io_uring": eperm,
        "sub": "1\n",
        "fork": 7,
    }


def test_a_run_cannot_fill_the_disk(run, isolating_backend):
    """30 x 100 MB (fallocate, then plain writes) took 3 GB of the host's disk in 0.02 s:
    the total-file limit was only applied at collection time."""
    r = run(
        """
        import os
        def main():
            made = 0
            for i in range(30):  # ceiling: 3 GB
                with open(f"fill-{i}.bin", "wb") as fh:
                    try:
                        os.posix_fallocate(fh.fileno(), 0, 100 << 20)
                    except OSError:
                        pass
                    block = b"\\0" * (1 << 20)
                    for _ in range(100):
                        fh.write(block)
                made += 1
            return {"made": made}
        """,
        max_total_file_bytes=200 << 20,
        max_file_bytes=100 << 20,
        timeout_seconds=60,
    )
    assert (r.status, r.error_code) == ("failed", "DISK_LIMIT"), (r.result, r.log[-500:])
    assert "wrote more than" in r.error_message
