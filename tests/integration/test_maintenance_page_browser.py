"""The maintenance page in a real headless browser, served by the shipped HAProxy config during a window.

What a visitor sees: the message and the expected end, visible at a desktop
and a phone width, the end in the visitor's own time zone (UTC without
script), a hostile message shown as text that runs nothing, and the page
coming back to the application by itself once the window ends, without
reloading more than once a minute. Timers run on the browser's virtual time
(DevTools ``Emulation.setVirtualTimePolicy``), so minutes of waiting take
milliseconds while the page's own code runs unchanged. Screenshots go to the
test's tmp dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.core.model import Intent, Mode
from agent.daemon.local.statefile import StateFile
from agent.daemon.steps.base import StepContext
from agent.daemon.steps.haproxy import EdgeTrafficStep
from demo.harness.haproxy import BACKEND_MARKER, HAProxyUnderTest, edge_section
from tests.fixtures.browser import DevToolsPage, HeadlessChromium, chromium
from tests.fixtures.edge import backend, hap  # noqa: F401 - pytest fixtures

HOSTILE = 'Back soon \U0001f527 <script>window.__pwned = "script"</script> "><img src=x onerror="window.__pwned = \'img\'"> & done'
VIEWPORTS = {"desktop": (1280, 800, 1, False), "phone": (390, 844, 3, True)}

VISIBLE = """(selector => {
  const el = document.querySelector(selector);
  if (!el) return null;
  const box = el.getBoundingClientRect(), style = getComputedStyle(el);
  return {text: el.textContent, width: box.width, height: box.height, left: box.left, right: box.right, top: box.top,
          bottom: box.bottom, visible: style.visibility === "visible" && style.display !== "none" && Number(style.opacity) > 0,
          viewport: [innerWidth, innerHeight], scrollWidth: document.documentElement.scrollWidth};
})"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[HeadlessChromium]:
    with chromium(tmp_path / "chromium") as started:
        yield started


def switch(tmp_path: Path, hap: HAProxyUnderTest, intent: Intent, **edge: object) -> tuple[EdgeTrafficStep, StepContext]:
    step = EdgeTrafficStep(edge_section(hap, **edge))
    ctx = StepContext(intent=intent, node="edge-1", memory=StateFile(tmp_path / "state.json"))
    step.apply(ctx)
    return step, ctx


def open_page(browser: HeadlessChromium, url: str, viewport: str, timezone: str = "Asia/Tokyo") -> DevToolsPage:
    width, height, scale, mobile = VIEWPORTS[viewport]
    page = browser.page()
    page.call("Network.enable")
    page.call("Log.enable")
    page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=scale, mobile=mobile)
    page.call("Emulation.setTimezoneOverride", timezoneId=timezone)
    page.call("Emulation.setLocaleOverride", locale="en-US")
    page.navigate(url)
    return page


def advance(page: DevToolsPage, seconds: float) -> None:
    """Let ``seconds`` of the page's time pass (timers fire; time stands still while a load is on the wire), then pause it."""
    page.call("Emulation.setVirtualTimePolicy", policy="pauseIfNetworkFetchesPending", budget=int(seconds * 1000))
    page.wait_event("Emulation.virtualTimeBudgetExpired", timeout=60)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_page_shows_message_and_local_end_runs_nothing_hostile(tmp_path: Path, hap: HAProxyUnderTest, browser: HeadlessChromium,
                                                               viewport: str) -> None:
    ends = (datetime.now(UTC) + timedelta(minutes=30)).replace(second=0, microsecond=0)
    switch(tmp_path, hap, Intent(mode=Mode.MAINTENANCE, index=3, message=HOSTILE, ends_at=ends))
    page = open_page(browser, hap.url("/dashboard"), viewport)
    page.screenshot(tmp_path / "screenshots" / f"maintenance-{viewport}.png")

    message = page.evaluate(f"{VISIBLE}('.message')")
    width, height = message["viewport"]
    assert message["text"] == HOSTILE, "the message is shown as text, exactly as typed"
    end = page.evaluate(f"{VISIBLE}('#maintenance-end')")
    local = ends.astimezone(ZoneInfo("Asia/Tokyo"))
    assert local.strftime("%H:%M") in end["text"] and "GMT+9" in end["text"], end["text"]
    assert str(local.day) in end["text"] and local.strftime("%b") in end["text"]
    for item in (message, end, page.evaluate(f"{VISIBLE}('h1')")):
        assert item["visible"] and item["width"] > 0 and item["height"] > 0, item
        assert item["left"] >= 0 and item["right"] <= width and item["top"] >= 0 and item["bottom"] <= height, (viewport, item)
    assert message["scrollWidth"] <= width, "no sideways scrolling"

    assert page.evaluate("window.__pwned === undefined"), "nothing of the message ran"
    violations = [e for e in page.events if e["method"] == "Log.entryAdded" and "Content Security Policy" in e["params"]["entry"]["text"]]
    assert violations == [], "the page's own script is the one its policy allows"
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.scripts.length") == 1, "only the page's own script"
    requested = {e["params"]["request"]["url"] for e in page.events if e["method"] == "Network.requestWillBeSent"}
    requested |= {page.evaluate("location.href")}
    assert all(url.startswith(hap.url("/")) for url in requested), requested


def test_without_script_the_end_reads_in_utc(tmp_path: Path, hap: HAProxyUnderTest, browser: HeadlessChromium) -> None:
    ends = (datetime.now(UTC) + timedelta(minutes=30)).replace(second=0, microsecond=0)
    switch(tmp_path, hap, Intent(mode=Mode.MAINTENANCE, index=3, message="Back soon", ends_at=ends))
    page = browser.page()
    page.call("Emulation.setScriptExecutionDisabled", value=True)
    page.call("Emulation.setTimezoneOverride", timezoneId="Asia/Tokyo")
    page.navigate(hap.url("/"))
    page.screenshot(tmp_path / "screenshots" / "maintenance-noscript.png")
    assert page.evaluate("document.getElementById('maintenance-end').textContent") == ends.strftime("%Y-%m-%d %H:%M UTC")


def test_page_comes_back_by_itself_at_most_once_a_minute(tmp_path: Path, hap: HAProxyUnderTest, browser: HeadlessChromium) -> None:
    """Retry-After of 1 s (the window's end passed, retry_min 1): the page still waits a minute between reloads."""
    ended = datetime.now(UTC) - timedelta(minutes=1)
    step, ctx = switch(tmp_path, hap, Intent(mode=Mode.MAINTENANCE, index=4, message="Back soon", ends_at=ended),
                       min_retry_after_seconds=1, default_retry_after_seconds=1)
    page = open_page(browser, hap.url("/dashboard"), "phone")
    assert page.evaluate("document.querySelector('script').dataset.retryAfter") == "1"
    page.evaluate("window.__first_load = true")

    advance(page, 55)
    assert page.evaluate("window.__first_load === true"), "no reload before a minute passed"
    advance(page, 10)
    page.wait_event("Page.loadEventFired")
    assert page.evaluate("window.__first_load === undefined"), "reloaded once the minute passed"
    assert page.evaluate("document.querySelector('main').dataset.maintenance") == "on", "still in the window"

    step.revert(ctx)  # the window ends
    advance(page, 65)
    page.wait_event("Page.loadEventFired")
    page.screenshot(tmp_path / "screenshots" / "after-window.png")
    body = page.evaluate("document.body.innerText")
    assert body.startswith(BACKEND_MARKER) and "path=/dashboard" in body, body
