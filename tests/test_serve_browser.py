"""The web page in headless Chromium (Debian's `chromium`, driven by Playwright from pip) against a
real `ferlab serve` process: uploads show a labelled face, TIFFs work, errors clear the old result,
the API docs render offline."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ferlab.serve.launch import ServerProcess

sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright (make test installs it)")
skdata = pytest.importorskip("skimage.data")
CHROMIUM = os.environ.get("FERLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="no Chromium here: `apt-get install chromium` (make test does, as root)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server():
    with ServerProcess(["--model", "default"]) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    # Offline, as on a machine without internet: any request off this server fails.
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url)
                  else route.abort())
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_function("document.getElementById('model').textContent.startsWith('model ')")
    yield page
    context.close()


def _file(tmp_path: Path, name: str, fmt: str) -> Path:
    path = tmp_path / name
    Image.fromarray(skdata.astronaut()).save(path, format=fmt)
    return path


def _wait_done(page) -> None:
    page.wait_for_function("document.getElementById('result').getAttribute('aria-busy') === 'false' && "
                           "!document.getElementById('status').classList.contains('busy') && "
                           "document.getElementById('status').textContent !== ''", timeout=30_000)


@pytest.mark.parametrize("name, fmt", [("astronaut.jpg", "JPEG"), ("astronaut.tif", "TIFF")])
def test_upload_shows_a_labelled_face(page, tmp_path, name, fmt):
    page.set_input_files("#file", str(_file(tmp_path, name, fmt)))  # one choice is enough: no second click
    _wait_done(page)
    assert page.text_content("#status") == f"1 face(s) in {name}"
    assert page.text_content("#faces h3").startswith("Face 1: happy")
    assert page.locator("#faces .bar").count() == 7
    size = page.eval_on_selector("#annotated", "img => [img.naturalWidth, img.naturalHeight, img.complete]")
    assert size[0] > 512 and size[1] == 512 and size[2]  # the server's PNG: the photo and its legend strip
    assert '"label": "happy"' in page.text_content("#raw")
    assert page.get_attribute("#download", "download") == name.rsplit(".", 1)[0] + "_annotated.png"
    page.screenshot(path=str(tmp_path / "page.png"))


def test_an_error_clears_the_previous_result(page, tmp_path):
    page.set_input_files("#file", str(_file(tmp_path, "astronaut.png", "PNG")))
    _wait_done(page)
    assert page.is_visible("#annotated")
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    page.set_input_files("#file", str(bad))
    _wait_done(page)
    assert page.get_attribute("#status", "class") == "error"
    assert "400: notes.png: not an image" in page.text_content("#status")
    assert not page.is_visible("#annotated") and page.locator("#faces .face").count() == 0


def test_a_drop_anywhere_is_recognised_and_the_page_stays(page, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buf, format="JPEG")
    data = list(buf.getvalue())
    url = page.url
    page.evaluate("""data => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(data)], "dropped.jpg", {type: "image/jpeg"}));
        document.querySelector("h1").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true,
                                                                          cancelable: true}));
    }""", data)
    _wait_done(page)
    assert page.url == url and page.text_content("#status") == "1 face(s) in dropped.jpg"


@pytest.mark.parametrize("path, selector", [("docs", ".swagger-ui .opblock"), ("redoc", "[data-section-id]")])
def test_api_docs_render_offline_and_call_nobody(browser, server, path, selector):
    context = browser.new_context()
    outside = []

    def route(r):
        if r.request.url.startswith(server.url):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.goto(server.url + path)
    page.wait_for_selector(selector, timeout=20_000)
    page.wait_for_timeout(500)
    assert "/v1/predict" in page.content()
    # ReDoc's footer logo is an <img> from its CDN that hides itself offline; nothing else leaves
    assert all(u.startswith("https://cdn.redoc.ly/redoc/logo") for u in outside), outside
    context.close()
