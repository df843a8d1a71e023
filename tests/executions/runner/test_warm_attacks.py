"""Attacks on warm runs by the owner of a script (an ordinary user): what one run
forked from a template can learn of, or do to, other runs of the same template, its
own sandbox's PID 1, and the server's account of how it ended. Compared with the cold
ns path where the two differ."""

import dataclasses
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from executions.runner import cgroups, limits_for, run_script, templates, warm_up
from tests.executions.runner.conftest import WHO, _use_backend, assert_released, base_spec


@pytest.fixture
def warm(settings):
    return _use_backend(settings, "ns-warm")


def _spec(source, *, secrets=None, inputs=None, **limits):
    return base_spec(
        source,
        run_id=f"atk{uuid.uuid4().hex[:8]}",
        inputs=inputs,
        limits=dataclasses.replace(limits_for(), **limits),
        secrets=secrets or {},
    )


def _run(spec):
    log = []
    with run_script(spec, on_log=log.append) as outcome:
        outcome.text = "".join(log)
        return outcome


def _in_background(spec, into):
    thread = threading.Thread(target=lambda: into.append(_run(spec)))
    thread.start()
    return thread


def _secret():
    return f"ATTACKME-{uuid.uuid4().hex}"


# What another user's run finds of its secrets: the frames below the script (a spare
# forked while the template held a request) and every readable page of its own memory
# (a spare forked after the template had read, and freed, earlier requests).
SCAN_FOR_SECRETS = r"""
import ctypes, marshal, re, sys

def main():
    found = set()
    frame = sys._getframe()
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(value, (bytes, bytearray)) and b"ATTACKME-" in value:
                found.update(m.decode() for m in re.findall(rb"ATTACKME-[0-9a-f]{32}", value))
        frame = frame.f_back
    with open("/proc/self/maps") as fh:
        regions = [line.split() for line in fh]
    for fields in regions:
        name = fields[5] if len(fields) > 5 else ""
        if not fields[1].startswith("rw") or name.startswith("[v"):
            continue
        low, high = (int(x, 16) for x in fields[0].split("-"))
        data = ctypes.string_at(low, high - low)
        found.update(m.decode() for m in re.findall(rb"ATTACKME-[0-9a-f]{32}", data))
    return {"found": sorted(found)}
"""
SLEEP = "import time\ndef main():\n    time.sleep({})\n    return {{}}\n"


def test_a_run_cannot_read_the_secrets_of_earlier_runs_from_its_memory(warm):
    assert warm_up([])
    secrets, found = [], set()
    for _round in range(10):  # an attacker runs as often as it likes (each finds the
        # last victim's secret about half the time, depending on the template's heap)
        secrets.append(_secret())
        victim = _run(_spec(SLEEP.format(0), secrets={"API_TOKEN": secrets[-1]}))
        assert victim.status == "succeeded" and victim.warm, victim.text
        attacker = _run(_spec(SCAN_FOR_SECRETS))
        assert attacker.status == "succeeded" and attacker.warm, attacker.text
        found.update(attacker.result["found"])
    assert not set(secrets) & found, "an earlier run's secret leaked"


def test_a_run_cannot_read_a_concurrent_runs_secrets(warm):
    assert warm_up([])
    secrets = [_secret() for _ in range(2)]
    victims, threads = [], []
    for value in secrets:  # two at once: the second takes the last spare
        threads.append(_in_background(_spec(SLEEP.format(2), secrets={"K": value}), victims))
        time.sleep(0.3)
    attacker = _run(_spec(SCAN_FOR_SECRETS))
    for thread in threads:
        thread.join(30)
    assert [v.status for v in victims] == ["succeeded"] * 2
    assert attacker.status == "succeeded" and attacker.warm, attacker.text
    assert not set(secrets) & set(attacker.result["found"]), "a concurrent run's secret leaked"


def test_a_warm_run_holds_only_its_own_pipes(run, warm):
    """No fd of the template, a spare, PID 1 or another run (sockets, pidfds, epoll,
    memfds, the status file, the workspace mount, cgroup files) is left open."""
    r = run(
        """
        import os
        def main():
            fds = {}
            for fd in range(4096):
                try:
                    os.fstat(fd)
                except OSError:
                    continue
                fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
            return fds
        """
    )
    assert r.status == "succeeded", r.log
    fds = {int(fd): target for fd, target in r.result.items()}
    assert sorted(fds) == [0, 1, 2, 3, 4], fds
    assert fds[0] == "/dev/null"
    assert all(fds[fd].startswith("pipe:") for fd in (1, 2, 3, 4)), fds
    assert fds[1] == fds[2] and len({fds[1], fds[3], fds[4]}) == 3


def test_a_run_cannot_signal_or_trace_its_pid_1(run, warm):
    r = run(
        """
        import ctypes, errno, os, signal, time
        def main():
            seen = {"proc": sorted(p for p in os.listdir("/proc") if p.isdigit()),
                    "proc1": os.path.exists("/proc/1/status")}
            for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP, signal.SIGINT, 0):
                try:
                    os.kill(1, sig)
                    seen[f"kill {int(sig)}"] = "sent"
                except OSError as exc:
                    seen[f"kill {int(sig)}"] = errno.errorcode[exc.errno]
            libc = ctypes.CDLL(None, use_errno=True)
            for request in (16, 0x4206):  # PTRACE_ATTACH, PTRACE_SEIZE
                libc.ptrace(request, 1, 0, 0)
                seen[f"ptrace {request}"] = errno.errorcode[ctypes.get_errno()]
            pidfd = libc.syscall(434, 1, 0)  # pidfd_open works on any pid it can see
            stolen = [libc.syscall(438, pidfd, fd, 0) for fd in range(16)]  # pidfd_getfd
            seen["getfd"] = sorted({errno.errorcode[ctypes.get_errno()] if r < 0 else "fd"
                                    for r in stolen})
            buf = ctypes.create_string_buffer(16)
            iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
            far = (ctypes.c_void_p * 2)(id(buf), 16)  # the same layout: a forked sibling
            read = libc.process_vm_readv(1, iov, 1, far, 1, 0)
            seen["vm_readv"] = errno.errorcode[ctypes.get_errno()] if read < 0 else "read"
            child = os.fork()
            if child == 0:
                time.sleep(30)
                os._exit(0)
            os.kill(-1, signal.SIGKILL)  # everything it may signal: only its own child
            _, status = os.waitpid(child, 0)
            seen["child"] = os.WTERMSIG(status)
            return seen
        """
    )
    assert r.status == "succeeded", r.log
    seen = r.result
    assert seen["proc"] == ["2"] and not seen["proc1"]
    for sig in (9, 15, 19, 2, 0):
        assert seen[f"kill {sig}"] == "EPERM", seen
    assert seen["ptrace 16"] == "EPERM" and seen["ptrace 16902"] == "EPERM", seen
    assert seen["getfd"] == ["EPERM"] and seen["vm_readv"] == "EPERM", seen
    assert seen["child"] == 9


def test_a_run_killing_its_process_group_harms_no_other_run_or_its_template(run, warm):
    assert warm_up([])
    before = [t for t in templates.status() if t["state"] == "ready"]
    r = run("import os\ndef main():\n    os.killpg(0, 9)\n")
    assert r.status == "failed" and r.error_code == "KILLED" and r.exit_code == -9, r.log
    after = run("def main():\n    return {'ok': True}\n")
    assert after.status == "succeeded" and after.result == {"ok": True}
    assert {t["pid"] for t in before} <= {t["pid"] for t in templates.status()}


LEAVE_TRACES = """
import ctypes, os, socket, time
def main():
    marker = "{marker}"
    with open("/tmp/" + marker, "w") as fh:
        fh.write(marker)
    with open("/dev/shm/" + marker, "w") as fh:
        fh.write(marker)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\\0" + marker)
    listener.listen(1)
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(0x5C41, 4096, 0o1666)  # IPC_CREAT, world-readable and writable
    semid = libc.semget(0x5C41, 1, 0o1666)
    time.sleep({seconds})
    return {{"uid": os.getuid(), "shm": shmid, "sem": semid}}
"""
LOOK_FOR_TRACES = """
import ctypes, os, socket
def main():
    marker = "{marker}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("\\0" + marker)
        abstract = True
    except OSError:
        abstract = False
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/net/unix") as fh:
        unix = fh.read()
    return {{
        "uid": os.getuid(),
        "tmp": os.listdir("/tmp"),
        "shm_dir": os.listdir("/dev/shm"),
        "abstract": abstract,
        "listed": marker in unix,
        "shm": libc.shmget(0x5C41, 0, 0),
        "sem": libc.semget(0x5C41, 0, 0),
        "procs": sorted(p for p in os.listdir("/proc") if p.isdigit()),
    }}
"""


def test_concurrent_runs_of_one_template_share_no_tmp_shm_ipc_or_sockets(run, warm):
    assert warm_up([])
    marker = f"scriptorium-attack-{uuid.uuid4().hex[:8]}"
    first = []
    thread = _in_background(_spec(LEAVE_TRACES.format(marker=marker, seconds=2)), first)
    time.sleep(0.6)
    other = run(LOOK_FOR_TRACES.format(marker=marker))
    thread.join(30)
    assert first[0].status == "succeeded" and first[0].warm, first[0].text
    assert first[0].result["shm"] >= 0 and first[0].result["sem"] >= 0  # it made them
    seen = other.result
    assert other.status == "succeeded", other.log
    assert seen["uid"] != first[0].result["uid"]
    assert seen["tmp"] == [] and seen["shm_dir"] == []
    assert not seen["abstract"] and not seen["listed"]
    assert seen["shm"] == -1 and seen["sem"] == -1
    assert seen["procs"] == ["2"]
    later = run(LOOK_FOR_TRACES.format(marker=marker))  # and nothing of it is left
    assert later.result["tmp"] == [] and later.result["shm"] == -1 and not later.result["abstract"]


DAEMON = (
    WHO
    + """
import os, signal, time
def main():
    who()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
            os.closerange(0, 64)
            while True:
                time.sleep(0.05)
        os._exit(0)
    time.sleep(0.2)
    {end}
"""
)


@pytest.mark.parametrize(
    "end",
    [
        "return {}",  # a normal end
        "os.closerange(1, 5); time.sleep(0.2); os._exit(0)",  # its pipes closed first
        "os.killpg(0, 9)",  # its own process group killed
    ],
    ids=["returns", "closes-its-pipes", "kills-its-group"],
)
def test_a_daemon_that_leaves_its_group_ends_with_the_run_and_its_uid_is_clean(
    run, warm, settings, end
):
    started = time.monotonic()
    r = run(DAEMON.format(end=end), timeout_seconds=20)
    assert time.monotonic() - started < 10, "the run lasted until its time limit"
    assert_released(r.log, settings)


FAKE_END = """
import os, signal
def main():
    progress = int(os.environ["SCRIPTORIUM_PROGRESS_FD"])
    result = [fd for fd in os.listdir("/proc/self/fd")
              if int(fd) > 2 and int(fd) != progress and os.path.exists(f"/proc/self/fd/{{fd}}")]
    result = int(min(result, key=int))
    os.write(result, b'{{"ok": true, "result": {{"faked": true}}, "peak_kb": 1, "cpu_ms": 1}}')
    os.close(result)
    for fd in (1, 2, progress):
        os.write(fd, b"E 0 0 0 0\\n")
    {then}
"""


@pytest.mark.parametrize("backend_name", ["ns", "ns-warm"])
def test_a_fake_record_or_exit_line_ends_as_on_the_cold_path(run, settings, backend_name):
    """A record written before the script is killed, or before it outlives its time,
    is taken exactly as a cold run takes it; an ``E`` line printed anywhere the script
    can write is never the run's end."""
    _use_backend(settings, backend_name)
    killed = run(FAKE_END.format(then="os.kill(os.getpid(), signal.SIGKILL)"))
    assert killed.exit_code == -9, killed.log
    assert killed.result == {"faked": True}  # the cold path's rule: a record is the outcome
    late = run(FAKE_END.format(then="import time; time.sleep(30)"), timeout_seconds=1)
    assert late.status == "timed_out" and late.error_code == "TIMEOUT", late.log
    assert late.result is None


def test_a_warm_run_without_network_has_only_its_loopback(run, warm):
    """No way out: no device but lo, no route, and no unix socket in its file system
    (the template's socket, the policy proxy's) to connect to."""
    r = run(
        """
        import os, socket, stat
        def main():
            out = {"relay_dir": os.listdir("/run/scriptorium"), "sockets": []}
            tops = ("/run", "/tmp", "/dev", "/home", "/etc", "/work", "/opt/scriptorium")
            for top in tops:
                for folder, dirs, files in os.walk(top):
                    for name in dirs + files:
                        path = os.path.join(folder, name)
                        try:
                            if stat.S_ISSOCK(os.lstat(path).st_mode):
                                out["sockets"].append(path)
                        except OSError:
                            pass
            with open("/proc/net/dev") as fh:
                out["dev"] = sorted(line.split(":")[0].strip() for line in fh if ":" in line)
            for host in ("10.0.2.2", "1.1.1.1", "169.254.169.254"):
                s = socket.socket()
                s.settimeout(1)
                try:
                    s.connect((host, 80))
                    out[host] = "connected"
                except OSError as exc:
                    out[host] = type(exc).__name__
            return out
        """,
        network=False,
    )
    assert r.status == "succeeded", r.log
    assert r.result["dev"] == ["lo"] and r.result["relay_dir"] == []
    assert r.result["sockets"] == []
    assert all(r.result[h] != "connected" for h in ("10.0.2.2", "1.1.1.1", "169.254.169.254"))


FILL_THE_RELAY = """
import os, socket, time
def main(port: int):
    host, _, proxy_port = os.environ["HTTPS_PROXY"].rsplit("/", 1)[-1].partition(":")
    held = []
    for _ in range(60):  # under the proxy's connection limit
        sock = socket.create_connection((host, int(proxy_port)), timeout=5)
        sock.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
        sock.recv(100)
        sock.setblocking(False)
        try:  # the far end never reads, and this end never reads what it sends
            while True:
                sock.send(b"x" * 65536)
        except BlockingIOError:
            pass
        held.append(sock)
    time.sleep(1.5)
    return {"held": len(held)}
"""


def test_a_runs_relay_buffers_are_not_held_in_the_templates_memory(warm, settings):
    far = socket.socket()
    far.bind(("127.0.0.1", 0))
    far.listen(128)
    settings.RUN_NETWORK_ALLOW = [f"127.0.0.1:{far.getsockname()[1]}"]
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = far.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=_push, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    assert warm_up([])
    usage = [
        Path(r["cgroup"][0]) / ("memory.current" if cgroups.version() == 2 else
                                "memory.usage_in_bytes")
        for r in templates._records() if r["state"] == "ready" and r["cgroup"]
    ]  # fmt: skip

    def template_bytes():
        return sum(int(path.read_text()) for path in usage if path.exists())

    base, peak, done = template_bytes(), 0, []
    try:
        spec = _spec(FILL_THE_RELAY, inputs={"port": far.getsockname()[1]}, network=True)
        thread = _in_background(spec, done)
        while thread.is_alive():
            peak = max(peak, template_bytes())
            time.sleep(0.1)
    finally:
        far.close()
        for conn in accepted:
            conn.close()
    assert done[0].status == "succeeded" and done[0].result == {"held": 60}, done[0].text
    assert peak - base < 16 << 20, f"the template's group grew {(peak - base) >> 20} MB"


def _push(conn):
    try:
        while True:
            conn.sendall(b"y" * 65536)
    except OSError:
        pass


def test_groups_for_a_template_that_are_pruned_before_they_are_sent_are_let_go(monkeypatch):
    """give_groups after a run: a group it made may be removed before it is handed
    over (pruned as no longer used: its template ended). No error, no fd kept, no
    group left behind."""
    if not cgroups.version():
        pytest.skip("no cgroups here")
    real, made = cgroups.open_run, []

    def made_then_pruned(name, **limits):
        group = real(name, **limits)
        made.append(group)
        group.remove()
        return group

    monkeypatch.setattr(cgroups, "open_run", made_then_pruned)
    gone = templates.Template(key="k" * 16, socket_path="/nonexistent/template.sock")
    templates.give_groups(gone, count=2, memory_bytes=64 << 20, max_processes=16)
    assert len(made) == 2
    assert not any(path.exists() for group in made for path in group.dirs)
    # no fd on them kept (this process's other fds come and go: the janitor and the
    # remover finish earlier tests' runs meanwhile)
    assert not [link for link in _fd_links() if any(group.name in link for group in made)]


def _fd_links() -> list[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed meanwhile
            pass
    return links
