"""A person signs in to the admin and watches a run's log arrive live."""

import textwrap
import threading

import pytest

from executions import services as execution_services
from scripts import services as script_services

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TICKER = textwrap.dedent(
    """
    import time
    def main(n: int = 4) -> dict:
        for i in range(n):
            print(f"tick {i}", flush=True)
            time.sleep(0.6)
        return {"ticks": n}
    """
)


@pytest.fixture
def signed_in_page(page, live_server, superuser, password):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", superuser.username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


@pytest.mark.django_db(transaction=True)
def test_admin_index_shows_apps_after_login(signed_in_page):
    content = signed_in_page.content()
    assert "Script library" in content and "Runs" in content


@pytest.mark.django_db(transaction=True)
def test_live_log_page_streams_lines_as_they_come(signed_in_page, live_server, superuser):
    version = script_services.script_upload(
        user=superuser, file_name="ticker.py", content=TICKER.encode(), folder=None
    )
    execution = execution_services.execution_start(
        user=superuser, script_ref=version.script_id, inputs={"n": 4}, enqueue=False
    )
    worker = threading.Thread(
        target=execution_services.execution_run, kwargs={"execution_id": execution.pk}
    )
    page = signed_in_page
    page.goto(f"{live_server.url}/admin/executions/execution/{execution.pk}/live/")
    worker.start()
    log = page.locator("#run-log")
    log.filter(has_text="tick 0").wait_for(timeout=15000)
    early = log.inner_text()
    assert "tick 3" not in early, "the log arrived all at once instead of line by line"
    page.locator("#run-status").filter(has_text="succeeded").wait_for(timeout=20000)
    worker.join(timeout=20)
    assert "tick 3" in log.inner_text()
