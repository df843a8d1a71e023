"""Benchmark: GET /api/v1/tree/ with 10,000 scripts in 1,000 folders (3 levels deep).

Prints the median time and the query count for a staff user and for a user kept out
of one restricted folder, with the baseline of 100 scripts in 10 folders measured in
the same run (ratio = big / baseline). Target: under 300 ms, queries constant.

Run: .venv/bin/python bench/tree.py   (uses a throw-away SQLite database, or the
test database on DATABASE_URL)
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from accounts.models import User  # noqa: E402
from scripts.models import Folder, Script  # noqa: E402


def populate(folders: int, scripts: int) -> None:
    """``folders`` folders on up to three levels (10% roots, 9 children per root, the
    rest spread under those) and ``scripts`` scripts spread over them."""
    Folder.objects.all().delete()
    roots = Folder.objects.bulk_create(
        Folder(name=f"r{i}", path=f"r{i}", public=True) for i in range(max(1, folders // 100) * 10)
    )[:folders]
    made = list(roots)
    level = roots
    while len(made) < folders:
        count = min(folders - len(made), len(level) * (9 if level is roots else 10))
        level = Folder.objects.bulk_create(
            Folder(
                name=f"f{i}",
                path=f"{level[i % len(level)].path}/f{i}",
                parent=level[i % len(level)],
            )
            for i in range(count)
        )
        made += level
    Script.objects.bulk_create(
        (
            Script(
                name=f"s{i}.py",
                folder=made[i % len(made)],
                logical_path=f"{made[i % len(made)].path}/s{i}.py",
            )
            for i in range(scripts)
        ),
        batch_size=2000,
    )
    Folder.objects.filter(pk=made[0].pk).update(public=False)  # only the "bench" group
    made[0].read_groups.add(Group.objects.get(name="bench"))


def measure(client: APIClient, repeat: int = 7) -> tuple[float, int, int]:
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            response = client.get("/api/v1/tree/")
            times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.content[:300]
    return statistics.median(times) * 1000, len(queries), len(response.content)


def main() -> None:
    setup_test_environment()
    from django.conf import settings

    old = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        Group.objects.create(name="bench")
        staff = User.objects.create(username="bench-staff", email="s@bench.test", is_staff=True)
        member = User.objects.create(username="bench-user", email="u@bench.test")
        clients = {}
        for user in (staff, member):
            clients[user.username] = APIClient()
            clients[user.username].force_authenticate(user)
        rows = []
        for label, folders, scripts in (("baseline", 10, 100), ("target", 1000, 10000)):
            populate(folders, scripts)
            for who, client in clients.items():
                ms, queries, size = measure(client)
                rows.append((label, who, folders, scripts, ms, queries, size))
        print(f"database: {connection.vendor}  (DEBUG={settings.DEBUG})")
        print(
            f"{'case':9} {'user':12} {'folders':>7} {'scripts':>7} {'ms':>8} {'queries':>7} "
            f"{'bytes':>9}"
        )
        for label, who, folders, scripts, ms, queries, size in rows:
            print(f"{label:9} {who:12} {folders:7d} {scripts:7d} {ms:8.1f} {queries:7d} {size:9d}")
        for who in clients:
            base = next(r for r in rows if r[0] == "baseline" and r[1] == who)
            big = next(r for r in rows if r[0] == "target" and r[1] == who)
            verdict = "OK" if big[4] < 300 and big[5] == base[5] else "MISSED"
            print(
                f"{who}: ratio target/baseline {big[4] / base[4]:.1f}x time, "
                f"queries {base[5]} -> {big[5]}; {verdict} (target < 300 ms, constant queries)"
            )
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
