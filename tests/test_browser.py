"""The web page in headless Chromium: `vop serve` on a free loopback port, type a query, see cards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from test_serve import make_collection

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else shutil.which("chromedriver")
)
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless browser test needs Debian's chromium + chromium-driver "
    "(apt-get install chromium chromium-driver)",
)
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vop serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"vop serve did not answer on {url} within {timeout}s")


@pytest.fixture()
def server(tmp_path):
    env = make_collection(tmp_path)
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "vop",
        "serve",
        *env["indexes"],
        "--adapters",
        f"mine={env['adapter']}",
        "--port",
        str(port),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_type_a_query_and_see_result_cards(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#adapter option")) == 2)
    adapters = Select(browser.find_element(By.ID, "adapter"))
    assert [o.get_attribute("value") for o in adapters.options] == ["zeroshot", "mine"]
    adapters.select_by_value("mine")
    Select(browser.find_element(By.ID, "k")).select_by_visible_text("10")
    box = browser.find_element(By.ID, "query")
    box.send_keys("a red square moves left", Keys.ENTER)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card")) == 5)
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert [c.find_element(By.CLASS_NAME, "rank").text for c in cards] == ["#1", "#2", "#3", "#4", "#5"]
    scores = [float(c.find_element(By.CLASS_NAME, "score").text) for c in cards]
    assert scores == sorted(scores, reverse=True)
    video = cards[0].find_element(By.TAG_NAME, "video")
    assert "/videos/mine/" in video.get_attribute("poster") and video.get_attribute("src").endswith("/file")
    assert "(mine," in browser.find_element(By.ID, "status").text
    # "more like this" runs a video-to-video search: the clicked video is left out
    cards[0].find_element(By.CLASS_NAME, "like").click()
    wait.until(lambda d: "videos like" in d.find_element(By.ID, "status").text)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results .card")) == 4
    # an over-long query shows the server's 4xx message instead of cards
    browser.execute_script("document.getElementById('query').removeAttribute('maxlength')")
    box.clear()
    box.send_keys("x" * 600, Keys.ENTER)
    wait.until(lambda d: "error 422" in d.find_element(By.ID, "status").text)
