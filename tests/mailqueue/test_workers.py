"""Real processor processes (manage.py process_mail_queue) against one queue:
4 at once send each row exactly once; a processor killed mid-batch loses no row."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from mailqueue.models import EmailDetail, EmailParameter, MailService

ROOT = Path(__file__).resolve().parents[2]
CLAIM_SIZE = 10


def _env(tmp_path) -> dict:
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        user = settings_dict["USER"] or "postgres"
        host = settings_dict["HOST"] or "127.0.0.1"
        port = settings_dict["PORT"] or 5432
        url = f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"
    else:
        url = f"sqlite:///{settings_dict['NAME']}"
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=url,
        DATA_DIR=str(tmp_path),  # shared by the processors: the SQLite lock file
        LOG_FORMAT="console",
        MAILQUEUE_SMTP_TIMEOUT="10",
        MAILQUEUE_CLAIM_SIZE=str(CLAIM_SIZE),
    )
    return env


def _processor(env, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "process_mail_queue", "--until-empty", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _fill(port: int, count: int) -> None:
    MailService.objects.get_or_create(pk=1)
    EmailParameter.objects.create(
        param_code="MAIN", smtp_server="127.0.0.1", smtp_port=port,
        smtp_mail_id="noreply@example.com", smtp_ssl_flag="N", is_active="Y",
    )  # fmt: skip
    EmailDetail.objects.bulk_create(
        EmailDetail(to_emails=f"u{i}@example.com", subject=f"m{i}", body_text="body")
        for i in range(count)
    )


def _received_ids(server) -> Counter:
    return Counter(int(m["message"]["X-Mailqueue-Id"]) for m in server.messages)


def _run_processors(tmp_path, smtp_server, rows: int, processes: int) -> None:
    _fill(smtp_server.port, rows)
    env = _env(tmp_path)
    started = time.monotonic()
    procs = [_processor(env, "--batch-size", "100") for _ in range(processes)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    elapsed = time.monotonic() - started
    ids = set(EmailDetail.objects.values_list("srno", flat=True))
    received = _received_ids(smtp_server)
    assert set(received) == ids
    assert max(received.values()) == 1, [k for k, v in received.items() if v > 1][:10]
    assert not EmailDetail.objects.exclude(send_flag="Y").exists()
    print(f"{rows} rows by {processes} processors in {elapsed:.1f} s")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_four_processors_send_each_row_exactly_once_postgres(tmp_path, smtp_server):
    _run_processors(tmp_path, smtp_server, rows=2000, processes=4)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_several_processors_send_each_row_once_on_this_database(tmp_path, smtp_server):
    # SQLite: the processors take turns through the file lock; PostgreSQL: they share
    # the queue through row locks that skip locked rows. Either way, exactly once.
    _run_processors(tmp_path, smtp_server, rows=300, processes=3)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killed_processor_loses_no_row(tmp_path, smtp_server):
    smtp_server.handler.delay = 0.02  # a slow server: the kill lands mid-batch
    _fill(smtp_server.port, 150)
    env = _env(tmp_path)
    proc = _processor(env)
    deadline = time.monotonic() + 60
    while len(smtp_server.messages) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    sent_before = len(smtp_server.messages)
    assert 20 <= sent_before < 150, "the kill must land in the middle of the batch"
    assert EmailDetail.objects.filter(send_flag="N").exists()

    smtp_server.handler.delay = 0
    again = _processor(env)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-2000:]
    received = _received_ids(smtp_server)
    assert not EmailDetail.objects.exclude(send_flag="Y").exists()
    assert set(received) == set(EmailDetail.objects.values_list("srno", flat=True))
    # At least once: only rows of the claim in flight at the kill can arrive twice.
    duplicates = sum(count - 1 for count in received.values())
    assert duplicates <= CLAIM_SIZE
    print(f"killed after {sent_before} sent; {duplicates} sent twice")
