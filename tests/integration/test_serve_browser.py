"""The upload page in a real browser: system Chromium driven by Playwright against a real uvicorn server.

Loads ``/``, uploads a real image (a cracked solar cell from the elpv-dataset package), reads the decision,
moves the threshold slider and sees the label change without a request, records a verdict (checked in the log)
and saves a screenshot (``DEFECTLENS_SCREENSHOT`` names where; default: the test's tmp folder). Skips with a reason when
Chromium or Playwright is missing, unless ``DEFECTLENS_REQUIRE_UI_TESTS=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import elpv_cells
from tests.require import import_or_missing, missing

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def chromium() -> str:
    """System Chromium and Playwright, checked before any other fixture may skip (the real data, say)."""
    if CHROMIUM is None:
        missing("UI_TESTS", "chromium not installed (apt-get install -y chromium)")
    import_or_missing(
        "playwright.sync_api", flag="UI_TESTS", reason="playwright not installed (pip install 'defectlens[dev]')"
    )
    return CHROMIUM


class ServerThread:
    """uvicorn serving ``app`` on a loopback port it binds itself (port 0), in a thread of this process; the
    port is read back from its socket, never guessed beforehand (a port found free, closed and handed over
    may be taken in between)."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120  # waits for startup on a loaded machine; not a timing assertion
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.mark.slow
def test_upload_page_in_chromium(chromium, bundle, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    image = sorted((elpv_cells(tmp_path / "cells", per_class=1) / "defect").iterdir())[0]  # a real cracked cell

    from defectlens.inference.predictor import Predictor
    from defectlens.inspections import InspectionLog
    from defectlens.serve import ServeConfig, create_app

    shot = Path(os.environ.get("DEFECTLENS_SCREENSHOT") or tmp_path / "serve_page.png")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        app = create_app(Predictor.load(bundle, threads=1), log, config=ServeConfig(worker_threads=2))
        with ServerThread(app) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url + "/")
            expect(page.locator("#threshold-box")).to_be_visible()  # the model loaded: binary, so a slider
            page.check("#explain")  # ask for the Grad-CAM overlay
            page.set_input_files("#files", str(image))
            card = page.locator("article.result").first
            expect(card.locator('img[alt="Grad-CAM"]')).to_be_visible(timeout=60_000)
            expect(card.locator(".decision")).to_have_text(re.compile(r"^(ok|defect)$"))
            decision = card.locator(".decision").text_content()
            inspection_id = int(card.get_attribute("data-inspection-id"))
            row = log.get(inspection_id)
            assert row.client_name == image.name and row.prediction == decision and row.source == "web"
            expect(card.locator(".file")).to_have_text(image.name)
            assert card.locator(".bar").count() == 2  # every class probability

            before = len(requests)
            slider = page.locator("#threshold")
            slider.focus()
            page.keyboard.press("Home")  # threshold 0: every part reaches it, so "defect"
            expect(card.locator(".decision")).to_have_text("defect")
            expect(page.locator("#threshold-value")).to_have_text("0.00")
            page.keyboard.press("End")  # threshold 1: no probability below 1 reaches it, so "ok"
            expect(card.locator(".decision")).to_have_text("ok")
            assert len(requests) == before  # re-labelled in the page, no new request
            page.keyboard.press("Home")

            page.fill("#operator", "QA bench")  # a verdict carries the operator's name
            recent = page.locator(f'#recent tr[data-inspection-id="{inspection_id}"]')
            recent.locator("button.override").click()  # the only other class is preselected
            expect(recent.locator(".verdict")).to_contain_text("overridden")
            expect(recent.locator("button.override")).to_have_count(0)  # the verdict replaced the buttons
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        reviewed = log.get(inspection_id)
    assert reviewed.verdict == "overridden" and reviewed.verdict_label in ("ok", "defect")
    assert reviewed.operator == "QA bench"
    assert reviewed.verdict_label != row.prediction
    assert shot.stat().st_size > 10_000
