"""The support files a run needs inside its sandbox (the harness, the progress helper,
the ns box, the network relay): one world-readable, precompiled copy per content hash
under DATA_DIR/runner/ (the run uid cannot be assumed to read the project)."""

import functools
import hashlib
import os
import py_compile
import shutil
import sys
import time
from pathlib import Path

from .workspace import ensure_traversable

HERE = Path(__file__).resolve().parent
SUPPORT_FILES = {
    "harness.py": "_scriptorium_harness.py",
    "scriptorium_progress.py": None,
    "box.py": "_scriptorium_box.py",
    "warm.py": "_scriptorium_warm.py",
    "netrelay.py": None,
}
PYC_FORMAT = b"checked-hash pyc v1"  # part of the support dir's name


@functools.cache
def support_dir(data_dir: str) -> Path:
    """A world-readable copy of the harness and the progress helper (the run uid
    cannot be assumed to read the project's directory; bwrap binds only this)."""
    blobs = {name: (HERE / name).read_bytes() for name in SUPPORT_FILES if (HERE / name).exists()}
    digest = hashlib.sha256(b"".join(blobs[n] for n in sorted(blobs)) + PYC_FORMAT)
    digest = digest.hexdigest()[:16]
    target = Path(data_dir) / "runner" / digest
    if not (target / ".complete").exists():
        ensure_traversable(target.parent)
        tmp = target.with_name(f".{digest}-{os.getpid()}-{time.monotonic_ns()}")
        tmp.mkdir(mode=0o755)
        for name, blob in sorted(blobs.items()):
            dest = tmp / (SUPPORT_FILES[name] or name)
            dest.write_bytes(blob)
            os.chmod(dest, 0o644)
            _precompile(dest, shown_as=target / dest.name)
        os.chmod(tmp / "__pycache__", 0o755)
        (tmp / ".complete").touch()
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _precompile(source: Path, *, shown_as: Path) -> None:
    """Write the module's .pyc (checked against the source's hash), so that the run's
    interpreter imports the harness without compiling it (about 1 ms a run). It is
    written for this interpreter's version; an environment made from another Python
    version ignores it and compiles in memory (correct, only slower)."""
    tag = sys.implementation.cache_tag  # not cache_from_source: it obeys PYTHONPYCACHEPREFIX
    cfile = str(source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc")
    py_compile.compile(
        str(source),
        cfile=cfile,
        dfile=str(shown_as),  # the path tracebacks show
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
    os.chmod(cfile, 0o644)
