"""Browser tests of ``vtrain serve`` in headless Chromium (Debian's ``chromium``, driven by Playwright).

They skip, with the reason, only when Chromium or Playwright is missing. Screenshots of every page go
to the test's tmp folder; with ``VTRAIN_SERVE_SCREENSHOTS=DIR`` they are also written to DIR (how
the pictures in docs/serve.md are made).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import make_fake_run, start_server, stop_server, tinyflow_config

CHROMIUM = os.environ.get("VTRAIN_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (CI installs Debian's chromium; see .ci/run's warning if it failed)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.set_default_timeout(30000)
    yield page
    context.close()


def shot(page: Any, tmp_path: Path, name: str, full_page: bool = False) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    docs = os.environ.get("VTRAIN_SERVE_SCREENSHOTS")
    if docs:  # a 64-colour palette keeps the committed pictures small
        from PIL import Image

        Image.open(path).convert("RGB").quantize(colors=64).save(Path(docs) / path.name, optimize=True)


@pytest.fixture
def fake_runs(tmp_path: Path) -> Iterator[Any]:
    root = tmp_path / "runs"
    make_fake_run(root / "lora-rank16", steps=40, video=True)
    make_fake_run(root / "lora-rank32", steps=40, video=True)
    server, served = start_server(root)
    yield served
    stop_server(server, served)


def test_runs_list_run_page_and_video(page: Any, fake_runs: Any, tmp_path: Path) -> None:
    page.goto(fake_runs.url + "/")
    page.wait_for_selector("#runs tr[data-id]")
    assert page.locator("#runs tr[data-id]").count() == 2
    assert page.locator("#runs .status.finished").count() == 2
    shot(page, tmp_path, "serve-runs")
    page.click("text=lora-rank16")
    page.wait_for_selector("video")
    page.wait_for_function("document.querySelector('video').readyState >= 1", timeout=20000)
    duration = page.evaluate("document.querySelector('video').duration")
    assert duration > 0
    page.evaluate("document.querySelector('video').currentTime = 1.0")  # a frame for the screenshot
    assert page.locator("path.series[data-name=smoothed]").get_attribute("data-points") == "40"
    assert page.locator("#config-table td", has_text="command line").count() == 1
    shot(page, tmp_path, "serve-run", full_page=True)


def test_compare_two_runs(page: Any, fake_runs: Any, tmp_path: Path) -> None:
    page.goto(fake_runs.url + "/")
    page.wait_for_selector("#runs tr[data-id]")
    for box in page.locator("input.pick").all():
        box.check()
    page.click("#compare")
    page.wait_for_selector("#side-table video")
    assert page.locator("#chart path.series").count() == 2
    assert page.locator("#side-table video").count() == 2
    page.wait_for_function("[...document.querySelectorAll('#side-table video')].every(v => v.duration > 0)")
    shot(page, tmp_path, "serve-compare")


def _points(page: Any) -> int:
    raw = page.locator("path.series[data-name=raw]")
    return int(raw.get_attribute("data-points")) if raw.count() else 0


def test_start_from_form_watch_stop_resume(page: Any, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    server, served = start_server(root)
    try:
        page.goto(served.url + "/#/new")
        page.wait_for_selector("input[name=learning_rate]")
        assert page.locator(".form label", has_text="tinyflow_width").locator(".owner").inner_text() == "vtrain.testing.plugin"  # the test family, loaded by module
        config = tinyflow_config(root / "from-form", steps=100000)
        config.pop("learning_rate")
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        page.set_input_files("#file", str(config_file))  # start from a config file ...
        page.wait_for_function("document.querySelector('#base').value.includes('from-form')")
        page.fill("input[name=tinyflow_width]", "1")  # below its minimum: shown, not started
        page.fill("input[name=learning_rate]", "0.003")  # ... with form values on top of it
        page.click("#validate")
        page.wait_for_selector("#problems li")
        assert "tinyflow_width" in page.inner_text("#problems")
        shot(page, tmp_path, "serve-form")
        page.fill("input[name=tinyflow_width]", "")
        page.click("#validate")
        page.wait_for_selector("#problems li.ok")
        page.click("#start")
        page.wait_for_selector("#status.running")
        page.wait_for_function("(document.querySelector('path.series[data-name=raw]') || {dataset: {}}).dataset.points > 0",
                               timeout=240000)
        first = _points(page)
        page.wait_for_function(f"document.querySelector('path.series[data-name=raw]').dataset.points > {first}",
                               timeout=60000)  # the curve grows without a reload
        shot(page, tmp_path, "serve-training")
        page.reload()  # the run is the server's child, not the page's: it goes on
        page.wait_for_selector("#status.running")
        assert "training" in page.inner_text("#log")  # the log is followed live
        page.click("#stop")
        page.wait_for_selector("#status.killed", timeout=60000)
        assert "SIGINT" in page.inner_text("#log")
        stopped_at = _points(page)
        page.click("#resume")
        page.wait_for_selector("#status.running")
        page.wait_for_function(f"document.querySelector('path.series[data-name=raw]').dataset.points > {stopped_at}",
                               timeout=240000)
        assert "resumed from" in page.inner_text("#log")
        page.click("#stop")
        page.wait_for_selector("#status.killed", timeout=60000)
        shot(page, tmp_path, "serve-resumed")
    finally:
        stop_server(server, served)


def test_a_10000_step_run_page_draws_every_point(page: Any, tmp_path: Path) -> None:
    """Functional check only: the speed target (< 1 s) is measured by benchmarks/bench_serve_page.py."""
    root = tmp_path / "runs"
    make_fake_run(root / "long", steps=10000)
    server, served = start_server(root)
    try:
        page.goto(served.url + "/")
        page.wait_for_selector("#runs tr[data-id]")
        page.evaluate("location.hash = '#/run/0%2Flong'")
        page.wait_for_function("document.querySelector('path.series[data-name=raw]')?.dataset.points === '10000'",
                               timeout=60000)
        assert page.locator("path.series[data-name=smoothed]").get_attribute("data-points") == "10000"
    finally:
        stop_server(server, served)
