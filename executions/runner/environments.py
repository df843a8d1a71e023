"""Per-script Python environments: one virtualenv per set of requirements, in
``ENVS_DIR/<hash>``, built once with uv (``python -m venv`` + pip without it), shared
by every run that asks for the same requirements. The server's own environment is
never touched. Scripts without requirements share the base environment (a plain venv).

A build happens under a file lock (ten runs asking at once make one build), in a
temporary directory renamed into place when complete and verified (its packages'
top-level modules import), so a half-built environment is never used.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from filelock import FileLock, Timeout

from config.errors import ApplicationError

from .workspace import ensure_traversable, remove_tree

READY = ".scriptorium-ready"
LAST_USED = ".scriptorium-last-used"
LOG_CAP = 64 * 1024  # installer output sent to the run's log, at most
_VERIFY = r"""
import importlib, importlib.metadata as md, json, sys
names = json.loads(sys.argv[1])
failed = []
for name in names:
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        failed.append(f"{name}: not installed"); continue
    tops = (dist.read_text("top_level.txt") or "").split()
    if not tops:
        files = [str(f) for f in (dist.files or [])]
        tops = sorted({f.split("/")[0].removesuffix(".py") for f in files
                       if f.endswith(".py") and ".dist-info" not in f and ".." not in f})
    for top in tops:
        if top.startswith("_") or not top.isidentifier():
            continue
        try:
            importlib.import_module(top)
        except Exception as exc:
            failed.append(f"{name} ({top}): {type(exc).__name__}: {exc}")
print(json.dumps(failed))
"""


class EnvironmentBuildFailed(ApplicationError):
    def __init__(self, message: str, output: str = ""):
        super().__init__("DEPENDENCY_INSTALL_FAILED", message, {"output": output[-4000:]})
        self.output = output


def normalise(requirements: list[str]) -> list[str]:
    """Sorted, de-duplicated, whitespace-free requirement strings. Raises
    EnvironmentBuildFailed for anything that is not a plain requirement from the index
    (a direct reference ``name @ url``, an option): the installer runs on the server."""
    from scripts.inspection.requirements import requirement_name

    bad = [r for r in requirements if r and r.strip() and requirement_name(r) is None]
    if bad:
        raise EnvironmentBuildFailed(
            f"Not installed: {', '.join(repr(b) for b in bad[:5])}: only requirements from the "
            "package index are installed (no 'name @ address', no options)."
        )
    return sorted({re.sub(r"\s+", "", r) for r in requirements if r and r.strip()})


def base_python() -> str:
    """The interpreter environments are made from (RUN_BASE_PYTHON, else this one)."""
    return settings.RUN_BASE_PYTHON or sys.executable


def environment_key(requirements: list[str]) -> str:
    """The directory name for these requirements on this base interpreter and index
    settings (a change to any of them makes a new environment)."""
    base = os.path.realpath(base_python())
    payload = json.dumps([normalise(requirements), base, settings.ENVS_INSTALL_ARGS])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def environment_dir(requirements: list[str]) -> Path:
    return Path(settings.ENVS_DIR) / environment_key(requirements)


def site_packages(env_dir: Path) -> list[Path]:
    return sorted(env_dir.glob("lib/python3*/site-packages"))


def base_prefix(env_dir: Path) -> Path | None:
    """The prefix of the interpreter the environment was made from (from pyvenv.cfg)."""
    try:
        for line in (env_dir / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return Path(value.strip()).parent
    except OSError:
        pass
    return None


def _uv() -> str | None:
    here = Path(sys.executable).parent / "uv"
    return str(here) if here.exists() else shutil.which("uv")


def ensure_environment(
    requirements: list[str], *, on_log: Callable[[str], None] | None = None
) -> Path:
    """Python executable of the environment for these requirements, built once
    (concurrent callers wait on the lock and reuse the result). Raises
    EnvironmentBuildFailed (code DEPENDENCY_INSTALL_FAILED) with the installer's
    output, which also goes to ``on_log``."""
    reqs = normalise(requirements)
    env_dir = environment_dir(reqs)
    python = env_dir / "bin" / "python"
    if (env_dir / READY).exists():
        _touch(env_dir)
        return python
    ensure_traversable(Path(settings.ENVS_DIR))
    lock = FileLock(str(env_dir) + ".lock")
    try:
        with lock.acquire(timeout=settings.ENVS_BUILD_TIMEOUT_SECONDS + 60):
            if not (env_dir / READY).exists():
                _build(reqs, env_dir, on_log or (lambda _text: None))
    except Timeout:
        raise EnvironmentBuildFailed("Timed out waiting for another build of this environment.")
    _touch(env_dir)
    return python


def _touch(env_dir: Path) -> None:
    try:
        (env_dir / LAST_USED).touch()
    except OSError:
        pass


def _build(reqs: list[str], env_dir: Path, on_log: Callable[[str], None]) -> None:
    started = time.monotonic()
    label = ", ".join(reqs) or "no requirements (base environment)"
    on_log(f"[scriptorium] Building environment {env_dir.name}: {label}\n")
    tmp = env_dir.with_name(f".build-{env_dir.name}-{os.getpid()}")
    remove_tree(tmp)
    output: list[str] = []
    try:
        _make_venv(tmp, output)
        if reqs:
            _install(tmp, reqs, output)
            failed = _verify(tmp, reqs, output)
            if failed:
                output.append("Import check failed:\n" + "\n".join(failed) + "\n")
                raise EnvironmentBuildFailed(f"Installed packages do not import: {failed[0]}")
        _make_readable(tmp)
        (tmp / READY).write_text(json.dumps({"requirements": reqs, "built_at": time.time()}))
        remove_tree(env_dir)
        os.rename(tmp, env_dir)
    except EnvironmentBuildFailed as exc:
        text = "".join(output)
        exc.output = text
        exc.details = {"output": text[-4000:]}
        on_log(_cap(text))
        on_log(f"[scriptorium] Environment build failed: {exc.message}\n")
        remove_tree(tmp)
        raise
    except BaseException:
        remove_tree(tmp)
        raise
    on_log(f"[scriptorium] Environment ready in {time.monotonic() - started:.1f} s\n")


def _cap(text: str) -> str:
    if len(text) <= LOG_CAP:
        return text
    return "[scriptorium] (installer output shortened)\n" + text[-LOG_CAP:]


def _run(cmd: list[str], output: list[str], what: str, **kwargs) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    for key in ("UV_CACHE_DIR", "UV_INDEX_URL", "PIP_INDEX_URL", "SSL_CERT_FILE", "XDG_CACHE_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=settings.ENVS_BUILD_TIMEOUT_SECONDS,
            env=env,
            **kwargs,
        )
    except subprocess.TimeoutExpired as exc:
        output.append((exc.output or b"").decode("utf-8", "replace"))
        raise EnvironmentBuildFailed(f"{what} took longer than the build timeout.")
    except OSError as exc:
        raise EnvironmentBuildFailed(f"{what} could not start: {exc}")
    output.append(proc.stdout.decode("utf-8", "replace"))
    if proc.returncode:
        last = [line for line in output[-1].splitlines() if line.strip()][-1:] or [""]
        raise EnvironmentBuildFailed(f"{what} failed: {last[0][:300]}".rstrip(": "))


def _make_venv(target: Path, output: list[str]) -> None:
    uv = _uv()
    if uv:
        cmd = [uv, "venv", "--quiet", "--relocatable", "--python", base_python(), str(target)]
        _run(cmd + ["--no-python-downloads"], output, "Creating the virtualenv")
    else:
        _run([base_python(), "-m", "venv", str(target)], output, "Creating the virtualenv")


def _install(target: Path, reqs: list[str], output: list[str]) -> None:
    python = str(target / "bin" / "python")
    extra = list(settings.ENVS_INSTALL_ARGS)
    uv = _uv()
    if uv:
        cmd = [uv, "pip", "install", "--python", python, *extra]
        if not settings.ENVS_ALLOW_SOURCE_BUILDS:
            cmd.append("--no-build")
    else:
        cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", *extra]
        if not settings.ENVS_ALLOW_SOURCE_BUILDS:
            cmd += ["--only-binary", ":all:"]
    _run([*cmd, "--", *reqs], output, "Installing " + ", ".join(reqs))


def _verify(target: Path, reqs: list[str], output: list[str]) -> list[str]:
    """Import every installed requirement's top-level modules inside the sandbox, as
    a run would (their code must not run as root nor see the server), with a clean
    environment. Returns the failures."""
    from . import sandbox

    _make_readable(target)
    names = [re.split(r"[\s\[<>=!~;@(]", r, maxsplit=1)[0] for r in reqs]
    if sandbox.backend_name() == "rlimit":
        python, binds = str(target / "bin" / "python"), []
    else:
        python, binds = f"{sandbox.INSIDE_ENV}/bin/python", [(target, sandbox.INSIDE_ENV)]
        prefix = base_prefix(target)
        if prefix is not None and prefix != Path("/usr"):
            binds.append((prefix, str(prefix)))
    try:
        code, out = sandbox.run_command(
            [python, "-I", "-c", _VERIFY, json.dumps(names)], ro_paths=binds, timeout=120
        )
    except (OSError, subprocess.SubprocessError, sandbox.SandboxUnavailable) as exc:
        return [f"import check could not run: {exc}"]
    text = out.decode("utf-8", "replace")
    if code is None:
        return ["import check took longer than 120 s"]
    if code:
        output.append(text)
        return [f"import check exited with {code}"]
    try:
        return json.loads(text.strip().splitlines()[-1] if text.strip() else "[]")
    except ValueError:
        output.append(text)
        return ["import check printed no result"]


def _make_readable(top: Path) -> None:
    """World-readable (not writable) files and directories: the run uid uses them."""
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            mode = os.lstat(path).st_mode & 0o7777
            extra = 0o055 if os.path.isdir(path) or mode & 0o100 else 0o044
            os.chmod(path, (mode | extra) & ~0o022)
    os.chmod(top, 0o755)


def prune_environments(*, unused_days: float, dry_run: bool = False) -> list[str]:
    """Remove environments not used for ``unused_days`` (and stale half builds);
    an environment being built or locked is left alone. Returns the names removed.
    Never raises for what a folder holds (any depth, links, odd names: see
    ``remove_tree``); one that cannot be removed now is left for the next prune."""
    top = Path(settings.ENVS_DIR)
    if not top.is_dir():
        return []
    cutoff = time.time() - unused_days * 86400
    removed = []
    for entry in sorted(top.iterdir()):
        if entry.suffix == ".lock" or not entry.is_dir():
            continue
        marker = entry / LAST_USED if (entry / LAST_USED).exists() else entry / READY
        try:
            used = marker.stat().st_mtime if marker.exists() else entry.stat().st_mtime
        except OSError:
            continue
        if used >= cutoff:
            continue
        key = entry.name.split("-")[1] if entry.name.startswith(".build-") else entry.name
        lock = FileLock(str(top / key) + ".lock")
        try:
            with lock.acquire(timeout=0):
                if not dry_run:
                    remove_tree(entry)
                removed.append(entry.name)
        except (Timeout, OSError):
            continue
    return removed
