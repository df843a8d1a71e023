"""Workspace: input files under sanitised names, new files collected with categories,
the workspace removed afterwards; the limits record; health and admin panel."""

import io
import os
import stat
import time
from pathlib import Path

import pytest

from executions.runner import InputFile, limits_for, sandbox
from executions.runner.files import categorise
from executions.runner.workspace import sanitise_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.csv", "report.csv"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\data file.xlsx", "data file.xlsx"),
        (".bashrc", "bashrc"),
        ("-rf", "rf"),
        ("", "file"),
        ("..", "file"),
        ("na\x00me;$(rm).txt", "na_me_rm_.txt"),
    ],
)
def test_sanitise_name(name, expected):
    assert sanitise_name(name) == expected


def test_sanitise_name_makes_names_unique():
    taken = {"script.py"}
    names = [sanitise_name(n, taken=taken) for n in ["a.csv", "A.csv", "a.csv", "script.py"]]
    assert names == ["a.csv", "A-1.csv", "a-2.csv", "script-1.py"]


@pytest.mark.parametrize(
    ("name", "head", "category"),
    [
        ("x.csv", b"a,b", "data"),
        ("x.JSON", b"{}", "data"),
        ("x.pdf", b"%PDF-1.4", "document"),
        ("x.png", b"", "image"),
        ("x.tar.gz", b"\x1f\x8b", "archive"),
        ("x.py", b"print()", "code"),
        ("x.log", b"hi", "log"),
        ("blob.bin", b"\x89PNG\r\n\x1a\nxxxx", "image"),
        ("noext", b"%PDF-1.7", "document"),
        ("noext2", b"plain words", "document"),
        ("noext3", b' [{"a": 1}]', "data"),
        ("noext4", b"\x00\x01\x02", "other"),
    ],
)
def test_categorise(tmp_path, name, head, category):
    path = tmp_path / name
    path.write_bytes(head)
    assert categorise(path) == category


@pytest.mark.slow
def test_inputs_in_and_new_files_out_with_categories(run, backend):
    inputs = [
        InputFile(name="../secret/in.csv", open=lambda: io.BytesIO(b"a,b\n1,2\n")),
        InputFile(name="in.csv", open=lambda: io.BytesIO(b"second")),
        InputFile(name="script.py", open=lambda: io.BytesIO(b"not the script")),
    ]
    seen = {}
    r = run(
        """
        import os, zipfile
        def main():
            listing = sorted(os.listdir("."))
            rows = open("in.csv").read()
            os.makedirs("out/deep/er")
            open("out/deep/er/result.json", "w").write("{}")
            open("chart.bin", "wb").write(b"\\x89PNG\\r\\n\\x1a\\n....")
            with zipfile.ZipFile("bundle.zip", "w") as zf:
                zf.writestr("a.txt", "a")
            open("in-1.csv", "a").write("3,4\\n")  # a changed input is collected
            return {"listing": listing, "rows": rows}
        """,
        input_files=inputs,
        keep=lambda outcome: seen.update(root=outcome.files[0].path.parents[0]),
    )
    assert r.status == "succeeded", r.log
    assert r.result["listing"] == ["in-1.csv", "in.csv", "script-1.py", "script.py"]
    assert r.result["rows"] == "a,b\n1,2\n"
    assert {k: v[0] for k, v in r.files.items()} == {
        "bundle.zip": "archive",
        "chart.bin": "image",
        "in-1.csv": "data",
        "out/deep/er/result.json": "data",
    }
    assert r.files["in-1.csv"][1] == b"second3,4\n"
    assert not seen["root"].exists()  # the workspace is gone after the block


@pytest.mark.slow
def test_script_cannot_read_the_workspace_of_another_run(run, backend, settings):
    r = run(
        """
        import os
        def main(top: str):
            mine = os.path.basename(os.path.dirname(os.getcwd()))
            try:
                return {"others": [e for e in os.listdir(top) if e != mine]}
            except OSError as exc:
                return {"error": type(exc).__name__}
        """,
        inputs={"top": str(settings.WORKSPACES_DIR)},
    )
    # rlimit: the folder of runs cannot be listed (a uid per run); ns and bwrap: the
    # folder does not exist inside the sandbox.
    if backend == "rlimit" and os.geteuid() != 0:
        pytest.skip("scripts run as the server's own uid: no isolation between runs")
    expected = {"error": "PermissionError" if backend == "rlimit" else "FileNotFoundError"}
    assert r.result == expected, r.result


def test_limits_for_uses_settings_and_clamps(settings):
    settings.RUN_TIMEOUT_SECONDS = 60
    settings.RUN_TIMEOUT_MAX_SECONDS = 600
    settings.RUN_MEMORY_MB = 512
    settings.RUN_MEMORY_MAX_MB = 1024
    settings.RUN_NETWORK_DEFAULT = False
    base = limits_for()
    assert (base.timeout_seconds, base.memory_mb, base.network, base.cpu_seconds) == (
        60.0,
        512,
        False,
        60,
    )
    custom = limits_for(timeout_seconds=10_000, memory_mb=8192, network=True)
    assert (custom.timeout_seconds, custom.memory_mb, custom.network) == (600.0, 1024, True)
    tiny = limits_for(timeout_seconds=0, memory_mb=1)
    assert tiny.timeout_seconds == 0.1 and tiny.memory_mb == 64 and tiny.cpu_seconds == 1


@pytest.mark.django_db
def test_health_check_and_admin_panel_show_the_sandbox(client, staff_user, settings):
    from executions import health  # the lead imports it in ExecutionsConfig.ready()

    info = health.check_sandbox()
    assert info["ok"] is True and info["backend"] in ("ns", "bwrap", "rlimit")
    assert info["isolating"] is (info["backend"] != "rlimit")
    assert info["rlimits"]["RLIMIT_NPROC"] == settings.RUN_MAX_PROCESSES
    if os.geteuid() == 0:
        assert "one per run" in info["uid"] and info["unprivileged"] is True
    body = client.get("/health/").json()
    assert body["checks"]["sandbox"]["backend"] == info["backend"]

    settings.SANDBOX_BACKEND = "nonsense"
    assert health.check_sandbox()["ok"] is False

    class Request:
        user = staff_user

    panel = health.sandbox_panel(Request())
    assert panel["title"] == "Sandbox"
    assert dict(panel["rows"])["RLIMIT_AS"] == str(settings.RUN_MEMORY_MB * 1024 * 1024)


def test_workspace_dirs_are_reachable_by_the_run_uid(settings):
    from executions.runner.workspace import create_workspace

    ws = create_workspace("x/../y", owner=None, backend="rlimit")
    try:
        assert ws.root.name.startswith("x_y-")
        data_dir = Path(settings.DATA_DIR).resolve()
        inside = [p for p in [ws.root, *ws.root.parents] if p == data_dir or data_dir in p.parents]
        for path in inside:  # what the runner owns; a private parent above is refused clearly
            assert os.stat(path).st_mode & stat.S_IXOTH, path
        assert not os.stat(ws.root).st_mode & stat.S_IROTH  # others cannot list runs
    finally:
        ws.remove()
    assert not ws.root.exists()
    trash = ws.root.with_name(f".trash-{ws.root.name}")
    deadline = time.monotonic() + 5
    while trash.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not trash.exists()


def test_workspace_removal_works_again_in_a_forked_process(settings):
    """The remover thread does not survive fork(): a forked worker starts its own."""
    from executions.runner.workspace import create_workspace

    first = create_workspace("parent", owner=None, backend="ns")
    first.remove()  # starts the parent's remover
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its workspace is really deleted
        code = 1
        try:
            ws = create_workspace("child", owner=None, backend="ns")
            ws.remove()
            trash = ws.root.with_name(f".trash-{ws.root.name}")
            deadline = time.monotonic() + 5
            while trash.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            code = 0 if not trash.exists() and not ws.root.exists() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_sandbox_backend_name_resolves_the_setting(settings):
    from executions.runner import sandbox_backend_name

    settings.SANDBOX_BACKEND = "rlimit"
    assert sandbox_backend_name() == "rlimit"
    settings.SANDBOX_BACKEND = "auto"
    assert sandbox_backend_name() == sandbox.available_backends()[0]
    settings.SANDBOX_BACKEND = "nonsense"
    with pytest.raises(sandbox.SandboxUnavailable):
        sandbox_backend_name()
