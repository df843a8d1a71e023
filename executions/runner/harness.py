"""The program the sandbox runs: ``python -I -S -u -c LAUNCHER SUPPORT_DIR CONTROL_FD``,
the launcher importing this module from SUPPORT_DIR (from its precompiled .pyc) and
calling ``main(CONTROL_FD)``.

It runs as the script's interpreter, imports nothing heavy (startup time is most of a
light run: ``posix``, not ``os``; ``site`` only when an environment has .pth files),
and in this order: applies the rlimits to itself, adds the environment's
site-packages, loads the script from the workspace and calls it. The control record is
a ``marshal`` dict written by the runner (trusted input) into a memory file whose fd
it passes. The outcome goes to a pipe
whose fd the runner passed (``result_fd``), never to stdout, so nothing the script
prints can forge it: one JSON object ``{"ok": true, "result": ...}`` or
``{"ok": false, "code": "...", "message": "..."}``.
"""

import marshal
import posix as os  # the C module behind os: what the harness needs, without os.py's imports
import sys

LAUNCHER = (
    "import sys;sys.path[:0]=sys.argv[1:2];import _scriptorium_harness as h;h.main(sys.argv[2])"
)
_ESCAPES = {}
_SPECIAL = frozenset(map(chr, range(32))) | {'"', "\\"}


def _escapes():
    """The str.translate table for JSON strings (built on first need: 2,000 entries)."""
    if not _ESCAPES:
        _ESCAPES.update({i: f"\\u{i:04x}" for i in range(32)})
        _ESCAPES.update({34: '\\"', 92: "\\\\"})
        _ESCAPES.update({i: f"\\u{i:04x}" for i in range(0xD800, 0xE000)})  # lone surrogates
    return _ESCAPES


def _quote(text):
    if text.isascii() and _SPECIAL.isdisjoint(text):
        return '"' + text + '"'
    return '"' + text.translate(_escapes()) + '"'


def _json(value, out):
    """Append the JSON text of ``value`` to ``out`` (a tiny encoder: ``import json``
    alone costs as much as starting Python). Raises TypeError/ValueError like json."""
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not allowed in JSON")
        out.append(float.__repr__(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _json(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            if isinstance(key, str):
                pass
            elif key is None or isinstance(key, (bool, int, float)):
                key = _json_key(key)
            else:
                raise TypeError(f"keys must be str, int, float, bool or None, not {type(key)}")
            out.append(_quote(key) + ":")
            _json(item, out)
        out.append("}")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_key(key):
    parts = []
    _json(key, parts)
    return parts[0]


class _Channel:
    def __init__(self, fd):
        self.fd = fd

    def send(self, record):
        parts = []
        _json(record, parts)
        data = "".join(parts).encode("utf-8", "surrogatepass")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        os.close(self.fd)
        self.fd = -1


def _peak_kb():
    """This process's peak resident memory (VmHWM, which starts afresh at exec,
    unlike ru_maxrss that keeps the forking server's size)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _apply_limits(limits):
    import resource

    for name, soft, hard in limits:
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _error(exc):
    """(code, one clean line) for an exception raised by the script."""
    if isinstance(exc, MemoryError):
        return "MEMORY_LIMIT", "The script ran out of memory (memory limit reached)."
    if isinstance(exc, OSError) and exc.errno == 27:  # EFBIG: RLIMIT_FSIZE
        return "FILE_LIMIT", "The script wrote a file bigger than the size limit."
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return "SCRIPT_ERROR", line[:500]


def _print_traceback():
    try:
        import traceback

        traceback.print_exc()
    except BaseException:  # noqa: BLE001 - even a MemoryError must not hide the result
        sys.stderr.write("Traceback unavailable\n")
    sys.stderr.flush()


def _convert_dates(main, inputs):
    """Turn ISO strings into date/datetime for parameters annotated with them."""
    annotations = getattr(main, "__annotations__", None) or {}
    for name, annotation in annotations.items():
        value = inputs.get(name)
        if isinstance(value, str) and getattr(annotation, "__module__", "") == "datetime":
            if annotation.__name__ in ("date", "datetime", "time"):
                inputs[name] = annotation.fromisoformat(value)
    return inputs


def _run_function(control, module_globals):
    main = module_globals.get("main")
    if not callable(main):
        return {"ok": False, "code": "SCRIPT_ERROR", "message": "The script has no main()."}
    inputs = dict(control["inputs"])
    if control["call_style"] == "data":
        value = main(inputs)
    else:
        value = main(**_convert_dates(main, inputs))
    if value is None:
        value = {}
    parts = []
    try:
        _json(value, parts)
    except (TypeError, ValueError, RecursionError) as exc:
        message = f"The result is not JSON-serialisable: {exc}"[:500]
        sys.stderr.write(f"[scriptorium] {message}\n")
        return {"ok": False, "code": "RESULT_NOT_JSON", "message": message}
    size = sum(len(p) for p in parts)
    if size > control["result_bytes"]:
        message = f"The result is {size} bytes, over the limit of {control['result_bytes']}."
        return {"ok": False, "code": "RESULT_TOO_LARGE", "message": message}
    return {"ok": True, "result": value}


def main(control_fd):
    with open(int(control_fd), "rb") as fh:  # closed at once: the script never sees it
        control = marshal.load(fh)
    os.chdir(control["workdir"])
    channel = _Channel(control["result_fd"])
    os.set_inheritable(channel.fd, False)  # the script's own children never get it
    os.set_inheritable(control["progress_fd"], False)
    _apply_limits(control["rlimits"])
    sys.path[:] = [control["workdir"]] + [p for p in sys.path if p != control["workdir"]]
    if control["support_dir"] not in sys.path:
        sys.path.insert(1, control["support_dir"])
    sys.prefix = sys.exec_prefix = control["prefix"]  # what site.venv() would set
    for path in control["site_dirs"]:
        try:
            pth = any(name.endswith(".pth") for name in os.listdir(path))
        except OSError:
            continue
        if pth:  # .pth files need site's processing; a plain folder is just a path entry
            import site

            site.addsitedir(path)
        elif path not in sys.path:
            sys.path.append(path)
    script = control["script"]
    command = control["call_style"] == "argv"
    module = type(sys)("__main__" if command else "__script__")
    module.__file__ = script
    module.__builtins__ = __builtins__
    sys.modules[module.__name__] = module
    sys.argv = [script, *control["argv"]]
    try:
        with open(script, "rb") as fh:
            code = compile(fh.read(), script, "exec")
        exec(code, module.__dict__)  # noqa: S102 - running the script is the point
        if command:
            record = {"ok": True, "exit": 0}
        else:
            record = _run_function(control, module.__dict__)
    except SystemExit as exc:
        status = exc.code
        exit_code = 0 if status is None else status if isinstance(status, int) else 1
        if not isinstance(status, (int, type(None))):
            sys.stderr.write(f"{status}\n")
        if command and exit_code == 0:
            record = {"ok": True, "exit": 0}
        elif command:
            message = f"The script exited with code {exit_code}."
            record = {"ok": False, "code": "SCRIPT_ERROR", "message": message, "exit": exit_code}
        else:
            message = f"The script called sys.exit({status!r}) instead of returning a result."
            record = {"ok": False, "code": "SCRIPT_ERROR", "message": message[:500]}
    except BaseException as exc:  # noqa: BLE001 - every script failure is reported
        _print_traceback()
        code_, message = _error(exc)
        record = {"ok": False, "code": code_, "message": message}
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001, S110 - a closed stdout must not lose the result
        pass
    record["peak_kb"] = _peak_kb()
    try:
        import resource

        usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        record["cpu_ms"] = int(sum(u.ru_utime + u.ru_stime for u in usage) * 1000)
    except BaseException:  # noqa: BLE001, S110 - the outcome matters more than its cost
        pass
    channel.send(record)
    os._exit(record.get("exit", 0 if record["ok"] else 1) & 0xFF)


if __name__ == "__main__":
    main(sys.argv[1])  # CONTROL_FD
