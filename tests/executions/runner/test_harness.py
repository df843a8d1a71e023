"""The harness: calling conventions, the result channel, errors, logs and progress."""

import io
import json
import marshal
import os
import subprocess
import sys

import pytest

from executions.runner import InputFile

pytestmark = pytest.mark.slow


def test_typed_function_gets_keyword_arguments_and_defaults(run, backend):
    r = run(
        """
        def main(name: str, count: int = 2, tags: list[str] | None = None) -> dict:
            return {"text": name * count, "tags": tags}
        """,
        inputs={"name": "ab"},
    )
    assert r.status == "succeeded", r.log
    assert r.result == {"text": "abab", "tags": None}
    assert r.exit_code == 0 and r.error_code == ""
    assert r.peak_memory_kb and r.peak_memory_kb < 100_000
    assert r.cpu_time_ms is not None


def test_data_function_gets_the_whole_input(run):
    r = run(
        "def main(data: dict):\n    return {'keys': sorted(data), 'n': data['n'] + 1}\n",
        call_style="data",
        inputs={"n": 1, "z": [1, {"a": None}]},
    )
    assert r.result == {"keys": ["n", "z"], "n": 2}


def test_dates_are_converted_for_annotated_parameters(run):
    r = run(
        """
        import datetime
        def main(day: datetime.date, label: str = "x"):
            return {"weekday": day.weekday(), "type": type(day).__name__, "label": label}
        """,
        inputs={"day": "2024-01-01"},
    )
    assert r.result == {"weekday": 0, "type": "date", "label": "x"}


def test_none_becomes_an_empty_object_and_json_types_round_trip(run):
    assert run("def main():\n    print('side effect')\n").result == {}
    value = {"s": 'q"\\\n\t\u00e9\u2603', "f": 1.5, "i": -3, "b": [True, False, None], "t": (1, 2)}
    r = run(f"def main():\n    return {value!r}\n")
    assert r.result == {**value, "t": [1, 2]}


def test_exception_is_a_failed_run_with_traceback_in_the_log(run, backend):
    r = run("def main():\n    raise ValueError('bad input\\nsecond line')\n")
    assert r.status == "failed"
    assert r.error_code == "SCRIPT_ERROR"
    assert r.error_message == "ValueError: bad input"
    assert "Traceback (most recent call last)" in r.log and 'script.py", line 2' in r.log


def test_non_serialisable_result_fails_cleanly(run):
    r = run("import datetime\ndef main():\n    return {'when': datetime.datetime(2024, 1, 1)}\n")
    assert (r.status, r.error_code) == ("failed", "RESULT_NOT_JSON")
    assert "datetime" in r.error_message
    r = run("def main():\n    return {'x': float('nan')}\n")
    assert r.error_code == "RESULT_NOT_JSON"
    r = run("def main():\n    return {1, 2}\n")
    assert r.error_code == "RESULT_NOT_JSON"


def test_result_over_the_size_limit_fails(run):
    r = run("def main():\n    return {'x': 'a' * 5000}\n", result_bytes=1000)
    assert (r.status, r.error_code) == ("failed", "RESULT_TOO_LARGE")


def test_missing_main_and_syntax_error_fail(run):
    assert run("x = 1\n").error_code == "SCRIPT_ERROR"
    r = run("def main(:\n")
    assert r.error_code == "SCRIPT_ERROR" and "SyntaxError" in r.error_message


def test_stdout_cannot_forge_the_result(run, backend):
    fake = '{"ok": true, "result": {"forged": true}}'
    r = run(
        f"""
        import sys
        def main():
            print({fake!r})
            sys.stdout.flush()
            sys.stderr.write({fake!r})
            return {{"real": True}}
        """
    )
    assert r.result == {"real": True}
    assert fake in r.log
    # A script that prints a fake record and then dies gets no result at all.
    r = run(f"import os\ndef main():\n    print({fake!r})\n    os._exit(0)\n")
    assert r.status == "failed" and r.result is None and r.error_code == "SCRIPT_ERROR"


def test_stdout_and_stderr_are_merged_in_order(run):
    r = run(
        """
        import sys
        for i in range(5):
            print(f"out {i}")
            print(f"err {i}", file=sys.stderr)
        def main():
            return None
        """
    )
    expected = "".join(f"out {i}\nerr {i}\n" for i in range(5))
    assert r.log == expected


def test_command_script_gets_argv_and_its_exit_code(run, backend):
    r = run(
        """
        import sys, os
        print("argv", sys.argv[1:], os.path.basename(sys.argv[0]), __name__)
        with open("out.txt", "w") as fh:
            fh.write(" ".join(sys.argv[1:]))
        """,
        call_style="argv",
        argv=["--name", "x y", "3"],
        filename="cmd.py",
    )
    assert r.status == "succeeded" and r.result is None and r.exit_code == 0
    assert "argv ['--name', 'x y', '3'] cmd.py __main__" in r.log
    assert r.files == {"out.txt": ("document", b"--name x y 3")}

    r = run("import sys\nprint('bye')\nsys.exit(3)\n", call_style="argv")
    assert (r.status, r.exit_code, r.error_code) == ("failed", 3, "SCRIPT_ERROR")
    r = run("raise RuntimeError('boom')\n", call_style="argv")
    assert r.status == "failed" and r.error_message == "RuntimeError: boom"


def test_progress_reports_reach_the_callback(run, backend):
    r = run(
        """
        from scriptorium_progress import report
        def main():
            report(10, "starting")
            report(250, "clamped   to\\n100")
            return {"sent": report(50)}
        """
    )
    assert r.result == {"sent": True}
    assert r.progress == [(10, "starting"), (100, "clamped to 100"), (50, "")]
    assert "starting" not in r.log


@pytest.mark.parametrize(
    "value",
    [
        {"plain": "abc", "quote": 'a"b', "slash": "a\\b", "ctl": "\x00\x1f\n", "del": "\x7f"},
        {"é": "ü☃😀", 2: 2, 1.5: None, True: False, None: "n"},
        ["", [], {}, [[1, -2.25e-9]], 10**30],
    ],
)
def test_harness_json_encoder_matches_json(value):
    from executions.runner import harness

    parts = []
    harness._json(value, parts)
    assert json.loads("".join(parts)) == json.loads(json.dumps(value))


def test_harness_json_encoder_escapes_lone_surrogates_and_refuses_nan():
    from executions.runner import harness

    parts = []
    harness._json({"s": "a\ud800b"}, parts)
    assert "".join(parts) == '{"s":"a\\ud800b"}'
    assert json.loads("".join(parts)) == {"s": "a\ud800b"}
    with pytest.raises(ValueError):
        harness._json(float("nan"), [])
    with pytest.raises(TypeError):
        harness._json({(1,): 1}, [])


def test_harness_launcher_uses_the_precompiled_module_and_env_site_dirs(tmp_path, settings):
    """The launcher imports the harness from its .pyc; an environment folder with a .pth
    file goes through site (the .pth's path is added), a plain one is just appended."""
    from executions.runner.harness import LAUNCHER
    from executions.runner.run import support_dir

    support = support_dir(str(tmp_path / "data"))
    assert f"_scriptorium_harness.{sys.implementation.cache_tag}.pyc" in {
        p.name for p in (support / "__pycache__").iterdir()
    }
    with_pth, plain, extra, work = (tmp_path / n for n in ("with_pth", "plain", "extra", "work"))
    for path in (with_pth, plain, extra, work):
        path.mkdir()
    (with_pth / "extra.pth").write_text(f"{extra}\n")
    (extra / "from_pth.py").write_text("VALUE = 'pth'\n")
    (plain / "from_plain.py").write_text("VALUE = 'plain'\n")
    (work / "job.py").write_text(
        "import sys\nimport from_pth, from_plain\n"
        "def main():\n"
        "    return {'v': [from_pth.VALUE, from_plain.VALUE], 'path': sys.path[:2]}\n"
    )
    result_r, result_w = os.pipe()
    progress_r, progress_w = os.pipe()
    control = {
        "workdir": str(work),
        "support_dir": str(support),
        "site_dirs": [str(with_pth), str(plain), str(tmp_path / "missing")],
        "prefix": str(tmp_path),
        "script": str(work / "job.py"),
        "call_style": "kwargs",
        "inputs": {},
        "argv": [],
        "result_fd": result_w,
        "progress_fd": progress_w,
        "result_bytes": 10_000,
        "rlimits": [],
    }
    control_fd = os.memfd_create("control")
    os.write(control_fd, marshal.dumps(control))
    os.lseek(control_fd, 0, os.SEEK_SET)
    cmd = [sys.executable, "-v", "-I", "-S", "-u", "-c", LAUNCHER, str(support), str(control_fd)]
    try:
        proc = subprocess.run(
            cmd,
            pass_fds=(result_w, progress_w, control_fd),
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        for fd in (result_w, progress_w, control_fd):
            os.close(fd)
    with os.fdopen(result_r, "rb") as fh:
        record = json.loads(fh.read())
    os.close(progress_r)
    assert proc.returncode == 0, proc.stderr
    assert record["ok"] is True, record
    assert record["result"]["v"] == ["pth", "plain"]
    assert record["result"]["path"] == [str(work), str(support)]
    pyc = support / "__pycache__" / f"_scriptorium_harness.{sys.implementation.cache_tag}.pyc"
    assert f"code object from '{pyc}'" in proc.stderr.decode()


# --- As under `python script.py` (issue 9) --------------------------------------------


def output(r) -> str:
    """What the script itself wrote (the log without the runner's own lines, such as
    those of the base environment's build in a session's first run)."""
    return "".join(
        line for line in r.log.splitlines(keepends=True) if not line.startswith("[scriptorium]")
    )


def test_site_builtins_exist_and_exit_main_ends_with_its_code(run):
    """The harness runs with -S, yet exit, quit, help, copyright, credits and license
    are there, as site makes them; exit(main()) ends with main's return value."""
    r = run(
        """
        import sys
        print(repr(exit), "|", repr(quit))
        print(type(help).__name__, "|", repr(help)[:12])
        print("Python Software Foundation" in repr(copyright), "CWI" in repr(credits))
        print("license" in repr(license))
        help(len)
        def main():
            return int(sys.argv[1])
        exit(main())
        """,
        call_style="argv",
        argv=["3"],
        filename="report.py",
    )
    assert "Use exit() or Ctrl-D (i.e. EOF) to exit | Use quit() or Ctrl-D" in r.log, r.log
    assert "_Helper | Type help()" in r.log
    assert "True True\nTrue\n" in r.log
    assert "len(obj, /)" in r.log  # help() printed pydoc's text
    assert (r.status, r.exit_code, r.error_code) == ("failed", 3, "SCRIPT_ERROR")
    assert r.error_message == "The script exited with code 3."
    r = run("print('before')\nquit()\nprint('after')\n", call_style="argv")
    assert (r.status, r.exit_code, output(r)) == ("succeeded", 0, "before\n")
    r = run("exit(0)\n", call_style="argv")
    assert (r.status, r.exit_code) == ("succeeded", 0)


def test_exit_with_a_message_prints_it_and_exits_with_1(run):
    r = run("import sys\nsys.exit('error: no input files')\n", call_style="argv")
    assert (r.status, r.exit_code, output(r)) == ("failed", 1, "error: no input files\n")
    r = run("exit('bye')\n", call_style="argv")
    assert (r.exit_code, output(r)) == (1, "bye\n")
    r = run("raise SystemExit(258)\n", call_style="argv")
    assert r.exit_code == 2  # the low byte, as the parent of `python script.py` sees it


def test_command_script_is_main_with_its_file_and_name(run, backend):
    r = run(
        """
        import os, sys
        import __main__
        assert __name__ == "__main__" and __main__.__dict__ is globals()
        assert __spec__ is None and __builtins__ is __import__("builtins")
        assert os.path.isabs(__file__) and os.path.realpath(__file__) == __file__
        assert __file__ == os.path.join(os.getcwd(), "report.py"), __file__
        assert sys.argv == ["report.py", "--x", "1"], sys.argv
        assert open(__file__).read().lstrip().startswith("import os")
        print("checked", sys.path[0] == os.getcwd())
        """,
        call_style="argv",
        argv=["--x", "1"],
        filename="report.py",
    )
    assert (r.status, output(r)) == ("succeeded", "checked True\n"), r.log


def test_function_script_module_is_named_after_its_file(run):
    """A function script is loaded as `import report` would load it: its __main__ block
    (kept for running it by hand) does not run, and main gets the inputs."""
    r = run(
        """
        import sys
        def main(name: str = "x") -> dict:
            me = sys.modules[__name__]
            return {
                "name": __name__, "same": me.main is main, "spec": __spec__.name,
                "argv": sys.argv, "input": name,
            }
        if __name__ == "__main__":
            print("the __main__ block ran")
            raise SystemExit(5)
        """,
        inputs={"name": "y"},
        filename="report.py",
    )
    assert r.status == "succeeded", r.log
    assert r.result == {
        "name": "report",
        "same": True,
        "spec": "report",
        "argv": ["report.py"],
        "input": "y",
    }
    assert "__main__ block" not in r.log
    # A name that a module already loaded has, or that has a dot, is not used.
    r = run("def main():\n    return {'name': __name__}\n", filename="marshal.py")
    assert r.result == {"name": "__script__"}
    r = run("def main():\n    return {'name': __name__}\n", filename="v1.2.py")
    assert r.result == {"name": "__script__"}


def _frames(log: str) -> list[str]:
    return [line.strip() for line in log.splitlines() if line.strip().startswith("File ")]


def test_tracebacks_show_the_script_file_name_and_no_host_path(run, backend, runner_data_dir):
    """No data dir, support dir or harness in what a user sees: an error in the script
    starts at the script's own frame, named "report.py"."""
    host = str(runner_data_dir)
    r = run(
        """
        import json

        def parse(text):
            return json.loads(text)

        def main(text: str = "{") -> dict:
            return parse(text)
        """,
        filename="report.py",
    )
    assert r.error_code == "SCRIPT_ERROR" and r.error_message.startswith("JSONDecodeError")
    frames = _frames(r.log)
    assert frames[0] == 'File "report.py", line 8, in main', r.log
    assert frames[1] == 'File "report.py", line 5, in parse'
    assert "return parse(text)" in r.log  # the source line is shown
    assert host not in r.log and "harness" not in r.log

    r = run("x = 1\nraise ValueError('top')\n", call_style="argv", filename="cmd.py")
    assert _frames(r.log) == ['File "cmd.py", line 2, in <module>'], r.log
    assert output(r).startswith("Traceback (most recent call last):\n")

    r = run("def main(:\n    pass\n", filename="report.py")
    assert output(r).startswith('  File "report.py", line 1\n    def main(:\n'), r.log
    assert r.error_message == "SyntaxError: invalid syntax (report.py, line 1)"
    assert host not in r.log + r.error_message and "harness" not in r.log

    r = run("def main(a: int):\n    return {}\n", inputs={"b": 1}, filename="report.py")
    assert r.error_message == "TypeError: main() got an unexpected keyword argument 'b'"
    assert output(r) == "TypeError: main() got an unexpected keyword argument 'b'\n", r.log

    helper = InputFile("helper.py", lambda: io.BytesIO(b"def boom():\n    1 / 0\n"))
    r = run(
        "import helper\n\ndef main():\n    helper.boom()\n",
        input_files=[helper],
        filename="report.py",
    )
    assert _frames(r.log) == [
        'File "report.py", line 4, in main',
        'File "helper.py", line 2, in boom',
    ], r.log
    assert host not in r.log


def test_threads_and_atexit_finish_before_the_outcome(run):
    """As at interpreter exit: non-daemon threads are waited for, then atexit runs."""
    r = run(
        """
        import atexit, threading, time

        def work():
            time.sleep(0.3)
            with open("late.txt", "w") as fh:
                fh.write("written by a thread")
            print("thread done")

        atexit.register(print, "atexit ran")
        threading.Thread(target=work).start()
        print("main done")
        """,
        call_style="argv",
    )
    assert r.status == "succeeded", r.log
    assert output(r) == "main done\nthread done\natexit ran\n"
    assert r.files == {"late.txt": ("document", b"written by a thread")}


def test_input_gets_eof_and_a_forked_child_sends_no_outcome(run):
    r = run(
        """
        import os
        try:
            input("name? ")
        except EOFError:
            print("eof")
        pid = os.fork()
        if pid:
            os.waitpid(pid, 0)
            print("parent")
        else:
            print("child")
        """,
        call_style="argv",
    )
    assert (r.status, r.exit_code) == ("succeeded", 0), r.log
    assert output(r) == "name? eof\nchild\nparent\n"


def test_function_script_can_use_spawned_processes(run, backend):
    """multiprocessing's spawn finds a function script's functions by importing it."""
    r = run(
        """
        import multiprocessing, sys

        def square(n):
            return n * n

        def main(n: int = 4) -> dict:
            with multiprocessing.get_context("spawn").Pool(2) as pool:
                squares = pool.map(square, range(n))
            return {"squares": squares, "B": sys.flags.dont_write_bytecode}
        """,
        filename="report.py",
        timeout_seconds=60,
    )
    assert r.status == "succeeded", r.log
    assert r.result["squares"] == [0, 1, 4, 9]
    # The children import report.py; no __pycache__/report.*.pyc among the outputs:
    # spawned children copy the interpreter's flags, so the harness runs with -B (-I
    # makes it ignore PYTHONDONTWRITEBYTECODE).
    assert r.result["B"] == 1 and r.files == {}


def test_subprocess_uses_the_environment_python(run):
    """sys.executable is the environment's own python: a child started with it is in
    the same environment (the same sys.prefix, set by its site)."""
    r = run(
        """
        import subprocess, sys
        child = subprocess.run(
            [sys.executable, "-c", "import sys; print(sys.prefix)"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        print(child == sys.prefix, sys.executable.startswith(sys.prefix + "/bin/python"))
        """,
        call_style="argv",
    )
    assert (r.status, output(r)) == ("succeeded", "True True\n"), r.log
