"""The upload page as a line PC shows it: system Chromium at 800x600, driven by Playwright, against a real
uvicorn server on a port it picked (read back), with the tiny test bundle and generated images.

The decision badge in view after an upload, dates on one line, a batch's files in the order given, the
verdict buttons replaced by the verdict recorded (with the operator's remembered name), names with bidi and
control characters shown neutralised, the probability against the threshold in words, the CSV download with
and without a key, the key field submitting on Enter, and a wrong key reading differently from a missing one.
Skips with a reason without Chromium or Playwright, unless ``DEFECTLENS_REQUIRE_UI_TESTS=1``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.test_serve_browser import ARGS, CHROMIUM, ServerThread
from tests.require import import_or_missing, missing
from tests.unit.serve.conftest import KEY, png_bytes

VIEWPORT = {"width": 800, "height": 600}
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"]
CONTROLS = [*BIDI, "\u061c", "\u2028", "\u2029", "\ufeff", "\x85", "\x9b"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """System Chromium, one per module (checked before the bundle is built, as test_serve_browser does)."""
    if CHROMIUM is None:
        missing("UI_TESTS", "chromium not installed (apt-get install -y chromium)")
    import_or_missing(
        "playwright.sync_api", flag="UI_TESTS", reason="playwright not installed (pip install 'defectlens[dev]')"
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def predictor(bundle):
    from defectlens.inference.predictor import Predictor

    return Predictor.load(bundle, threads=1)


@pytest.fixture
def serve(predictor, tmp_path):
    """``serve(**config)`` -> (URL, InspectionLog) of a real server for the test's duration."""
    from defectlens.inspections import InspectionLog
    from defectlens.serve import ServeConfig, create_app

    @contextmanager
    def make(**config) -> Iterator[tuple[str, InspectionLog]]:
        with InspectionLog(tmp_path / f"log-{len(list(tmp_path.iterdir()))}.sqlite") as log:
            app = create_app(predictor, log, config=ServeConfig(worker_threads=2, **config))
            with ServerThread(app) as url:
                yield url, log

    return make


@pytest.fixture
def page(browser, serve):  # the browser first: without it, the test skips before the bundle is built
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    opened = context.new_page()
    yield opened
    context.close()


def images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        (folder / name).write_bytes(png_bytes(i, size=(48, 48)))
        paths.append(folder / name)
    return paths


def shot(page, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("DEFECTLENS_SCREENSHOTS") or tmp_path)
    page.screenshot(path=str(folder / f"{name}.png"))


def open_page(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url + "/")
    expect(page.locator("#threshold-box")).to_be_visible()  # the model loaded


@pytest.mark.slow
def test_the_badge_is_in_view_at_800x600_and_dates_stay_on_one_line(page, serve, tmp_path):
    from playwright.sync_api import expect

    with serve() as (url, _):
        open_page(page, url)
        page.set_input_files("#files", [str(p) for p in images(tmp_path / "in", ["a.png", "b.png", "c.png"])])
        expect(page.locator("article.result")).to_have_count(3)
        expect(page.locator("#recent tbody tr")).to_have_count(3)
        shot(page, tmp_path, "page-800x600")
        assert page.evaluate("window.scrollY") == 0
        for badge in page.locator("article.result .decision").all()[:2]:  # the first row of cards
            box = badge.bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"], box
        lines = page.evaluate(
            """() => Array.from(document.querySelectorAll('#recent td.time'), (td) => {
                 const range = document.createRange(); range.selectNodeContents(td);
                 return new Set(Array.from(range.getClientRects(), (r) => Math.round(r.top))).size; })"""
        )
        assert lines == [1, 1, 1]
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]  # no sideways scrolling


@pytest.mark.slow
def test_a_batch_is_shown_in_the_order_given(page, serve, tmp_path):
    from playwright.sync_api import expect

    with serve() as (url, log):
        open_page(page, url)
        first = ["zeta.png", "alpha.png", "mid.png", "b.png"]
        page.set_input_files("#files", [str(p) for p in images(tmp_path / "one", first)])
        expect(page.locator("article.result")).to_have_count(4)
        assert page.locator("article.result h3.file").all_text_contents() == first
        page.set_input_files("#files", [str(p) for p in images(tmp_path / "two", ["y.png", "x.png"])])
        expect(page.locator("article.result")).to_have_count(6)
        assert page.locator("article.result h3.file").all_text_contents() == ["y.png", "x.png", *first]
        ids = [
            int(i) for i in page.locator("article.result").evaluate_all("(a) => a.map((n) => n.dataset.inspectionId)")
        ]
        assert [log.get(i).client_name for i in ids] == ["y.png", "x.png", *first]


@pytest.mark.slow
def test_a_verdict_replaces_the_buttons_and_carries_the_operator(page, serve, tmp_path):
    from playwright.sync_api import expect

    with serve() as (url, log):
        open_page(page, url)
        page.set_input_files("#files", [str(p) for p in images(tmp_path / "in", ["a.png", "b.png"])])
        rows = page.locator("#recent tbody tr")
        expect(rows).to_have_count(2)
        row = rows.first
        inspection = int(row.get_attribute("data-inspection-id"))
        row.locator("button.confirm").click()  # no operator yet: asked for, nothing recorded
        expect(page.locator("#status")).to_contain_text("enter your name as operator")
        assert log.verdicts(inspection) == []
        page.fill("#operator", "Ana Lima")
        row.locator("button.confirm").click()
        row = page.locator(f'#recent tr[data-inspection-id="{inspection}"]')
        expect(row.locator(".verdict")).to_have_text(f"confirmed → {log.get(inspection).prediction} by Ana Lima")
        assert row.locator("button.confirm, button.override").count() == 0
        assert [(v.verdict, v.operator) for v in log.verdicts(inspection)] == [("confirmed", "Ana Lima")]
        other = rows.nth(1)
        assert other.locator("button.confirm").count() == 1  # the row not yet judged keeps its buttons
        page.reload()  # the name is remembered
        expect(page.locator("#operator")).to_have_value("Ana Lima")
        row = page.locator(f'#recent tr[data-inspection-id="{inspection}"]')
        expect(row.locator(".verdict")).to_contain_text("confirmed")
        row.locator("button.change").click()  # a second verdict, kept in the history beside the first
        row.locator("button.override").click()
        expect(row.locator(".verdict")).to_contain_text("overridden")
        assert [v.verdict for v in log.verdicts(inspection)] == ["confirmed", "overridden"]
        shot(page, tmp_path, "verdicts")


@pytest.mark.slow
def test_bidi_and_control_characters_in_names_are_shown_neutralised(page, serve, tmp_path):
    from playwright.sync_api import expect

    with serve() as (url, log):
        open_page(page, url)
        names = [f"part_{c}gnp.exe" for c in BIDI[:6]] + ["x\u2067y\u2069z.png", "\u200fa\u200e.png"]
        files = [
            {"name": n, "mimeType": "image/png", "buffer": png_bytes(i, size=(48, 48))} for i, n in enumerate(names)
        ]
        page.set_input_files("#files", files)
        expect(page.locator("article.result")).to_have_count(len(names))
        expect(page.locator("#recent tbody tr")).to_have_count(len(names))
        shown = page.locator("article.result h3.file").all_text_contents()
        listed = page.locator("#recent td.file").all_text_contents()
        for text in [*shown, *listed, *page.locator("#recent td.file").evaluate_all("(t) => t.map((n) => n.title)")]:
            assert not any(c in text for c in CONTROLS), repr(text)
        assert shown[0] == "part_[U+202A]gnp.exe" and shown[4] == "part_[U+202E]gnp.exe"
        assert [r.client_name for r in log.query(limit=len(names))][::-1] == names  # the log keeps the names as given
        # every hidden character, alone and inside a name, comes out visible
        for c in CONTROLS + [chr(i) for i in range(0x20)] + ["\x7f"]:
            out = page.evaluate("(s) => safeText(s)", f"a{c}b")
            assert out == f"a[U+{ord(c):04X}]b", (hex(ord(c)), out)
        assert page.evaluate("(s) => safeText(s)", "plain-name_1 (2).png") == "plain-name_1 (2).png"


@pytest.mark.slow
def test_the_card_reads_the_defect_probability_against_the_threshold(page, serve, tmp_path):
    from playwright.sync_api import expect

    with serve() as (url, log):
        open_page(page, url)
        page.set_input_files("#files", [str(p) for p in images(tmp_path / "in", ["a.png"])])
        card = page.locator("article.result").first
        expect(card.locator(".decision")).to_be_visible()
        row = log.get(int(card.get_attribute("data-inspection-id")))
        p = row.defect_probability
        page.locator("#threshold").focus()
        page.keyboard.press("Home")
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        expect(page.locator("#threshold-value")).to_have_text("0.05")
        side = "at or above" if p >= 0.05 else "below"
        expect(card.locator(".probability")).to_have_text(
            f"defect probability {100 * p:.1f}\u00a0% is {side} the threshold 5\u00a0%"
        )
        assert "confidence" not in card.inner_text()
        label = "defect" if p >= 0.05 else "ok"
        expect(card.locator(".decision")).to_have_text(label)
        if label != row.prediction:
            expect(card.locator(".relabelled")).to_have_text(f"(logged as {row.prediction} at threshold 0.5)")
        page.keyboard.press("End")
        expect(card.locator(".probability")).to_contain_text("is below the threshold 100\u00a0%")
        expect(card.locator(".decision")).to_have_text("ok")


def downloaded_rows(page) -> list[dict[str, str]]:
    with page.expect_download() as info:
        page.click("#download-csv")
    download = info.value
    assert download.suggested_filename == "inspections.csv"
    return list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))


@pytest.mark.slow
def test_csv_download_without_a_key(page, serve, tmp_path):
    from playwright.sync_api import expect

    with serve() as (url, log):
        open_page(page, url)
        page.set_input_files("#files", [str(p) for p in images(tmp_path / "in", ["a.png", "=1+2.png"])])
        expect(page.locator("#recent tbody tr")).to_have_count(2)
        rows = downloaded_rows(page)
        assert [r["client_name"] for r in rows] == ["a.png", "'=1+2.png"] and len(rows) == log.count()


@pytest.mark.slow
def test_the_key_field_submits_on_enter_and_a_wrong_key_reads_differently(page, serve, tmp_path):
    from playwright.sync_api import expect

    with serve(api_key=KEY) as (url, log):
        page.goto(url + "/")
        expect(page.locator("#key-panel")).to_be_visible()
        expect(page.locator("#key-message")).to_have_text("This service needs an API key: enter it")
        expect(page.locator("#status")).to_contain_text("API key missing")
        page.fill("#api-key", "not-the-key-123")
        page.press("#api-key", "Enter")
        expect(page.locator("#key-message")).to_have_text(
            "API key not accepted: enter the key this service was started with"
        )
        expect(page.locator("#status")).to_contain_text("API key not accepted")
        page.fill("#api-key", KEY)
        page.press("#api-key", "Enter")  # Enter, not the button
        expect(page.locator("#threshold-box")).to_be_visible()
        expect(page.locator("#key-panel")).to_be_hidden()
        page.set_input_files("#files", [str(p) for p in images(tmp_path / "in", ["a.png", "b.png", "c.png"])])
        expect(page.locator("#recent tbody tr")).to_have_count(3)
        rows = downloaded_rows(page)  # with the key, which a plain link could not send
        assert [r["client_name"] for r in rows] == ["a.png", "b.png", "c.png"] and len(rows) == log.count()


ATTACK = """<!doctype html><title>cute cats</title><script>
async function attack(target) {
  const form = new FormData();
  const png = Uint8Array.from(atob(PNG), (c) => c.charCodeAt(0));
  form.append("files", new Blob([png], { type: "image/png" }), "planted.png");
  form.append("threshold", "1");
  await fetch(target, { method: "POST", mode: "no-cors", body: form });
  return "sent";
}
</script>"""


@pytest.mark.slow
def test_a_cross_site_page_cannot_post_into_the_log(browser, serve):
    """The attack of #33 in a real browser: a page on another site posts an upload with a no-cors fetch.

    Chromium 142+ asks the user before a public page may reach this machine (Local Network Access); the
    check is switched off here, as in a browser without it or where the operator clicked "allow".
    """
    import base64

    permissive = browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*ARGS, "--disable-features=LocalNetworkAccessChecks"]
    )
    with serve() as (url, log):
        png = base64.b64encode(png_bytes(0, size=(48, 48))).decode()
        html = ATTACK.replace("<script>", f"<script>const PNG = {png!r};")
        page = permissive.new_page()
        page.route("http://attacker.test/**", lambda route: route.fulfill(body=html, content_type="text/html"))
        page.goto("http://attacker.test/")
        refused = []
        page.on("response", lambda r: refused.append(r.status) if r.url == url + "/v1/predict" else None)
        assert page.evaluate("(t) => attack(t)", url + "/v1/predict") == "sent"
        assert refused == [403]  # it reached the service, which refused it
        assert log.count() == 0  # nothing of it in the log
    permissive.close()
