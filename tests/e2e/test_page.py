"""The browser page for people who use a keyboard, a screen reader or a phone: axe-core (from npm) finds no WCAG
2.1 A/AA violation idle and in a session; start, mute and stop work from the keyboard alone; state changes and
captions are live regions present from the start; errors are said in words; a phone-sized viewport needs no
sideways scrolling. Screenshots (idle, talking, an error) go to out/screenshots/. Headless Chromium with fake
devices against `tutti serve` in echo mode on 127.0.0.1."""
from __future__ import annotations

from pathlib import Path

import pytest

from assistant.engine import Engine
from tests.support.loopback import CHROMIUM, launch_chromium, serving, started_page

from ..conftest import random_codec
from .test_browser import write_wav

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / ".npm/node_modules/axe-core/axe.min.js"
SHOTS = ROOT / "out/screenshots"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


async def violations(page) -> list[str]:
    """axe-core's WCAG A/AA violations on the page as it is, each as "rule: where"."""
    if not AXE.exists():
        pytest.skip("axe-core is not installed (make test installs it with npm)")
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    found = await page.evaluate(f"axe.run(document, {{runOnly: {WCAG}}}).then(r => r.violations)")
    return [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in found]


@pytest.mark.asyncio
async def test_the_page_passes_axe_and_works_from_the_keyboard(tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    engine = Engine(random_codec(), max_sessions=2)
    async with serving(engine) as (url, _):
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            browser = await launch_chromium(p, write_wav(tmp_path / "mic.wav"))
            try:
                page = await browser.new_page()
                await page.goto(url + "/")
                assert await page.get_attribute("#captions", "role") == "log"
                assert await page.get_attribute("#status", "aria-live") == "polite"
                assert await violations(page) == []
                await page.screenshot(path=str(SHOTS / "idle.png"), full_page=True)
                await page.select_option("#camera", "")
                await page.keyboard.press("Alt+Shift+S")  # start, from the keyboard alone
                await page.wait_for_function("window.tutti.connected === true", timeout=15_000)
                await page.wait_for_function("document.querySelector('#status').textContent === 'Listening.'")
                assert len(engine.sessions) == 1
                await page.keyboard.press("Alt+Shift+M")
                assert await page.get_attribute("#mute", "aria-pressed") == "true"
                assert await page.inner_text("#status") == "Microphone muted."
                assert await page.evaluate("window.tutti.micEnabled()") is False
                await page.keyboard.press("Alt+Shift+M")
                assert await page.evaluate("window.tutti.micEnabled()") is True
                assert await violations(page) == []
                await page.screenshot(path=str(SHOTS / "talking.png"), full_page=True)
                await page.keyboard.press("s")  # a single key does nothing
                assert await page.evaluate("window.tutti.connected") is True
                await page.keyboard.press("Alt+Shift+E")
                await page.wait_for_function("window.tutti.connected === false")
                assert await page.inner_text("#status") == "Stopped."
                assert await page.evaluate("document.activeElement.id") == "start"
            finally:
                await browser.close()


@pytest.mark.asyncio
async def test_a_full_server_is_said_in_words_and_a_phone_needs_no_sideways_scrolling(tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    wav = write_wav(tmp_path / "mic.wav")
    async with serving(Engine(random_codec(), max_sessions=1)) as (url, _):
        async with started_page(url, wav):  # takes the only slot
            from playwright.async_api import async_playwright

            async with async_playwright() as p:
                browser = await launch_chromium(p, wav)
                try:
                    page = await browser.new_page(viewport={"width": 375, "height": 740})
                    await page.goto(url + "/")
                    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                    await page.select_option("#camera", "")
                    await page.click("#start")
                    await page.wait_for_function("document.querySelector('#status').textContent.includes('full')")
                    assert "try again shortly" in await page.inner_text("#status")
                    assert await page.is_enabled("#start")
                    assert await violations(page) == []
                    await page.screenshot(path=str(SHOTS / "error.png"), full_page=True)
                finally:
                    await browser.close()
