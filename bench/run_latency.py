"""Latency of a run: the floor, the runner cold and warm, the sync HTTP endpoint.

Prints, in one run, the median and p95 of
  1. a bare `python -c pass` subprocess of the runner's base environment (the floor),
  2. the runner (executions.runner.run_script) on `def main(data: dict): return {}`,
     cold (RUN_WARM=false: a new sandboxed interpreter per run) and warm (forked from
     the environment's template),
  3. POST /api/v1/run/<path> over real HTTP to gunicorn (config/gunicorn.conf.py,
     production settings; keep-alive, JWT), end to end (row, run, log, answer), for the
     light script and for one that imports pandas (its own environment, built first),
and each as a ratio to the floor measured in alternation with it (the machine's speed
drifts), each floor and figure pair 50 ms after the last (the previous run's aftermath
must not slow the floor). Targets: warm runner <= 0.6x, sync HTTP light and
pandas <= 1.5x the floor.

    .venv/bin/python bench/run_latency.py [--runs 40] [--no-pandas] [--data-parent DIR]
"""

import argparse
import http.client
import importlib.util
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bench_helpers():
    """bench/jobs.py (its process helpers) under a name of its own: imported as
    ``jobs`` it would stand for the jobs app, whose tables migrate would then leave out."""
    spec = importlib.util.spec_from_file_location("bench_jobs", ROOT / "bench" / "jobs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _bench_helpers()
free_port, start, stop, tail = _helpers.free_port, _helpers.start, _helpers.stop, _helpers.tail

LIGHT = b"def main(data: dict):\n    return {}\n"
PANDAS = (
    b"import pandas as pd\n\n\n"
    b"def main(data: dict):\n"
    b'    return {"rows": len(pd.DataFrame({"a": [1, 2, 3]}))}\n'
)
TARGETS = {"warm": 0.6, "http light": 1.5, "http pandas": 1.5}


FLOOR = {"fn": None, "samples": {}}  # the floor, measured beside every figure
# Before each sample, a pause: what the previous run left to do (a killed process's
# exit, its template's next spare, the janitor's releases: 10-20 ms of CPU after a
# pandas run) must not share the machine with the next floor sample. It did before
# this pause, and the floor beside the pandas figure read 9.4-10.9 ms against 7.4-7.8
# ms settled: the ratio looked 1.3x where it was 1.8x.
SETTLE_SECONDS = 0.05


def timed(fn, runs: int, label: str = "") -> list[float]:
    """``runs`` timings (ms) of ``fn``; with a floor set, each one follows a floor
    sample (kept under ``label``): the machine's speed drifts (other load, CPU
    steal), and a figure is compared with the floor measured in the same moments.
    Each pair starts SETTLE_SECONDS after the last one ended."""
    fn()  # warm-up
    samples, floor = [], FLOOR["samples"].setdefault(label, [])
    for _ in range(runs):
        time.sleep(SETTLE_SECONDS)
        if FLOOR["fn"] is not None and label:
            started = time.perf_counter()
            FLOOR["fn"]()
            floor.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered), p95


def runner_figures(runs: int) -> dict:
    """The runner called in this process, cold then warm."""
    from django.conf import settings

    from executions import runner

    spec = runner.RunSpec(
        run_id="bench",
        source=LIGHT.decode(),
        filename="light.py",
        call_style="data",
        inputs={},
        argv=[],
        requirements=[],
        input_files=[],
        limits=runner.limits_for(),
    )
    outcomes = []

    def run_once():
        with runner.run_script(spec, on_log=lambda text: None) as outcome:
            assert outcome.status == "succeeded", (outcome.error_code, outcome.error_message)
            outcomes.append(outcome.warm)

    settings.RUN_WARM = False
    cold = timed(run_once, runs, "cold")
    settings.RUN_WARM = True
    figures = {"cold": cold}
    if runner.warm_up([]):
        outcomes.clear()
        figures["warm"] = timed(run_once, runs, "warm")
        assert all(outcomes), "a run did not fork from the template"
    return figures


def serve(env: dict, logs: Path) -> tuple[object, int]:
    """gunicorn with the project's config and production settings, listening."""
    port = free_port()
    env = {
        **env,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
    }
    args = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py"]
    server = start([*args, "--no-control-socket", "config.wsgi:application"], env, logs)
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{tail(logs)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not listen within 30 s") from None
            time.sleep(0.1)


def http_figure(port: int, token: str, path: str, runs: int, label: str) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps({"data": {}})

    def once():
        conn.request("POST", f"/api/v1/run/{path}", body=body, headers=headers)
        response = conn.getresponse()
        payload = json.loads(response.read())
        assert response.status == 200 and payload["success"], payload

    try:
        return timed(once, runs, label)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas figure")
    parser.add_argument(
        "--data-parent", help="where the temporary DATA_DIR is made (default: var/bench)"
    )
    args = parser.parse_args()
    data_dir = _helpers.scratch_data_dir("scriptorium-bench-latency-", args.data_parent)
    (data_dir / "static").mkdir()
    log = data_dir / "gunicorn.log"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATA_DIR=str(data_dir),
        DATABASE_URL=f"sqlite:///{data_dir / 'db.sqlite3'}",
        REDIS_URL="",
        SECRET_KEY=secrets.token_urlsafe(60),  # shared with gunicorn: the JWT works there
        LOG_LEVEL="WARNING",
        MAX_EXECUTIONS_PER_HOUR="0",
        MAX_CONCURRENT_EXECUTIONS="0",
    )
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.services import user_create
    from executions import runner
    from executions.runner import sandbox, templates
    from scripts.services import script_upload

    call_command("migrate", verbosity=0)
    user = user_create(username="bench", email="bench@example.com", password=None)
    script_upload(user=user, file_name="light.py", content=LIGHT, folder=None)
    token = str(RefreshToken.for_user(user).access_token)
    python = str(runner.ensure_environment([]))
    pandas_note = "skipped (--no-pandas)"
    if not args.no_pandas:
        try:
            runner.ensure_environment(["pandas"])
            script_upload(user=user, file_name="frame.py", content=PANDAS, folder=None)
            runner.warm_up(["pandas"], imports=("pandas",), timeout=120)
            pandas_note = ""
        except Exception as exc:  # noqa: BLE001 - no index here: say so, measure the rest
            pandas_note = f"skipped: the pandas environment could not be built ({exc})"

    server = None
    try:
        FLOOR["fn"] = lambda: subprocess.run([python, "-c", "pass"], check=True)
        floor = timed(FLOOR["fn"], args.runs)
        figures = runner_figures(args.runs)
        server, port = serve(dict(os.environ), log)
        figures["http light"] = http_figure(port, token, "light.py", args.runs, "http light")
        if not pandas_note:
            figures["http pandas"] = http_figure(port, token, "frame.py", args.runs, "http pandas")
    finally:
        if server is not None:
            stop(server)
        templates.stop_all(now=True)  # also those gunicorn started

    floor_med, _ = summary(floor)
    print(f"runs per figure: {args.runs}   sandbox backend: {sandbox.backend_name()}   "
          f"warm runs: {templates.problem() or 'on'}")  # fmt: skip
    print("server: gunicorn (config/gunicorn.conf.py, gthread), config.settings.production")
    print(f"DATA_DIR (workspaces, environments, database): {data_dir}")
    print("each figure's ratio is to the floor measured in alternation with it (its own")
    print("floor column); the first row is the floor measured on its own; each floor and")
    print(f"figure pair starts {SETTLE_SECONDS * 1000:.0f} ms after the last (the machine settled)")
    print(
        f"{'':36} {'median ms':>10} {'p95 ms':>10} {'own floor':>10} {'x floor':>8} {'target':>8}"
    )
    rows = [
        ("python -c pass (floor)", "floor", floor),
        ("runner, cold", "cold", figures.get("cold")),
        ("runner, warm", "warm", figures.get("warm")),
        ("POST /api/v1/run/light.py", "http light", figures.get("http light")),
        ("POST /api/v1/run/frame.py (pandas)", "http pandas", figures.get("http pandas")),
    ]
    for label, key, samples in rows:
        if samples is None:
            print(f"{label:36} {'-':>10} {'-':>10} {'-':>8}  " + (pandas_note or "unavailable"))
            continue
        med, p95 = summary(samples)
        beside = FLOOR["samples"].get(key) or floor
        own = summary(beside)[0] if key != "floor" else floor_med
        ratio = med / own
        target = TARGETS.get(key)
        verdict = "" if target is None else ("met" if ratio <= target else "MISSED")
        shown = f"<={target}x" if target else ""
        print(f"{label:36} {med:10.1f} {p95:10.1f} {own:10.1f} {ratio:8.2f} {shown:>8} {verdict}")


if __name__ == "__main__":
    main()
