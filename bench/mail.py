"""Mail queue benchmark: rows sent per second into aiosmtpd by one processor, beside a
plain smtplib loop sending the same messages over one connection, in the same run.
Then memory: 200 rows carrying 5 MB attachments, peak RSS after 10 rows vs after 200.

    .venv/bin/python bench/mail.py [--rows 1000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_mail ... (PostgreSQL: the
    database is created and dropped by the bench)

Target: processor >= 70% of the loop's rate; memory flat (ratio close to 1.0).
The SMTP server (aiosmtpd's Sink) runs in its own process, so it does not share a GIL
with either side.
"""

import argparse
import os
import resource
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
         "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("aiosmtpd did not start")


def setup_django(data_dir: str) -> None:
    os.environ["DATA_DIR"] = data_dir
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{data_dir}/bench.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DEBUG"] = "false"  # no query log (it would keep every 5 MB parameter)
    os.environ["MAILQUEUE_AUTOSTART"] = "false"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_rows(port: int, count: int, document: bytes | None = None) -> list[int]:
    from mailqueue.models import EmailDetail, EmailParameter

    EmailParameter.objects.update_or_create(
        param_code="BENCH",
        defaults={"smtp_server": "127.0.0.1", "smtp_port": port, "is_active": "Y",
                  "smtp_mail_id": "bench@example.com", "smtp_ssl_flag": "N"},
    )  # fmt: skip
    EmailDetail.objects.all().delete()
    body = "<p>" + "Benchmark body line. " * 50 + "</p>"
    ids = []
    for i in range(count):
        row = EmailDetail.objects.create(
            to_emails=f"user{i}@example.com", cc_emails="cc@example.com",
            subject=f"Bench {i}", body_text=body, param_code="BENCH",
            document=document, filename="file.bin" if document else None,
        )  # fmt: skip
        ids.append(row.srno)
    return ids


def plain_loop(port: int, rows, *, prebuilt: bool) -> float:
    """The baseline: the same messages over one smtplib connection, either built in the
    loop (with the processor's own builder) or prebuilt to bytes before the clock."""
    from mailqueue.smtp import build_message

    def payload(row):
        message = build_message(row, None)
        return message.recipients(), message.message().as_bytes(linesep="\r\n")

    payloads = [payload(row) for row in rows] if prebuilt else None
    started = time.perf_counter()
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    for i, row in enumerate(rows):
        recipients, data = payloads[i] if prebuilt else payload(row)
        smtp.sendmail("bench@example.com", recipients, data)
    smtp.quit()
    return time.perf_counter() - started


def rate_part(rows_count: int, port: int) -> None:
    from mailqueue.models import EmailDetail
    from mailqueue.processor import process_batch

    make_rows(port, rows_count)
    rows = list(EmailDetail.objects.order_by("srno"))
    built = min(plain_loop(port, rows, prebuilt=False) for _ in range(2))
    prebuilt = min(plain_loop(port, rows, prebuilt=True) for _ in range(2))
    started = time.perf_counter()
    result = process_batch(batch_size=rows_count)
    processor = time.perf_counter() - started
    assert result.sent == rows_count, result.as_dict()
    rate = rows_count / processor
    built_rate, prebuilt_rate = rows_count / built, rows_count / prebuilt
    print(f"database: {os.environ['DATABASE_URL'].split(':')[0]}, {rows_count} rows")
    print(f"plain smtplib loop, messages built in the loop:  {built_rate:7.0f} msg/s")
    print(f"plain smtplib loop, messages prebuilt to bytes:  {prebuilt_rate:7.0f} msg/s")
    print(f"processor (claim, load, build, send, record):    {rate:7.0f} msg/s")
    ratio = rate / built_rate
    print(f"ratio processor / loop (built):    {ratio:.2f} (target >= 0.70) "
          f"{'OK' if ratio >= 0.7 else 'LOW'}")  # fmt: skip
    print(f"ratio processor / loop (prebuilt): {rate / prebuilt_rate:.2f}")


def memory_part(port: int) -> None:
    from mailqueue.processor import process_batch

    document = os.urandom(5 * 1024 * 1024)
    make_rows(port, 200, document=document)
    del document
    process_batch(batch_size=10)
    after_10 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    result = process_batch(batch_size=190)
    elapsed = time.perf_counter() - started
    after_200 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert result.sent == 190, result.as_dict()
    print(f"5 MB attachments: peak RSS after 10 rows {after_10:.0f} MB, after 200 rows "
          f"{after_200:.0f} MB, ratio {after_200 / after_10:.2f} (flat: close to 1.00); "
          f"{190 / elapsed:.1f} rows/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--part", choices=["all", "rate", "memory"], default="all")
    args = parser.parse_args()
    if args.part == "all":  # each part in a fresh process: RSS is per process
        for part in ("rate", "memory"):
            cmd = [sys.executable, __file__, "--part", part, "--rows", str(args.rows)]
            subprocess.run(cmd, check=True)
        return
    sink, port = start_sink()
    pg_db = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-mail-") as data_dir:
            url = os.environ.get("DATABASE_URL", "")
            if url.startswith("postgres"):
                pg_db = _pg_create(url)
            setup_django(data_dir)
            (rate_part(args.rows, port) if args.part == "rate" else memory_part(port))
            from django.db import connections

            connections.close_all()
    finally:
        sink.kill()
        if pg_db:
            _pg_drop(*pg_db)


def _pg_create(url: str):
    import psycopg

    base, name = url.rsplit("/", 1)
    name = f"{name}_{os.getpid()}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = f"{base}/{name}"
    return base, name


def _pg_drop(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


if __name__ == "__main__":
    main()
