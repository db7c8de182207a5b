"""The review page in a real browser: Debian's headless Chromium drives `python -m bottleneck review` on a tree with
planted faults, with the mouse and the keyboard; then the files, the journal and the next run are checked.

With BOTTLENECK_SCREENSHOTS=docs the test saves its view of the page as docs/review.png (the review docs show it).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_review import PLANTED, changes, plant, retrain, suspects

from bottleneck.review.findings import read_last_run
from bottleneck.review.server import TOKEN_HEADER

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = '<img src=x onerror="document.title=1">.jpg'  # a file name that is HTML: shown as text, never parsed
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,900")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("Headless Chromium is needed: apt-get install chromium chromium-driver (.ci/run does this).")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def served(tmp_path, tiny_module):
    """The planted tree, retrained, and its review command running: (images, report, url, process)."""
    images, report = plant(tmp_path, tiny_module, (*PLANTED, HOSTILE))
    command = [sys.executable, "-m", "bottleneck", "review", f"--image_dir={images}",
               f"--output_graph={tmp_path / 'out' / 'graph.pb'}"]
    # Ctrl-C's usual effect in the child even when the tests run in the background, where SIGINT is ignored.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert process.stdout.readline().startswith("Reviewing ")
        url = process.stdout.readline().split()[1]
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        yield images, report, url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def post(url: str, path: str, body: dict, token: str | None) -> int:
    base = url.split("/?")[0]
    headers = {"Content-Type": "application/json", **({TOKEN_HEADER: token} if token else {})}
    request = urllib.request.Request(base + path, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_review_in_the_browser_then_run_again(served, browser, tmp_path, tiny_module, caplog):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    images, report, url, process = served
    run = read_last_run(report, images)
    card_of = {(f.kind, f.images[0].relative): f.id for f in run.findings if f.kind != "duplicate"}
    pair = next(f for f in run.findings if f.kind == "duplicate" and "red/green_copy.jpg" in
                [im.relative for im in f.images])
    card_of["duplicate", "red/green_copy.jpg"] = pair.id
    copy_side = [im.relative for im in pair.images].index("red/green_copy.jpg")
    total = len(run.findings)
    driver = browser
    wait = WebDriverWait(driver, 20)
    driver.get(url)
    wait.until(lambda d: d.find_element("id", "left").text == f"{total} of {total} findings left")

    def card(kind, relative):
        return driver.find_element("css selector", f'section.card[data-id="{card_of[kind, relative]}"]')

    def decided(kind, relative, is_decided=True):
        wait.until(lambda d: ("decided" in card(kind, relative).get_attribute("class").split()) == is_decided)

    def keys(*typed):
        ActionChains(driver).send_keys(*typed).perform()

    # Every name is text: the HTML file name is shown as it is and nothing of it runs or loads.
    hostile = card("label_error", f"blue/{HOSTILE}")
    assert HOSTILE in hostile.text and driver.title.startswith("Review")
    assert driver.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    thumbs = driver.find_elements("css selector", ".pictures img")
    wait.until(lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                             for img in thumbs))

    # The mouse: move to the suggested class, keep as labelled, choose a class from the list and undo it.
    card("label_error", "blue/red_0.jpg").find_element("css selector", 'button[data-action="move"]').click()
    decided("label_error", "blue/red_0.jpg")
    card("label_error", "blue/red_2.jpg").find_element("css selector", 'button[data-action="keep"]').click()
    decided("label_error", "blue/red_2.jpg")
    Select(card("label_error", "red/green_copy.jpg").find_element("css selector", "select")).select_by_visible_text(
        "green")
    decided("label_error", "red/green_copy.jpg")
    assert (images / "green" / "green_copy.jpg").is_file()
    card("label_error", "red/green_copy.jpg").find_element("css selector", 'button[data-action="undo"]').click()
    decided("label_error", "red/green_copy.jpg", False)
    assert (images / "red" / "green_copy.jpg").is_file() and not (images / "green" / "green_copy.jpg").exists()

    # The keyboard: a large image on demand, exclude, move to the suggested class, next and previous.
    card("label_error", "blue/red_1.jpg").find_element("css selector", "h2").click()
    keys("z")
    wait.until(lambda d: d.execute_script("var i = document.getElementById('zoom-image'); return !"
                                          "document.getElementById('zoom').hidden && i.complete && i.naturalWidth > 0"))
    keys(Keys.ESCAPE)
    assert driver.execute_script("return document.getElementById('zoom').hidden")
    keys("x")
    decided("label_error", "blue/red_1.jpg")
    card("label_error", f"blue/{HOSTILE}").find_element("css selector", "h2").click()
    keys("m")
    decided("label_error", f"blue/{HOSTILE}")
    if os.environ.get("BOTTLENECK_SCREENSHOTS"):
        folder = ROOT / os.environ["BOTTLENECK_SCREENSHOTS"]
        folder.mkdir(parents=True, exist_ok=True)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(folder / "review.png"))
    current = driver.execute_script("return document.querySelector('.card.current').dataset.id")
    keys("k")
    assert driver.execute_script("return document.querySelector('.card.current').dataset.id") != current

    # A duplicate pair: exclude one of the two (here the copy filed as red).
    card("duplicate", "red/green_copy.jpg").find_element(
        "css selector", f'button[data-action="exclude-{copy_side}"]').click()
    decided("duplicate", "red/green_copy.jpg")
    decided("label_error", "red/green_copy.jpg")  # the same image's other card is decided with it
    open_cards = len(driver.find_elements("css selector", "section.card:not(.decided)"))
    assert open_cards <= total - 6
    wait.until(lambda d: d.find_element("id", "left").text == f"{open_cards} of {total} findings left")
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []

    # Requests that are not the page's own change nothing.
    token = url.split("token=")[1]
    target = card_of["label_error", "blue/red_2.jpg"]
    journal_before = changes(images)
    assert post(url, "/api/undo", {"id": target}, None) == 403
    assert post(url, "/api/act", {"id": target, "action": "move", "folder": "../../outside"}, token) == 409
    assert post(url, "/api/act", {"id": "../red/img_000.jpg", "action": "exclude"}, token) == 409
    assert changes(images) == journal_before and not (images.parent / "outside").exists()

    process.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130 and "review: interrupted." in err and "change(s) journaled" in out

    # What is on disk, and what the journal says, in order.
    assert (images / "red" / "red_0.jpg").is_file() and not (images / "blue" / "red_0.jpg").exists()
    assert (images / ".excluded" / "blue" / "red_1.jpg").is_file() and (images / "blue" / "red_2.jpg").is_file()
    assert (images / ".excluded" / "red" / "green_copy.jpg").is_file() and (images / "red" / HOSTILE).is_file()
    lines = changes(images)
    assert [(c["action"], c["from"]) for c in lines] == [
        ("move", "blue/red_0.jpg"), ("keep", "blue/red_2.jpg"), ("move", "red/green_copy.jpg"),
        ("undo", "green/green_copy.jpg"), ("exclude", "blue/red_1.jpg"), ("move", f"blue/{HOSTILE}"),
        ("exclude", "red/green_copy.jpg")]
    assert lines[3]["undoes"] == lines[2]["id"] and len({c["session"] for c in lines}) == 1

    # The next run computes nothing, says what moved, and no longer finds the planted faults.
    caplog.clear()
    caplog.set_level("INFO", logger="retrain")
    assert retrain(tmp_path, images, tiny_module) == 0
    assert "bottlenecks cached, 0 imported, 0 to compute." in caplog.text
    assert "2 image(s) changed class since the previous run." in caplog.text
    found = suspects(report)
    assert not [name for name in found if Path(name).name in (*PLANTED, HOSTILE, "green_copy.jpg")], found
    assert "green_copy.jpg" not in (report / "duplicates.csv").read_text(encoding="utf-8")
