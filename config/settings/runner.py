"""Settings of the runner (executions app): limits, sandbox, environments.

Every limit here is a global default; a script may override timeout, memory and
network (``executions.runner.limits_for``), clamped to the ``*_MAX_*`` values.
"""

import os
from pathlib import Path

from .env import DATA_DIR, env

SYNC_RUN_WAIT = env.float("SYNC_RUN_WAIT", default=30)
# Inputs (JSON) of one run; larger data belongs in a file (input_files).
RUN_INPUT_MAX_BYTES = env.int("RUN_INPUT_MAX_BYTES", default=1024 * 1024)
# Finished runs older than this many days are deleted with their files (0: keep all).
RUN_RETENTION_DAYS = env.int("RUN_RETENTION_DAYS", default=0)
# A running run whose worker has not heartbeated for this long is marked "lost".
RUN_HEARTBEAT_STALE_SECONDS = env.int("RUN_HEARTBEAT_STALE_SECONDS", default=60)
# Run report e-mails attach files up to this many bytes in total; the rest are links.
RUN_REPORT_ATTACH_MAX_BYTES = env.int("RUN_REPORT_ATTACH_MAX_BYTES", default=10 * 1024 * 1024)

# --- Limits (defaults; per-script overrides are clamped to the maxima) -------------
RUN_TIMEOUT_SECONDS = env.float("RUN_TIMEOUT_SECONDS", default=60)
RUN_TIMEOUT_MAX_SECONDS = env.float("RUN_TIMEOUT_MAX_SECONDS", default=3600)
RUN_MEMORY_MB = env.int("RUN_MEMORY_MB", default=512)
RUN_MEMORY_MAX_MB = env.int("RUN_MEMORY_MAX_MB", default=4096)
# CPU seconds per process; 0 means "the wall-clock timeout, rounded up".
RUN_CPU_SECONDS = env.int("RUN_CPU_SECONDS", default=0)
RUN_LOG_MAX_BYTES = env.int("RUN_LOG_MAX_BYTES", default=10 * 1024 * 1024)
RUN_MAX_FILES = env.int("RUN_MAX_FILES", default=100)
RUN_MAX_FILE_BYTES = env.int("RUN_MAX_FILE_BYTES", default=100 * 1024 * 1024)
RUN_MAX_TOTAL_FILE_BYTES = env.int("RUN_MAX_TOTAL_FILE_BYTES", default=500 * 1024 * 1024)
# Runs are stopped (DISK_LIMIT) before they take the workspaces' disk below this.
RUN_DISK_RESERVE_MB = env.int("RUN_DISK_RESERVE_MB", default=1024)
RUN_RESULT_MAX_BYTES = env.int("RUN_RESULT_MAX_BYTES", default=1024 * 1024)
RUN_NETWORK_DEFAULT = env.bool("RUN_NETWORK_DEFAULT", default=False)
# Destinations a run with network may reach although they are the host's own network
# (loopback, link-local, private ranges...): CIDR, CIDR:port, host:port ([v6]:port).
RUN_NETWORK_ALLOW = env.list("RUN_NETWORK_ALLOW", default=[])
# Processes of one run's whole tree (its cgroup's pids.max; RLIMIT_NPROC per run uid).
RUN_MAX_PROCESSES = env.int("RUN_MAX_PROCESSES", default=256)
RUN_MAX_OPEN_FILES = env.int("RUN_MAX_OPEN_FILES", default=256)

# --- Sandbox -------------------------------------------------------------------------
# auto: the built-in namespace sandbox (ns), else bubblewrap; never rlimit silently.
# rlimit isolates nothing but resources: runs of users who are not staff are refused on
# it unless the operator names it here (SANDBOX_BACKEND=rlimit).
SANDBOX_BACKEND = env("SANDBOX_BACKEND", default="auto")  # auto | ns | bwrap | rlimit
_root = os.geteuid() == 0
# Scripts never run as root: when the server is root each run gets its own uid from this
# range (held with a lock in RUN_UID_LOCK_DIR, shared by every instance on the host).
# ns: the box becomes the harness (one interpreter start per run instead of two).
RUN_NS_INPROCESS = env.bool("RUN_NS_INPROCESS", default=True)
RUN_UID_RANGE = env("RUN_UID_RANGE", default="1900000000-1900999999")
# Warm runs (ns backend, server as root): per environment, a sealed template process
# that has imported the harness and the modules the environment's scripts import
# forks each run (see docs/runner.md). The cold path stays the fallback.
RUN_WARM = env.bool("RUN_WARM", default=True)
RUN_WARM_MAX_TEMPLATES = env.int("RUN_WARM_MAX_TEMPLATES", default=4)
RUN_WARM_MEMORY_MB = env.int("RUN_WARM_MEMORY_MB", default=1024)  # each template's own
RUN_WARM_IDLE_SECONDS = env.int("RUN_WARM_IDLE_SECONDS", default=600)
RUN_WARM_PRELOAD = env.list("RUN_WARM_PRELOAD", default=[])  # modules every template imports
RUN_WARM_MAX_PRELOAD = env.int("RUN_WARM_MAX_PRELOAD", default=64)
RUN_WARM_DIR = env("RUN_WARM_DIR", default="/run/scriptorium/warm")  # sockets and status
RUN_UID_LOCK_DIR = env("RUN_UID_LOCK_DIR", default="/run/scriptorium/uids")

# --- Environments and workspaces -----------------------------------------------------
ENVS_DIR = Path(env("ENVS_DIR", default=str(DATA_DIR / "envs")))
WORKSPACES_DIR = Path(env("WORKSPACES_DIR", default=str(DATA_DIR / "workspaces")))
# The interpreter environments are made from. The pyenv Python under /root is
# unreadable to the run uids, so a root server defaults to Debian's /usr/bin/python3.
_system_python = "/usr/bin/python3"
RUN_BASE_PYTHON = env(
    "RUN_BASE_PYTHON",
    default=_system_python if (_root and Path(_system_python).exists()) else "",
)
# Extra arguments for `uv pip install` (e.g. --index-url, --find-links, --no-index).
ENVS_INSTALL_ARGS = env.list("ENVS_INSTALL_ARGS", default=[])
# Allow building packages from source distributions (runs their build code on the server).
ENVS_ALLOW_SOURCE_BUILDS = env.bool("ENVS_ALLOW_SOURCE_BUILDS", default=False)
ENVS_BUILD_TIMEOUT_SECONDS = env.int("ENVS_BUILD_TIMEOUT_SECONDS", default=600)
