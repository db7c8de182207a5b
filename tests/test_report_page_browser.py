"""report.html in a real browser: Debian's headless Chromium opens it from disk (file://), no server."""
import json
import shutil
import tempfile

import pytest
from conftest import CLASS_COLOURS, make_dataset, retrain_args, write_photo

from bottleneck.cli.retrain import retrain_main
from bottleneck.data.split import which_set
from bottleneck.report import page as report_html

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,900")


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_module):
    tmp = tmp_path_factory.mktemp("page")
    images = make_dataset(tmp / "images", {"red": 30, "green": 30, "blue": 30})
    # Red photos filed as blue, two of them in the test set: a misclassified cell off the diagonal.
    names = [f"red_{i}.jpg" for i in range(400) if which_set(f"red_{i}.jpg", 10, 10) == "testing"][:2]
    names += [f"red_{i}.jpg" for i in range(400) if which_set(f"red_{i}.jpg", 10, 10) == "training"][:1]
    for k, name in enumerate(names):
        write_photo(images / "blue" / name, CLASS_COLOURS["red"], seed=7000 + k)
    shutil.copy(images / "green" / "img_002.jpg", images / "red" / "green_copy.jpg")
    assert retrain_main(retrain_args(tmp, images, tiny_module)) == 0
    folder = tmp / "out" / "graph_report"
    return folder, json.loads((folder / "summary.json").read_text())


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


@pytest.fixture(scope="module")
def page(report, browser):
    folder, summary = report
    browser.get((folder / "report.html").as_uri())
    return browser, summary


def _count(driver, selector):
    return driver.execute_script(f"return document.querySelectorAll({json.dumps(selector)}).length")


def test_the_page_loads_from_disk_without_console_errors_and_every_image_shows(page):
    driver, _summary = page
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0 and _count(driver, "img") > 10
    assert driver.execute_script("return performance.getEntriesByType('resource').filter("
                                 "r => !r.name.startsWith('data:')).length") == 0  # nothing fetched


def test_the_galleries_show_the_expected_thumbnails(page):
    driver, summary = page
    labels = summary["labels"]
    matrix = summary["confusion_matrix"]["counts"]
    for i in range(len(labels)):
        for j in range(len(labels)):
            expected = min(matrix[i][j], report_html.CELL_CAP if i != j else report_html.CORRECT_PER_CLASS)
            assert _count(driver, f"#cell-{i}-{j} figure") == expected, (labels[i], labels[j])
    assert _count(driver, "#test-images figure") == sum(
        min(matrix[i][j], report_html.CELL_CAP if i != j else report_html.CORRECT_PER_CLASS)
        for i in range(len(labels)) for j in range(len(labels)))
    disputed = summary["data_checks"]["label_errors"]["disputed"]
    assert disputed >= 3  # the three red photos filed as blue
    assert _count(driver, "#label-error-gallery figure") == min(disputed, report_html.LABEL_ERRORS_CAP)
    crossing = summary["page"]["shown"]["duplicate_pairs"]
    assert crossing >= 1 and _count(driver, "#pairs-gallery .pair") == crossing
    assert _count(driver, "#pairs-gallery figure") == 2 * crossing
    assert _count(driver, "#validation-errors figure") == summary["page"]["shown"]["validation_misclassified"]


def test_a_confusion_matrix_cell_leads_to_its_images(page):
    driver, summary = page
    labels = summary["labels"]
    blue, red = labels.index("blue"), labels.index("red")
    count = summary["confusion_matrix"]["counts"][blue][red]
    assert count == 2  # the two red photos filed as blue in the test set
    driver.find_element("css selector", f'td.cell a[data-cell="{blue}-{red}"]').click()
    assert driver.execute_script("return location.hash") == f"#cell-{blue}-{red}"
    assert driver.execute_script("return document.querySelector(':target').id") == f"cell-{blue}-{red}"
    assert driver.execute_script(
        f"return document.querySelector('td.cell a[data-cell=\"{blue}-{red}\"]').classList.contains('active')")
    top = driver.execute_script(f"return document.getElementById('cell-{blue}-{red}').getBoundingClientRect().top")
    assert 0 <= top < driver.execute_script("return window.innerHeight")  # scrolled into view
    captions = driver.execute_script(
        f"return Array.from(document.querySelectorAll('#cell-{blue}-{red} figcaption')).map(c => c.textContent)")
    assert len(captions) == 2 and all("blue" in c and "red" in c for c in captions)
