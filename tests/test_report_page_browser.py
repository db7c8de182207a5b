"""report.html in a real browser: Debian's headless Chromium opens it from disk (file://), no server."""
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

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


# ------------------------------------------------------------------------------------------ why the model decides


def _shown_with_heat(driver):
    """Figures of the disputed images: off the confusion matrix's diagonal, misclassified validation images and
    suspected label errors."""
    return driver.execute_script("""
        var off = Array.from(document.querySelectorAll('#test-images .group')).filter(function (g) {
          var cell = g.id.split('-'); return cell[1] !== cell[2]; });
        return off.map(g => g.querySelectorAll('figure').length).reduce((a, b) => a + b, 0)
          + document.querySelectorAll('#validation-gallery figure, #label-error-gallery figure').length""")


def _displayed(driver, selector):
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll({json.dumps(selector)}))"
        ".filter(e => getComputedStyle(e).display !== 'none').length")


def test_the_heatmap_switch_lays_either_class_over_the_disputed_thumbnails(page):
    driver, summary = page
    with_heat = _count(driver, "figure[data-heat-size]")
    assert with_heat == _shown_with_heat(driver) >= 3
    assert 0 < summary["views"]["heatmaps"]["images"] <= with_heat  # an image in two galleries is computed once
    assert _count(driver, "figure[data-heat-size] canvas.heat") == 2 * with_heat
    assert _displayed(driver, "canvas.heat") == 0  # off until asked for
    for kind, other in (("taken", "folder"), ("folder", "taken")):
        driver.find_element("css selector", f'.heat-switch input[value="{kind}"]').click()
        assert _displayed(driver, f"canvas.heat-{kind}") == with_heat
        assert _displayed(driver, f"canvas.heat-{other}") == 0
        painted = driver.execute_script(f"""
            return Array.from(document.querySelectorAll('canvas.heat-{kind}')).filter(function (c) {{
              var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              for (var i = 3; i < d.length; i += 4) {{ if (d[i] > 0) return true; }}
              return false; }}).length""")
        assert painted == with_heat  # every map has its peak somewhere
        box = driver.execute_script(f"""var c = document.querySelector('canvas.heat-{kind}'),
            i = c.parentNode.querySelector('img'); return [c.getBoundingClientRect().width, i.width]""")
        assert box[0] == box[1] > 0  # laid exactly over its thumbnail
    driver.find_element("css selector", '.heat-switch input[value="off"]').click()
    assert _displayed(driver, "canvas.heat") == 0
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def _map_paths(driver, selector):
    return set(driver.execute_script(f"""var data = JSON.parse(document.getElementById('data-map-points').textContent);
        return Array.from(document.querySelectorAll({json.dumps('#data-map ' + selector)}))
          .map(dot => data.paths[Number(dot.dataset.i)])"""))


def test_the_map_draws_every_image_and_rings_the_flagged_ones(page, report):
    driver, summary = page
    folder, _summary = report
    assert _count(driver, "#data-map circle.pt") == summary["views"]["data_map"]["points"] == summary["counts"]["total"]
    misclassified = {m["path"] for m in summary["misclassified"]}
    misclassified |= set(driver.execute_script(
        "return Array.from(document.querySelectorAll('#validation-gallery figure')).map(f => f.title)"))
    assert summary["page"]["left_out"]["validation_misclassified"] == 0  # so the gallery lists them all
    with open(folder / "suspected_label_errors.csv", newline="") as f:
        disputed = {row["path"] for row in csv.DictReader(f)}
    with open(folder / "duplicates.csv", newline="") as f:
        copies = {row[side] for row in csv.DictReader(f) for side in ("path_a", "path_b")}
    assert misclassified and disputed and copies
    assert _map_paths(driver, ".pt.mis") == misclassified
    assert _map_paths(driver, ".pt.le") == disputed
    assert _map_paths(driver, ".pt.dup") == copies
    legend = driver.find_element("css selector", "#data-map .map-legend").text
    assert all(label in legend for label in summary["labels"]) and f"misclassified ({len(misclassified)})" in legend
    assert driver.execute_script("return performance.getEntriesByType('resource').filter("
                                 "r => !r.name.startsWith('data:')).length") == 0
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_resting_on_a_point_shows_its_thumbnail_and_a_click_opens_the_image(page):
    from selenium.webdriver.common.action_chains import ActionChains

    driver, _summary = page
    driver.find_element("css selector", "#data-map-section").location_once_scrolled_into_view  # noqa: B018
    assert driver.execute_script("return document.querySelector('#data-map .map-tip').hidden")
    dot = driver.find_elements("css selector", "#data-map circle.pt.le")[0]
    ActionChains(driver).move_to_element(dot).perform()
    index = int(dot.get_attribute("data-i"))
    data = driver.execute_script("return JSON.parse(document.getElementById('data-map-points').textContent)")
    tip = driver.find_element("css selector", "#data-map .map-tip")
    assert tip.is_displayed() and Path(data["paths"][index]).name in tip.text
    assert "suspected label error" in tip.text
    tile = driver.execute_script("""var t = getComputedStyle(document.querySelector('#data-map .map-tip .tile'));
        return [t.backgroundImage.slice(0, 27), t.backgroundPosition, t.width]""")
    row, column = divmod(index, data["columns"])
    assert tile == ['url("data:image/jpeg;base64', f"{-column * data['tile']}px {-row * data['tile']}px",
                    f"{data['tile']}px"]
    link = driver.execute_script("return arguments[0].parentNode.getAttribute('href')", dot)
    assert link == Path(data["paths"][index]).resolve().as_uri()  # a click opens the image itself
    ActionChains(driver).move_by_offset(0, -400).perform()
    assert not tip.is_displayed()


@pytest.mark.inception
@pytest.mark.skipif(not os.environ.get("BOTTLENECK_SCREENSHOTS"), reason="BOTTLENECK_SCREENSHOTS=1 writes docs/'s "
                    "screenshots of the report")
def test_screenshots_of_a_flowers_report_for_the_docs(browser, inception_model_dir, tmp_path):
    """docs/report-data-map.png and docs/report-heatmaps.png, from a run on the flowers: flower_photos_dev beside the
    checkout when it is there, else the bundled sample (bottlenecks cached in build/screenshots/)."""
    from selenium.webdriver.common.action_chains import ActionChains

    root = Path(__file__).resolve().parent.parent
    images = root.parent / "shared" / "datasets" / "flower_photos_dev"
    images = images if images.is_dir() else root / "examples" / "flower_photos"
    args = retrain_args(tmp_path, images, "inception_v3", f"--model_dir={inception_model_dir}", "--quiet",
                        f"--bottleneck_dir={root / 'build' / 'screenshots' / 'bottlenecks'}", steps=1000)
    assert retrain_main(args) == 0
    browser.get((tmp_path / "out" / "graph_report" / "report.html").as_uri())
    below_header = "window.scrollTo(0, document.getElementById(arguments[0]).offsetTop - " \
                   "document.querySelector('header').offsetHeight - 10)"
    browser.execute_script(below_header, "data-map-section")
    dot = browser.find_elements("css selector", "#data-map circle.pt.mis")[0]
    ActionChains(browser).move_to_element(dot).perform()
    browser.save_screenshot(str(root / "docs" / "report-data-map.png"))
    browser.find_element("css selector", '.heat-switch input[value="taken"]').click()
    browser.execute_script(below_header, "label-errors")
    browser.save_screenshot(str(root / "docs" / "report-heatmaps.png"))
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
