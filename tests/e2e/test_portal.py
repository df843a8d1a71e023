"""The portal in a real browser: registration, sign-in, the generated run form, a run
followed live, files, cancel and re-run, history, what others cannot see, the admin's
Run page and charts, and the API docs served without any outside request.

Scripts run in the real sandbox, in a thread standing in for the worker
(``background_worker``). Screenshots go to tests/e2e/screenshots/ (git-ignored).
"""

import re
import textwrap
from urllib.parse import urlparse

import pytest
from django.core import mail

from accounts import services as account_services
from executions import services as execution_services
from executions.models import Execution
from scripts import services as script_services

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TYPED = """
import time
from datetime import date
from typing import Literal

from scriptorium_progress import report


def main(name: str, count: int = 3, mood: Literal["calm", "loud"] = "calm",
         shout: bool = False, day: date | None = None, tags: list[str] | None = None) -> dict:
    \"\"\"Greets someone, slowly.\"\"\"
    for i in range(count):
        print(f"line {i} for {name}", flush=True)
        report((i + 1) * 100 // count, f"step {i + 1}")
        time.sleep(0.5)
    greeting = f"Hello, {name}" + ("!" if shout else ".")
    return {"greeting": greeting, "mood": mood, "day": day, "tags": tags or []}
"""

FILES = """
import struct
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


rows = b"".join(b"\\x00" + bytes([200, 40, 40]) * 8 for _ in range(8))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
with open("dot.png", "wb") as f:
    f.write(png)
with open("table.csv", "w") as f:
    f.write("day,sales\\nMon,12\\nTue,18\\n")
print("wrote 2 files")
"""

LONG = """
import time


def main(seconds: int = 30) -> dict:
    print("sleeping", flush=True)
    time.sleep(seconds)
    return {}
"""

TABLE_CSV = b"day,sales\nMon,12\nTue,18\n"


def _script(owner, name: str, source: str, **fields):
    version = script_services.script_upload(
        user=owner, file_name=name, content=textwrap.dedent(source).encode(), folder=None
    )
    script = version.script
    for key, value in fields.items():
        setattr(script, key, value)
    if fields:
        script.save()
    return script


def _wait_until_finished_page(page) -> None:
    """Wait for the page the server renders once the run has ended (run.js reloads the
    live page then): clicking before that reload would race it."""
    page.locator("#run-live:not([data-run-events])").wait_for(timeout=20_000)


def _no_overflow(page) -> None:
    """Nothing sticks out sideways (phone width)."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_stranger_is_sent_to_sign_in_and_invitation_registration_lands_in_portal(
    page, live_server, staff_user, mailoutbox, shoot
):
    _script(staff_user, "greet.py", TYPED, description="Says hello to someone.")
    page.goto(f"{live_server.url}/")
    assert urlparse(page.url).path == "/login/"
    shoot("login")

    account_services.invitation_create(email="carol@example.com", invited_by=staff_user)
    link = re.search(r"https?://\S+/accounts/register/\S+/", mailoutbox[-1].body).group(0)
    page.goto(live_server.url + urlparse(link).path)
    page.fill("#id_username", "carol")
    page.fill("#id_password1", "a-long-and-fine-passphrase")
    page.fill("#id_password2", "a-long-and-fine-passphrase")
    page.click("button[type=submit]")
    page.click("#sign-in")
    page.fill("#id_username", "carol")
    page.fill("#id_password", "a-long-and-fine-passphrase")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    card = page.locator("[data-script='greet.py']")
    assert "Says hello to someone." in card.inner_text()
    assert "Not run by you yet" in card.inner_text()
    assert page.locator("#admin-link").count() == 0  # carol is not staff
    page.fill("input[name=q]", "nothing-like-this")
    page.press("input[name=q]", "Enter")
    page.get_by_text("No script matches").wait_for()
    page.goto(f"{live_server.url}/?q=hello")
    page.set_viewport_size({"width": 390, "height": 844})
    _no_overflow(page)
    shoot("home")
    assert page.console_errors == []


def test_typed_run_form_validation_live_log_progress_and_result(
    page, live_server, user, staff_user, sign_in, background_worker, shoot
):
    script = _script(staff_user, "greet.py", TYPED)
    sign_in(user)
    page.goto(f"{live_server.url}/scripts/{script.pk}/")
    # One field per parameter, of the right kind.
    assert page.locator("select[name=mood] option").all_inner_texts()[-2:] == ["calm", "loud"]
    assert page.locator("input[name=shout][type=checkbox]").count() == 1
    assert page.locator("input[name=day][type=date]").count() == 1
    assert page.locator("textarea[name=tags]").count() == 1
    assert page.input_value("input[name=count]") == "3"

    page.fill("input[name=count]", "two")
    page.click("#run-form button[type=submit]")  # name is missing, count is no integer
    name_errors = page.locator("#field-name .field-errors")
    assert "'name' is a required property" in name_errors.inner_text()
    assert "is not of type 'integer'" in page.locator("#field-count .field-errors").inner_text()
    assert Execution.objects.count() == 0
    shoot("script-form-errors")

    page.fill("input[name=name]", "Ada")
    page.fill("input[name=count]", "4")
    page.select_option("select[name=mood]", label="loud")
    page.check("input[name=shout]")
    page.fill("input[name=day]", "2024-05-17")
    page.fill("textarea[name=tags]", "one\ntwo")
    page.click("#run-form button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    log = page.locator("#run-log")
    log.filter(has_text="line 0 for Ada").wait_for()
    assert "line 3" not in log.inner_text(), "the log arrived all at once"
    page.wait_for_function("document.getElementById('run-bar').value > 0")
    shoot("run-live", full_page=False)
    page.locator("#run-result").wait_for(timeout=20_000)  # the page reloads when done
    result = page.locator("#run-result").inner_text()
    assert '"greeting": "Hello, Ada!"' in result and '"mood": "loud"' in result
    assert '"day": "2024-05-17"' in result and '"two"' in result
    assert "line 3 for Ada" in log.inner_text()
    assert page.locator("#run-status").inner_text() == "succeeded"
    execution = Execution.objects.get()
    assert execution.source == "portal" and execution.requested_by == user
    assert execution.inputs == {
        "name": "Ada",
        "count": 4,
        "mood": "loud",
        "shout": True,
        "day": "2024-05-17",
        "tags": ["one", "two"],
    }
    shoot("run-finished")
    page.emulate_media(color_scheme="dark")
    shoot("run-finished-dark")
    assert page.console_errors == []


def test_files_as_cards_with_image_preview_and_download(
    page, live_server, user, staff_user, sign_in, background_worker, shoot
):
    script = _script(staff_user, "report.py", FILES)
    sign_in(user)
    page.goto(f"{live_server.url}/scripts/{script.pk}/")
    assert page.locator("input[name=__args]").count() == 1  # a command script
    page.click("#run-form button[type=submit]")
    page.locator("#run-outcome .file-card").first.wait_for(timeout=20_000)
    categories = page.locator(".file-category").all_inner_texts()
    assert categories[0] == "Image" and len(categories) == 2
    image = page.locator(".file-card[data-file='dot.png'] img")
    image.wait_for()
    page.wait_for_function(
        "document.querySelector(\".file-card[data-file='dot.png'] img\").naturalWidth === 8"
    )
    with page.expect_download() as download:
        page.click(".file-card[data-file='table.csv'] a.download")
    with open(download.value.path(), "rb") as f:
        assert f.read() == TABLE_CSV
    assert download.value.suggested_filename == "table.csv"
    shoot("run-files")
    assert page.console_errors == []


def test_cancel_a_long_run_then_run_it_again_with_the_same_inputs(
    page, live_server, user, staff_user, sign_in, background_worker
):
    script = _script(staff_user, "long.py", LONG)
    sign_in(user)
    page.goto(f"{live_server.url}/scripts/{script.pk}/")
    page.fill("input[name=seconds]", "25")
    page.click("#run-form button[type=submit]")
    page.locator("#run-log").filter(has_text="sleeping").wait_for(timeout=20_000)
    page.click("#cancel-run")
    _wait_until_finished_page(page)
    assert page.locator("#run-status").inner_text() == "cancelled"
    first = Execution.objects.get()
    assert first.status == "cancelled"

    page.click("#rerun")
    page.wait_for_url(re.compile(rf"/runs/(?!{first.pk}/)\d+/$"))
    second = Execution.objects.exclude(pk=first.pk).get()
    assert second.rerun_of_id == first.pk and second.inputs == {"seconds": 25}
    assert page.url.endswith(f"/runs/{second.pk}/")
    page.locator("#run-log").filter(has_text="sleeping").wait_for(timeout=20_000)
    page.click("#cancel-run")
    _wait_until_finished_page(page)
    assert page.locator("#run-status").inner_text() == "cancelled"
    assert page.console_errors == []


def test_others_runs_are_not_found_and_strangers_sign_in_first(
    page, live_server, user, other_user, staff_user, sign_in
):
    script = _script(staff_user, "long.py", LONG)
    theirs = execution_services.execution_start(
        user=other_user, script_ref=script.pk, inputs={}, enqueue=False
    )
    response = page.goto(f"{live_server.url}/runs/{theirs.pk}/")
    assert urlparse(page.url).path == "/login/" and f"/runs/{theirs.pk}/" in page.url
    assert response.ok
    sign_in(user)
    assert page.goto(f"{live_server.url}/runs/{theirs.pk}/").status == 404
    assert page.goto(f"{live_server.url}/runs/{theirs.pk}/files/x.csv").status == 404
    assert page.goto(f"{live_server.url}/api/v1/executions/{theirs.pk}/events/").status == 404


def test_history_filters_and_pages(page, live_server, user, staff_user, sign_in, shoot):
    script = _script(staff_user, "long.py", LONG)
    runs = [
        execution_services.execution_start(
            user=user, script_ref=script.pk, inputs={"seconds": i}, enqueue=False
        )
        for i in range(23)
    ]
    Execution.objects.filter(pk__in=[r.pk for r in runs[:5]]).update(status="succeeded")
    sign_in(user)
    page.goto(f"{live_server.url}/runs/")
    assert page.locator("#history tbody tr").count() == 20
    assert "Page 1 of 2 · 23 runs" in page.locator(".pager").inner_text()
    shoot("history")
    page.click("a[rel=next]")
    assert page.locator("#history tbody tr").count() == 3
    page.select_option("#f-status", "succeeded")
    page.select_option("#f-script", "long.py")
    page.click("#history-filters button[type=submit]")
    assert page.locator("#history tbody tr").count() == 5
    assert "23 runs" not in page.locator(".pager").inner_text()
    page.fill("#f-since", "2999-01-01")
    page.click("#history-filters button[type=submit]")
    page.get_by_text("No runs match.").wait_for()
    assert page.console_errors == []


def test_staff_runs_a_script_from_the_admin_and_sees_charts_and_live_log(
    page, live_server, superuser, sign_in, background_worker, shoot
):
    script = _script(superuser, "greet.py", TYPED)
    sign_in(superuser)
    page.goto(f"{live_server.url}/")
    assert page.locator("#admin-link").count() == 1
    page.goto(f"{live_server.url}/admin/scripts/script/{script.pk}/run/")
    page.fill("#id_data", '{"name": "Grace", "count": 4}')
    page.click("#run-form input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/executions/execution/\d+/live/$"))
    log = page.locator("#run-log")
    log.filter(has_text="line 0 for Grace").wait_for(timeout=15_000)
    assert "line 3" not in log.inner_text()
    page.locator("#run-result").wait_for(timeout=20_000)
    assert "Hello, Grace." in page.locator("#run-result").inner_text()
    page.click("a:has-text('View site')")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/admin/")
    assert page.locator("svg.scriptorium-chart").count() == 2
    shoot("admin-index")
    page.emulate_media(color_scheme="dark")
    shoot("admin-index-dark")
    assert page.console_errors == []


def test_api_docs_render_without_any_outside_request(page, live_server, user, sign_in):
    sign_in(user)
    requests, refused = [], []
    page.on("requestfinished", lambda request: requests.append(request.url))
    page.on("requestfailed", lambda request: refused.append((request.url, request.failure)))
    page.goto(f"{live_server.url}/api/docs/")
    page.locator(".swagger-ui .info .title").filter(has_text="Scriptorium API").wait_for()
    page.locator(".opblock-tag").first.wait_for()
    assert page.console_errors == []
    page.goto(f"{live_server.url}/api/redoc/")
    page.locator("h1").filter(has_text="Scriptorium API").wait_for()
    page.locator("text=/auth/token/").first.wait_for()
    outside = [u for u in requests if not u.startswith((live_server.url, "data:", "blob:"))]
    assert outside == [], refused
    # Redoc's "by Redocly" logo is refused by the page's policy before it leaves.
    assert all(reason == "csp" for _, reason in refused), refused
    assert any("/static/drf_spectacular_sidecar/" in u for u in requests)
    assert mail.outbox == []
