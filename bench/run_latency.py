"""Latency of a trivial function script: floor, runner, sync HTTP endpoint.

Prints, in one run, the median and p95 of
  1. a bare `python -c pass` subprocess of the runner's base environment (the floor),
  2. the runner (executions.runner.run_script) executing `def main(data: dict): return {}`,
  3. POST /api/v1/run/<path> for the same script over real HTTP (a threaded WSGI server
     on 127.0.0.1, keep-alive connection, JWT), end to end: row, run, log, answer,
and the ratio of 2 and 3 to the floor. Targets: runner <= 2x, HTTP <= 2.5x.

    .venv/bin/python bench/run_latency.py [--runs 40]
"""

import argparse
import atexit
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="scriptorium-bench-")
atexit.register(shutil.rmtree, os.environ["DATA_DIR"], ignore_errors=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["LOG_LEVEL"] = "WARNING"
os.environ.pop("DATABASE_URL", None)
os.chmod(os.environ["DATA_DIR"], 0o711)


def timed(fn, runs: int) -> list[float]:
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered), p95


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    runs = parser.parse_args().runs

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.services import user_create
    from executions import runner
    from executions.runner import sandbox
    from scripts.services import script_upload

    user = user_create(username="bench", email="bench@example.com", password=None)
    source = b"def main(data: dict):\n    return {}\n"
    version = script_upload(user=user, file_name="trivial.py", content=source, folder=None)

    python = str(runner.ensure_environment([]))
    floor = timed(lambda: subprocess.run([python, "-c", "pass"], check=True), runs)

    spec = runner.RunSpec(
        run_id="bench",
        source=version.source,
        filename="trivial.py",
        call_style=version.call_style,
        inputs={},
        argv=[],
        requirements=[],
        input_files=[],
        limits=runner.limits_for(),
    )

    def run_once():
        with runner.run_script(spec, on_log=lambda text: None) as outcome:
            assert outcome.status == "succeeded", (outcome.error_code, outcome.error_message)

    runner_ms = timed(run_once, runs)

    class QuietHandler(WSGIRequestHandler):
        def setup(self):
            super().setup()
            # Like production servers (gunicorn sets it too): without TCP_NODELAY the
            # headers-then-body writes meet the client's delayed ACK (+40 ms a request).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=True)
    server.set_app(get_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    token = str(RefreshToken.for_user(user).access_token)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps({"data": {}})

    def http_once():
        conn.request("POST", "/api/v1/run/trivial.py", body=body, headers=headers)
        response = conn.getresponse()
        payload = json.loads(response.read())
        assert response.status == 200 and payload["success"], payload

    http_ms = timed(http_once, runs)
    server.shutdown()

    floor_med, floor_p95 = summary(floor)
    print(f"runs per figure: {runs}   sandbox backend: {sandbox.backend_name()}")
    print(f"{'':34} {'median ms':>10} {'p95 ms':>10} {'x floor':>8}")
    for label, samples in [
        ("python -c pass (floor)", floor),
        ("runner, trivial function script", runner_ms),
        ("POST /api/v1/run/ (HTTP, sync)", http_ms),
    ]:
        med, p95 = summary(samples)
        print(f"{label:34} {med:10.1f} {p95:10.1f} {med / floor_med:8.2f}")
    print("targets: runner <= 2.00x floor, HTTP <= 2.50x floor")


if __name__ == "__main__":
    main()
