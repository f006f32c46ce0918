"""The web demo in a real browser: Debian's Chromium driven by Selenium against the app served on 127.0.0.1.

Skips when Gradio, Selenium or Chromium is missing on a developer's machine; under CI (``CI`` or
``RESTOK_REQUIRE_BROWSER`` set, as ``.ci/run`` does) a missing piece fails instead. Screenshots of every stage go to
``test-artifacts/`` (or ``$RESTOK_TEST_ARTIFACTS``)."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import socket
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RESTOK_TEST_ARTIFACTS", ROOT / "test-artifacts"))
REQUIRED = bool(os.environ.get("CI") or os.environ.get("RESTOK_REQUIRE_BROWSER"))


def _need(ok: bool, what: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} is missing, and CI must run the browser tests (.ci/run installs it)")
        pytest.skip(f"{what} is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        _need(False, "gradio (pip install 'restok[app]')")
    import torch

    from restok.apps.web import build_app
    from restok.models import TiTok

    other = Path(tempfile.mkdtemp()) / "titok-tiny"
    torch.manual_seed(0)
    TiTok.from_preset("titok-tiny").save_pretrained(other)  # random weights: a second family beside the first
    demo = build_app("restok-tiny-mnist", "har-tiny-mnist", compare=[str(other)])
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need(False, "selenium")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    _need(
        bool(chromium and driver), "Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
    )
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1400"):
        opts.add_argument(a)
    b = webdriver.Chrome(service=Service(driver), options=opts)
    b.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield b
    b.quit()


def _wait(b, find, timeout: float = 60.0):
    """Poll ``find(browser)`` until it returns something truthy."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = find(b)
        except Exception:  # noqa: BLE001 - elements come and go while Gradio renders
            last = None
        if last:
            return last
        time.sleep(0.2)
    b.save_screenshot(str(ARTIFACTS / "app-timeout.png"))
    raise AssertionError("the page did not show what was expected in time (see test-artifacts/app-timeout.png)")


def _css(b, sel):
    from selenium.webdriver.common.by import By

    return b.find_elements(By.CSS_SELECTOR, sel)


def _flat(el) -> str:
    """An element's text without whitespace (Gradio shows a file name as separate stem and suffix spans)."""
    return "".join((el.get_attribute("textContent") or "").split())


def _image(b, img) -> np.ndarray:
    """The pixels an <img> shows (fetched from the app, or decoded from a data: URL)."""
    src = img.get_attribute("src")
    if src.startswith("data:"):
        import base64

        data = base64.b64decode(src.split(",", 1)[1])
    else:
        data = urllib.request.urlopen(src, timeout=30).read()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.slow
def test_tokenizer_tab_in_a_browser(app_url, browser, tmp_path) -> None:
    from restok.data.embedded import MNISTDigits
    from restok.data.images import to_pil

    digit = tmp_path / "digit.png"
    to_pil(MNISTDigits("test", 32)[420]["image"]).save(digit)
    b = browser
    b.get(app_url)
    _wait(b, lambda b: _css(b, "#tok-upload input[type=file]"))
    # the page opens on an example already tokenized, the other tokenizer beside it
    opened = _wait(b, lambda b: [c.text for c in _css(b, "#psnr-table td.psnr")] or None)
    assert len(opened) == 4 and "first 32 tokens" in _css(b, "#recon-caption")[0].text
    side = _wait(b, lambda b: [c.text for c in _css(b, "#psnr-table-compare td.psnr")] or None)
    assert len(side) == 1 and "titok" in _css(b, "#tok-compare-psnr")[0].text  # TiTok reports its one budget, 8 tokens
    assert len(_css(b, "#tok-compare-gallery img")) >= 1
    b.save_screenshot(str(ARTIFACTS / "app-1-start.png"))
    _css(b, "#tok-upload input[type=file]")[0].send_keys(str(digit))
    _wait(b, lambda b: "digit.png" in _flat(_css(b, "#tok-upload")[0]))
    _css(b, "#tok-run")[0].click()
    _wait(b, lambda b: "digit.png" in _css(b, "#tok-ok")[0].text)  # the uploaded image replaced the opening example
    cells = _wait(b, lambda b: [c.text for c in _css(b, "#psnr-table td.psnr")] or None)
    psnr = [float(c) for c in cells]
    assert len(psnr) == 4 and psnr == sorted(psnr) and psnr[-1] > psnr[0] + 3, psnr
    gallery = _wait(b, lambda b: len(_css(b, "#tok-gallery img")) >= 4 and _css(b, "#tok-gallery img"))
    first, last = _image(b, gallery[0]), _image(b, gallery[3])
    assert (
        first.shape == last.shape and np.abs(first.astype(int) - last.astype(int)).mean() > 2
    )  # 4 vs 32 tokens differ
    assert "level 0" in _css(b, "#ids-table")[0].text and _css(b, "#tok-download a")
    caption = _wait(b, lambda b: _css(b, "#recon-caption") and _css(b, "#recon-caption")[0].text)
    assert "32" in caption
    before = _image(b, _css(b, "#tok-recon img")[0])
    b.save_screenshot(str(ARTIFACTS / "app-2-tokenized.png"))
    # the slider counts tokens: 13 snaps to the next shorter prefix the tokenizer decodes (8); the large
    # reconstruction follows
    from selenium.webdriver.common.keys import Keys

    box = _css(b, "#tok-slider input[type=number]")[0]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("13", Keys.ENTER)
    _wait(b, lambda b: "first 8 tokens" in _css(b, "#recon-caption")[0].text)
    _wait(b, lambda b: _css(b, "#tok-slider input[type=number]")[0].get_attribute("value") == "8")
    changed = _wait(b, lambda b: not np.array_equal(_image(b, _css(b, "#tok-recon img")[0]), before))
    assert changed
    b.save_screenshot(str(ARTIFACTS / "app-3-slider.png"))
    # a file that is not an image: a clear message in the page, no stack trace
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not an image")
    _css(b, "#tok-upload button[aria-label='Clear']") and _css(b, "#tok-upload button[aria-label='Clear']")[0].click()
    _wait(b, lambda b: _css(b, "#tok-upload input[type=file]"))
    _css(b, "#tok-upload input[type=file]")[0].send_keys(str(bad))
    _wait(b, lambda b: "notes.txt" in _flat(_css(b, "#tok-upload")[0]))
    _css(b, "#tok-run")[0].click()
    msg = _wait(b, lambda b: _css(b, "#tok-error") and _css(b, "#tok-error")[0].text)
    assert "notes.txt is not an image" in msg and "Traceback" not in b.page_source
    b.save_screenshot(str(ARTIFACTS / "app-4-bad-file.png"))


@pytest.mark.slow
def test_generator_tab_matches_the_cli(app_url, browser, tmp_path) -> None:
    b = browser
    b.get(app_url)
    tab = _wait(b, lambda b: [t for t in _css(b, "button[role=tab]") if t.text.strip() == "Generator"])
    tab[0].click()
    box = _wait(b, lambda b: _css(b, "#gen-classes textarea"))[0]
    box.clear()
    box.send_keys("3, 7")
    seed = _css(b, "#gen-seed input")[0]
    seed.clear()
    seed.send_keys("5")
    _css(b, "#gen-run")[0].click()
    _wait(b, lambda b: _css(b, "#gen-done"))
    previews = _css(b, "#gen-previews img")
    assert len(previews) >= 4  # what each HAR call completing 4, 8, 16, 32 tokens decodes to
    command = _css(b, "#gen-command")[0].text
    link = _wait(b, lambda b: _css(b, "#gen-download a"))[0].get_attribute("href")
    shown = np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(link, timeout=30).read())).convert("RGB"))
    b.save_screenshot(str(ARTIFACTS / "app-5-generated.png"))
    # the echoed command, run as it is, writes the same grid
    args = shlex.split(command)
    assert args[:2] == ["restok", "generate"]
    args[args.index("--out") + 1] = str(tmp_path / "cli")
    r = run_cli(*args[1:])
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli" / "grid.png").convert("RGB")), shown)
    # an unknown class: a message in the page
    box = _css(b, "#gen-classes textarea")[0]
    box.clear()
    box.send_keys("3, golden retriever")
    _css(b, "#gen-run")[0].click()
    msg = _wait(b, lambda b: _css(b, "#gen-error") and _css(b, "#gen-error")[0].text)
    assert "unknown class" in msg
    b.save_screenshot(str(ARTIFACTS / "app-6-bad-class.png"))


def test_previews_stream_while_sampling_runs() -> None:
    """The generator tab's handler yields after every model call that completes a prefix, before the result."""
    from restok.apps.web import DemoBackend

    be = DemoBackend()
    updates = list(be.generate("1, 2", 2, 0, 2.0, "constant", 0.0, 0, 1.0, 1.0))
    counts = [len(u[1]) for u in updates]
    assert counts == [1, 2, 3, 4, 4] and updates[-1][2] is not None and all(u[2] is None for u in updates[:-1])
    assert "upload an image or pick an example first" in be.tokenize(None, None, 3)[0]
    tiny = Image.new("RGB", (5, 5))
    be.examples["tiny"] = tiny
    assert "too small (5 x 5 px)" in be.tokenize(None, "tiny", 3)[0]
