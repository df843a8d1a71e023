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

What the script sees is what ``python report.py`` gives it (the call rules themselves
are decided by ``scripts.inspection``):

- a **command script** (call_style "argv") runs as ``__main__`` (also
  ``sys.modules["__main__"]``, ``__spec__`` None), so its ``if __name__ == "__main__":``
  block runs; ``exit(3)`` / ``sys.exit(3)`` end the run with exit code 3,
  ``sys.exit("msg")`` prints msg and exits with 1;
- a **function script** (call_style "data" or "kwargs") is loaded as if imported: its
  module is named after the file (``report.py`` -> ``report``; ``__script__`` when that
  name is unusable: a dot in it, or a module already loaded), so an
  ``if __name__ == "__main__":`` block (kept for running the file by hand) does not
  run; then ``main`` is called (``main(data)`` or ``main(**inputs)``; ``main()`` when
  it takes no parameters) and its return value is the result. The name makes
  multiprocessing's spawn work: a child finds the script's functions by importing it;
- both: ``exit``, ``quit``, ``help``, ``copyright``, ``credits``, ``license`` as ``site``
  makes them; ``__file__`` the script's absolute path; ``sys.argv[0]`` its file name
  (``report.py``); the working folder first on ``sys.path``; code compiled under the
  file name alone, so tracebacks and warnings say ``File "report.py", line 3``; the
  traceback of an error leaves out the harness's own frames and shortens host folders
  (workspace, environment, support dir); non-daemon threads are waited for and
  ``atexit`` functions run (logging flushes, multiprocessing joins its children) before
  the outcome is sent, as at interpreter exit.
"""

import builtins
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


class _SiteText:
    """``copyright``, ``credits`` and ``license``: site's own objects, made by
    ``site.setcopyright()`` when first shown (they import ``os``, which a light run
    does not need)."""

    def __init__(self, name):
        self._name = name
        self._real = None

    def _printer(self):
        if self._real is None:
            import site

            site.setcopyright()  # puts site's three objects in builtins
            self._real = getattr(builtins, self._name)
        return self._real

    def __repr__(self):
        return repr(self._printer())

    def __call__(self):
        return self._printer()()


def _install_site_builtins():
    """Add the builtins ``site`` adds (the harness runs with -S): ``exit`` and ``quit``
    (site's Quitter: closes stdin, raises SystemExit), ``help`` (pydoc, imported on
    first use), ``copyright``, ``credits``, ``license``. About 0.1 ms, where
    ``import site`` costs 2 ms."""
    import _sitebuiltins

    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.help = _sitebuiltins._Helper()
    for name in ("copyright", "credits", "license"):
        setattr(builtins, name, _SiteText(name))


def _error(exc):
    """(code, one clean line) for an exception raised by the script."""
    if isinstance(exc, MemoryError):
        return "MEMORY_LIMIT", "The script ran out of memory (memory limit reached)."
    if isinstance(exc, OSError) and exc.errno == 27:  # EFBIG: RLIMIT_FSIZE
        return "FILE_LIMIT", "The script wrote a file bigger than the size limit."
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return "SCRIPT_ERROR", line[:500]


def _without_harness_frames(exc, seen=None):
    """Drop the harness's own frames from the start of the tracebacks of ``exc`` and
    of the exceptions chained to it: what is left starts at the script's code (nothing
    at all for an error in the call of main itself, as for a SyntaxError)."""
    seen = set() if seen is None else seen
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals is globals():
        tb = tb.tb_next
    exc.__traceback__ = tb
    _without_harness_frames(exc.__cause__, seen)
    _without_harness_frames(exc.__context__, seen)
    for inner in getattr(exc, "exceptions", None) or ():  # ExceptionGroup
        _without_harness_frames(inner, seen)


def _shorten_paths(te, folders, seen=None):
    """Rewrite the file names of a TracebackException (and its chain) that start with
    one of ``folders`` ({prefix: shown as}); the source lines are already read."""
    seen = set() if seen is None else seen
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    for frame in te.stack:
        frame.filename = _shorten(frame.filename, folders)
    if getattr(te, "filename", None):  # SyntaxError
        te.filename = _shorten(te.filename, folders)
    _shorten_paths(te.__cause__, folders, seen)
    _shorten_paths(te.__context__, folders, seen)
    for inner in getattr(te, "exceptions", None) or ():
        _shorten_paths(inner, folders, seen)


def _shorten(filename, folders):
    for prefix, shown in folders.items():
        if filename.startswith(prefix):
            return shown + filename[len(prefix) :]
    return filename


def _print_traceback(exc, folders):
    """Print the traceback of ``exc`` to stderr as Python would at exit, but starting
    at the script's code and with host folders shortened (``folders``)."""
    try:
        import traceback

        _without_harness_frames(exc)
        te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
        _shorten_paths(te, folders)
        sys.stderr.write("".join(te.format()))
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


def _exit_record(status, command):
    """The record for a SystemExit(status) that ended the script: as at interpreter
    exit, None is 0, an int is its exit code, anything else is printed and is 1."""
    if status is None:
        exit_code = 0
    elif isinstance(status, int):
        exit_code = status & 0xFF  # what the process's parent sees
    else:
        sys.stderr.write(f"{status}\n")
        exit_code = 1
    if command and exit_code == 0:
        return {"ok": True, "exit": 0}
    if command:
        message = f"The script exited with code {exit_code}."
        return {"ok": False, "code": "SCRIPT_ERROR", "message": message, "exit": exit_code}
    message = f"The script called sys.exit({status!r}) instead of returning a result."
    return {"ok": False, "code": "SCRIPT_ERROR", "message": message[:500]}


def _module_name(filename, command):
    """``__main__`` for a command script; for a function script the file's name
    without ``.py``, as an import would name it, unless that name cannot be imported
    (a dot in it) or is taken by a module already loaded (then ``__script__``)."""
    if command:
        return "__main__"
    name = filename[:-3] if filename.endswith(".py") else filename
    if not name or "." in name or name in sys.modules:
        return "__script__"
    return name


def _load_script(control, command):
    """(module, code): the script's module, registered in sys.modules with the
    attributes Python gives a script or an imported module, and its code compiled
    under the bare file name. Raises SyntaxError (and ValueError for NUL bytes)."""
    from _frozen_importlib_external import SourceFileLoader, spec_from_file_location

    path = control["script"]
    filename = path.rpartition("/")[2]
    name = _module_name(filename, command)
    module = type(sys)(name)
    module.__file__ = path
    module.__loader__ = SourceFileLoader(name, path)  # lets tracebacks find the source
    if command:
        module.__builtins__ = builtins  # a script's __main__ gets the module
        module.__cached__ = None
    else:
        module.__builtins__ = builtins.__dict__
        module.__spec__ = spec_from_file_location(name, path, loader=module.__loader__)
    sys.modules[name] = module
    sys.argv = [filename, *control["argv"]]
    with open(path, "rb") as fh:
        source = fh.read()
    return module, compile(source, filename, "exec")


def _at_exit():
    """What the interpreter does at exit before it ends: wait for the non-daemon
    threads, then run the atexit functions (both print their own errors)."""
    threading = sys.modules.get("threading")
    if threading is not None and hasattr(threading, "_shutdown"):
        try:
            threading._shutdown()
        except BaseException:  # noqa: BLE001 - a KeyboardInterrupt-like stop still reports
            pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001, S110 - errors are printed by atexit itself
        pass


def _prepare(control):
    """Working folder, channels, limits and the interpreter's paths, before any of
    the script's code runs."""
    os.chdir(control["workdir"])
    os.set_inheritable(control["result_fd"], False)  # the script's children never get it
    os.set_inheritable(control["progress_fd"], False)
    _apply_limits(control["rlimits"])
    if control.get("relay"):  # bwrap, network allowed: the way out is the policy proxy
        import netrelay  # from the support dir (sys.path[1] at launch)

        netrelay.serve(control["relay"]["socket"], control["relay"]["port"])
    _prepare_paths(control)
    _install_site_builtins()


def _prepare_paths(control):
    """The interpreter's paths as ``python`` in the environment has them (also what a
    warm template sets up once before its imports)."""
    sys.dont_write_bytecode = True  # PYTHONDONTWRITEBYTECODE, which -I ignores
    sys.path[:] = [control["workdir"]] + [p for p in sys.path if p != control["workdir"]]
    if control["support_dir"] not in sys.path:
        sys.path.insert(1, control["support_dir"])
    sys.prefix = sys.exec_prefix = control["prefix"]  # what site.venv() would set
    if not sys.executable:  # what subprocess and multiprocessing start
        sys.executable = control["prefix"] + "/bin/python"
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


def main(control_fd):
    with open(int(control_fd), "rb") as fh:  # closed at once: the script never sees it
        control = marshal.load(fh)
    pid = os.getpid()
    channel = _Channel(control["result_fd"])
    _prepare(control)
    command = control["call_style"] == "argv"
    folders = {
        control["workdir"].rstrip("/") + "/": "",
        control["support_dir"].rstrip("/") + "/": "",
        control["prefix"].rstrip("/") + "/": "<env>/",
    }
    try:
        module, code = _load_script(control, command)
        exec(code, module.__dict__)  # noqa: S102 - running the script is the point
        if command:
            record = {"ok": True, "exit": 0}
        else:
            record = _run_function(control, module.__dict__)
    except SystemExit as exc:
        record = _exit_record(exc.code, command)
    except BaseException as exc:  # noqa: BLE001 - every script failure is reported
        _print_traceback(exc, folders)
        code_, message = _error(exc)
        record = {"ok": False, "code": code_, "message": message}
    _at_exit()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001, S110 - a closed stdout must not lose the result
        pass
    status = record.get("exit", 0 if record["ok"] else 1) & 0xFF
    if os.getpid() != pid:  # a child the script forked came back here: it reports nothing
        os._exit(status)
    # the exit status, named: a warm run's server may take the run as ended when this
    # record arrives and the result channel closes (execute.watch), not when the exit,
    # slow for a process forked from a large template, is over
    record["exit"] = status
    record["peak_kb"] = _peak_kb()
    try:
        import resource

        usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        record["cpu_ms"] = int(sum(u.ru_utime + u.ru_stime for u in usage) * 1000)
    except BaseException:  # noqa: BLE001, S110 - the outcome matters more than its cost
        pass
    channel.send(record)
    os._exit(status)


if __name__ == "__main__":
    main(sys.argv[1])  # CONTROL_FD
