"""The pool panel in a real browser: headless Chromium (Debian's chromium and chromium-driver) via selenium.

A threaded WSGI server on a free loopback port serves the toolbar test site
(tests/operations/toolbar_site.py) with its static files; Chromium loads a
page whose request waited for a busy pool, opens the toolbar's pool panel and
must show the request's checkout with its server session and wait. The
screenshot is kept in ``.artifacts/`` (git-ignored); docs/images/ has a copy.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.conf import settings

from djpool.core import registry

pytest.importorskip("debug_toolbar", reason="needs django-debug-toolbar")
if not settings.configured:  # the toolbar reads settings on import; only the server suites configure them here
    pytest.skip("needs PostgreSQL or MySQL (Django is not configured)", allow_module_level=True)
pytest.importorskip("selenium", reason="needs selenium")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.operations.toolbar_site import toolbar_installed  # noqa: E402
from tests.servers import BACKEND  # noqa: E402
from tests.conftest import hold_in_thread

pytestmark = pytest.mark.server_backed

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts"
WAIT = 20  # seconds, for every browser wait

requires_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Chromium and its driver: apt-get install chromium chromium-driver (.ci/run installs them)",
)
browser_environment = pytest.mark.skipif(
    os.environ.get("DJPOOL_BROWSER_TESTS") == "0",
    reason="DJPOOL_BROWSER_TESTS=0: the browser test runs in the Python 3.12 environments, one per server "
    "(hatch test -py 3.12 -i backend=postgresql tests/operations/test_debug_toolbar_browser.py)",
)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def live_site() -> Iterator[str]:
    """The toolbar site on 127.0.0.1:<free port>, with static files; stopped after the test."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.wsgi import get_wsgi_application

    with toolbar_installed():
        application = StaticFilesHandler(get_wsgi_application())
        server = make_server("127.0.0.1", 0, application, server_class=_ThreadingServer, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@browser_environment
@requires_chromium
def test_panel_shows_the_checkout_session_and_wait_in_a_browser(make_alias, live_site, browser, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 10})
    # Another thread holds the one connection until the page's request has waited 0.3 s.
    release = threading.Event()
    holder = hold_in_thread(alias, release)

    def release_after_the_page_waited() -> None:
        deadline = time.monotonic() + WAIT
        while registry.stats(alias).get("waiting", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        release.set()

    releaser = threading.Thread(target=release_after_the_page_waited)
    releaser.start()
    try:
        browser.get(f"{live_site}/sessions/?alias={alias}")
    finally:
        releaser.join(WAIT + 1)
        release.set()
        holder.join(10)
    pid = browser.find_element(By.CSS_SELECTOR, "li.session").text
    assert int(pid) in server.session_ids()

    ARTIFACTS.mkdir(exist_ok=True)
    try:
        open_the_panel(browser, pid)
    except Exception:
        browser.save_screenshot(str(ARTIFACTS / f"debug-toolbar-pool-panel-{BACKEND}-failed.png"))
        (ARTIFACTS / f"debug-toolbar-pool-panel-{BACKEND}-failed.html").write_text(browser.page_source)
        raise

    screenshot = ARTIFACTS / f"debug-toolbar-pool-panel-{BACKEND}.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000


def open_the_panel(browser: webdriver.Chrome, pid: str) -> None:
    """Open the toolbar and the pool panel; check it shows the session ``pid`` and the wait."""
    wait = WebDriverWait(browser, WAIT)

    def toolbar_root(driver: webdriver.Chrome) -> object:
        # Recent toolbars render into a shadow root on #djDebugRoot; older ones into the page.
        hosts = driver.find_elements(By.ID, "djDebugRoot")
        if hosts:
            return driver.execute_script("return arguments[0].shadowRoot", hosts[0]) or False
        return driver if driver.find_elements(By.ID, "djDebug") else False

    root = wait.until(toolbar_root)

    def find(selector: str) -> object:
        return wait.until(
            lambda driver: (lambda found: found[0] if found and found[0].is_displayed() else False)(
                root.find_elements(By.CSS_SELECTOR, selector)
            )
        )

    if (
        not root.find_elements(By.CSS_SELECTOR, "#djdt-PoolPanel a")
        or not root.find_element(By.CSS_SELECTOR, "#djDebugToolbar").is_displayed()
    ):
        find("#djShowToolBarButton").click()
    link = find("#djdt-PoolPanel a")
    assert "ms waited" in link.text
    browser.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", link)
    session_cell = find("#PoolPanel td.djpool-session")
    assert session_cell.text == pid
    waited = find("#PoolPanel td.djpool-wait").text
    assert waited.endswith(" ms") and float(waited.split()[0]) >= 300, waited
    title = find("#PoolPanel h3").text
    assert "ms waited for connections" in title
