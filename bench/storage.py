"""Storage throughput and web-process memory, local disk and S3 (moto), in one run.

Prints, for a 50 MB file (``--mb``):
  * a plain file copy on the same disk (shutil.copyfile): the baseline,
  * upload (POST /api/v1/files/upload, multipart, streamed from disk over real HTTP)
    and download (GET /api/v1/files/{key}) throughput in MB/s, on local disk and on a
    moto S3 server on 127.0.0.1, with their ratio to the baseline,
  * the web process's peak RSS growth during the upload, for the full file and for a
    file ten times smaller: streaming means the two are about the same.
The web process is a separate wsgiref server process; its peak RSS is read from
/proc/<pid>/status (VmHWM), reset before each upload through /proc/<pid>/clear_refs.

    .venv/bin/python bench/storage.py [--mb 50]
"""

import argparse
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BOUNDARY = "----scriptorium-bench-boundary"
CHUNK = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server for {url} did not start") from None
            time.sleep(0.1)


def serve(port: int) -> None:
    """Child mode: the Django WSGI app on 127.0.0.1:port (wsgiref, one request at a time)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    make_server("127.0.0.1", port, get_wsgi_application(), handler_class=Quiet).serve_forever()


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def upload(port: int, token: str, path: Path) -> tuple[float, str]:
    size = path.stat().st_size
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.putrequest("POST", "/api/v1/files/upload?prefix=bench")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.endheaders()
    conn.send(head)
    with path.open("rb") as fh:
        while data := fh.read(CHUNK):
            conn.send(data)
    conn.send(tail)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 201:
        raise SystemExit(f"upload failed: {response.status} {body[:300]!r}")
    import json

    return elapsed, json.loads(body)["key"]


def download(port: int, token: str, key: str) -> tuple[float, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("GET", f"/api/v1/files/{key}", headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    digest = hashlib.sha256()
    while data := response.read(CHUNK):
        digest.update(data)
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise SystemExit(f"download failed: {response.status}")
    return elapsed, digest.hexdigest()


def measure(name: str, env: dict, token: str, big: Path, small: Path, mb: float) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)], env=env, cwd=str(ROOT)
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/", proc)
        upload(port, token, small)  # warm-up: imports, first connections
        result = {"backend": name}
        for label, path in (("small", small), ("big", big)):
            before = rss_kb(proc.pid, "VmRSS")
            reset_peak(proc.pid)
            seconds, key = upload(port, token, path)
            result[f"peak_growth_{label}_mb"] = (rss_kb(proc.pid, "VmHWM") - before) / 1024
            if label == "big":
                result["upload_mbps"] = mb / seconds
                seconds, digest = download(port, token, key)
                result["download_mbps"] = mb / seconds
                want = hashlib.sha256(path.read_bytes()).hexdigest()
                result["bytes_equal"] = digest == want
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--serve", type=int)
    args = parser.parse_args()
    if args.serve:
        import django

        django.setup()
        serve(args.serve)
        return

    data_dir = Path(tempfile.mkdtemp(prefix="scriptorium-bench-"))
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
        "STORAGE_MAX_UPLOAD_BYTES": str((args.mb + 10) * 1024 * 1024),
    }
    env.pop("DATABASE_URL", None)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.models import User

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", "bench@example.com", "bench-password-123")
    token = str(RefreshToken.for_user(user).access_token)

    big = data_dir / "big.bin"
    small = data_dir / "small.bin"
    with big.open("wb") as fh:
        for _ in range(args.mb):
            fh.write(os.urandom(CHUNK))
    small.write_bytes(big.read_bytes()[: max(1, args.mb // 2) * CHUNK])

    started = time.perf_counter()
    shutil.copyfile(big, data_dir / "copy.bin")
    os.sync()
    copy_mbps = args.mb / (time.perf_counter() - started)

    moto_port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{moto_port}/moto-api/", moto)
        import boto3

        endpoint = f"http://127.0.0.1:{moto_port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        ).create_bucket(Bucket="scriptorium-bench")
        s3_env = {
            **env,
            "STORAGE_BACKEND": "s3",
            "AWS_STORAGE_BUCKET_NAME": "scriptorium-bench",
            "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_REGION_NAME": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
        results = [
            measure("local", {**env, "STORAGE_BACKEND": "local"}, token, big, small, args.mb),
            measure("s3 (moto)", s3_env, token, big, small, args.mb),
        ]
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)

    small_mb = max(1, args.mb // 2)
    print(f"file: {args.mb} MB; plain file copy on the same disk: {copy_mbps:.0f} MB/s (baseline)")
    for r in results:
        print(
            f"{r['backend']:>10}: upload {r['upload_mbps']:7.1f} MB/s "
            f"({r['upload_mbps'] / copy_mbps:.2f}x copy), download {r['download_mbps']:7.1f} MB/s "
            f"({r['download_mbps'] / copy_mbps:.2f}x copy), bytes equal: {r['bytes_equal']}"
        )
        print(
            f"{'':>10}  web process peak RSS growth during upload: "
            f"{r['peak_growth_big_mb']:.1f} MB for {args.mb} MB, "
            f"{r['peak_growth_small_mb']:.1f} MB for {small_mb} MB "
            f"(ratio {r['peak_growth_big_mb'] / max(r['peak_growth_small_mb'], 0.1):.2f})"
        )


if __name__ == "__main__":
    main()
