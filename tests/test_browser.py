"""A person's path through the app in a real browser: headless Chromium (Debian) driven by playwright opens the
page, uploads a cloud, runs the comparison and waits for the three labels, then switches the task to electronic
components, picks one of that task's examples, compares it with that task's entries and saves the screenshot."""
import os
import shutil
from pathlib import Path

import pytest
from benchmarks.app_load import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian chromium is not installed (.ci/run installs it with apt)")
ROOT = Path(__file__).resolve().parents[1]


def test_upload_compare_and_screenshot(tmp_path):
    from playwright.sync_api import sync_playwright

    import app
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(app.demo.local_url, wait_until="networkidle")
            page.locator("input[type=file]").first.set_input_files(str(ROOT / "examples" / "sofa.ply"))
            page.get_by_role("button", name="Compare").click()
            for modality in app.MODALITIES:  # each gr.Label shows its top class once the comparison is done
                label = page.locator(".block", has=page.get_by_text(modality, exact=True)).locator(
                    "[data-testid=label-output-value]")
                label.first.wait_for(timeout=180_000)
            page.wait_for_timeout(1000)
            furniture = page.inner_text("body")
            # the second task: its entries replace the pickers', its examples replace the furniture ones, and a
            # component example (the file box now holds the sofa, so it has no file input) is compared
            page.get_by_text(app.TASKS["kicad33"], exact=True).click()
            page.get_by_text("relay.ply").first.click(timeout=30_000)
            page.wait_for_timeout(1000)
            page.get_by_role("button", name="Compare").click()
            for name in app.TASK_DEFAULTS["kicad33"].values():  # a card names its entry once it has run
                page.locator("strong", has_text=name).first.wait_for(timeout=180_000)
            page.wait_for_timeout(1500)
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            components = page.inner_text("body")
            stale = [n for n in app.DEFAULTS.values() if page.locator("strong", has_text=n).count()]
            browser.close()
        assert shot.stat().st_size > 10_000
        for name in app.DEFAULTS.values():  # each card names its entry and its latency
            assert name in furniture
        assert furniture.count(" ms ·") >= 3
        assert components.count(" ms ·") >= 3 and not stale  # the furniture cards were replaced
        if os.environ.get("SAVE_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "screenshot.png")
    finally:
        app.demo.close()
