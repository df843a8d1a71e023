"""Page tests in Debian's headless Chromium, driven by Playwright (no browser download)."""

import os
import shutil

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# around it are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": shutil.which("chromium") or "/usr/bin/chromium",
        "args": CHROMIUM_FLAGS,
    }


# --- Shared by the portal's page tests ----------------------------------------------
import signal  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from django.db import connections  # noqa: E402

SCREENSHOTS = Path(__file__).parent / "screenshots"  # git-ignored
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TEST_SECONDS = 40


@pytest.fixture(autouse=True)
def _bounded_in_time():
    """Every page test fails after TEST_SECONDS instead of hanging CI."""

    def expire(signum, frame):
        raise TimeoutError(f"page test took more than {TEST_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def page(page):
    """Playwright's page with short timeouts and its console errors collected in
    ``page.console_errors`` (tests assert there are none)."""
    page.set_default_timeout(10_000)
    page.console_errors = []
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    return page


@pytest.fixture
def background_worker(monkeypatch):
    """Runs start in a thread of their own, as a worker would, instead of inline in the
    request (test settings run tasks synchronously): pages can follow them live."""
    from executions import services
    from executions.worker import execution_run

    threads = []

    def run(execution_id):
        try:
            execution_run(execution_id=execution_id)
        finally:
            connections.close_all()

    def enqueue(execution_id):
        thread = threading.Thread(target=run, args=(execution_id,), daemon=True)
        threads.append(thread)
        thread.start()

    monkeypatch.setattr(services, "_enqueue", enqueue)
    yield threads
    for thread in threads:
        thread.join(timeout=15)


@pytest.fixture
def shoot(page):
    """``shoot(name)`` writes screenshots/<name>-desktop.png and <name>-phone.png."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(name: str, *, full_page: bool = True):
        size = page.viewport_size
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=full_page)
        page.set_viewport_size(size)

    return take


@pytest.fixture
def sign_in(page, live_server):
    """``sign_in(user)``: the browser carries a session of ``user`` (no login page)."""
    from django.conf import settings
    from django.test import Client

    def login(user):
        client = Client()
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        page.context.add_cookies(
            [{"name": cookie.key, "value": cookie.value, "url": live_server.url}]
        )
        return page

    return login
