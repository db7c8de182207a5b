"""report.html: the run report as one self-contained page, with the images themselves.

Everything is inside the file: the style and the little script (page.css and
page.js, shipped beside this module) inline, the plots and thumbnails as
``data:`` URIs (small JPEGs), so it opens from disk in any browser with no
server and no network.  Each thumbnail links to its original file on disk.
Every gallery has a cap, and says how many images it left out, so the page
stays a few megabytes for 200,000 images; the CSV files hold the full lists.
With the views (views.py), the images of the misclassified and label-error
galleries carry their heatmaps, which a switch in the header lays over the
thumbnails, and a section maps the whole data set (data_map.py).
"""
from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..atomic import newest, write_text_atomic
from ..data.images import BadImage, load_rgb_array
from ..data_checks.findings import DUPLICATES_CSV, LABEL_ERRORS_CSV, Findings
from ..training.metrics import matrix_from_summary
from .data_map import section as map_section
from .heatmaps import Target
from .plots import CONFUSION_FILE, CURVES_FILE

if TYPE_CHECKING:
    from .views import Views

PAGE_FILE = "report.html"
THUMB_SIZE = 128  # longest side, pixels
THUMB_QUALITY = 72
# Caps: how many thumbnails each part of the page shows at most.
CELL_CAP = 24  # images per confusion-matrix cell
TEST_ERRORS_CAP = 120  # misclassified test images over all cells
CORRECT_PER_CLASS = 6  # correctly classified examples per class
CORRECT_CAP = 60
VALIDATION_ERRORS_CAP = 60
LABEL_ERRORS_CAP = 40
PAIRS_CAP = 40
MATRIX_MAX_CLASSES = 40  # above, the matrix is shown as the PNG with a list of the most confused pairs


@dataclass
class Predictions:
    """One set's images with their class indices and the (calibrated) probabilities."""

    names: list[str]
    true: np.ndarray  # [N] class indices
    probabilities: np.ndarray  # [N, C]


@dataclass
class PageData:
    test: Predictions
    validation: Predictions
    findings: Findings | None = None  # when the data checks ran


def _asset(name: str) -> str:
    """page.css or page.js, shipped beside this module, to be inlined into the page."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _thumbnail(path: str) -> str | None:
    """A data: URI of a small JPEG of the image, or None when it cannot be read."""
    try:
        pixels = load_rgb_array(path, THUMB_SIZE, THUMB_SIZE)
    except (BadImage, OSError):
        return None
    img = Image.fromarray(pixels)
    img.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _png_uri(path: Path) -> str | None:
    try:
        return "data:image/png;base64," + base64.b64encode(newest(path).read_bytes()).decode("ascii")
    except OSError:
        return None


class _Thumbs:
    """Thumbnails of the paths the page shows, made once each on a few threads (PIL decodes without the GIL)."""

    def __init__(self, paths: Sequence[str]):
        unique = list(dict.fromkeys(paths))
        with ThreadPoolExecutor(max_workers=min(4, max(1, os.cpu_count() or 1))) as pool:
            self.uri = dict(zip(unique, pool.map(_thumbnail, unique)))


def _figure(thumbs: _Thumbs, path: str, caption: str, extra_class: str = "", heat: str = "") -> str:
    """A thumbnail linking to its file; ``heat``: the data- attributes of its heatmaps (page.js draws them)."""
    uri = thumbs.uri.get(path)
    name = Path(path).name
    try:
        href = Path(path).resolve().as_uri()
    except ValueError:
        href = ""
    image = (f'<span class="frame"><img src="{uri}" alt="{_e(name)}"></span>' if uri
             else f'<div class="unreadable">{_e(name)}<br>(could not be read)</div>')
    return (f'<figure class="thumb {extra_class}" title="{_e(path)}"{heat if uri else ""}><a href="{_e(href)}">'
            f'{image}</a><figcaption>{caption}<span class="file">{_e(name)}</span></figcaption></figure>')


def _left_out(count: int, where: str) -> str:
    if count <= 0:
        return ""
    return f'<p class="more">{count:,} more not shown here{_e(where)}.</p>'


def _pct(value, digits=1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


# ---------------------------------------------------------------------------------------------
# Sections


def _cards(summary: Mapping) -> str:
    acc = summary["accuracy"]
    cards = [("Test accuracy", _pct(acc.get("test")), f"N={acc.get('test_count', 0)}"),
             ("Validation accuracy", _pct(acc.get("validation")), "last evaluation")]
    checks = summary.get("data_checks") or {}
    cv = (checks.get("label_errors") or {}).get("cross_validated_accuracy")
    if cv is not None:
        cards.append(("Cross-validated accuracy", _pct(cv), f"{checks.get('images', 0)} images, out of fold"))
    cal = summary.get("calibration") or {}
    ece = (cal.get("ece") or {}).get("testing") or (cal.get("ece") or {}).get("validation")
    if ece:
        cards.append(("Calibration error", f"{_pct(ece['before'])} → {_pct(ece['after'])}",
                      f"T = {cal.get('temperature', 1):.2f}" + ("" if cal.get("applied") else " (not applied)")))
    leak = (checks.get("leakage") or {}).get("test_images")
    if leak is not None:
        cards.append(("Test images leaked", f"{leak}", "copies in training/validation", "bad" if leak else "good"))
    out = []
    for card in cards:
        title, value, note = card[:3]
        tone = card[3] if len(card) > 3 else ""
        out.append(f'<div class="card {tone}"><div class="k">{_e(title)}</div><div class="v">{_e(value)}</div>'
                   f'<div class="n">{_e(note)}</div></div>')
    return '<div class="cards">' + "".join(out) + "</div>"


def _per_class_table(summary: Mapping) -> str:
    rows = []
    counts = summary["counts"]["per_class"]
    for label, stats in summary["per_class"].items():
        c = counts.get(label, {})
        cells = [c.get("training", 0), c.get("validation", 0), c.get("testing", 0)]
        f1 = stats.get("f1")
        bar = "" if f1 is None else f'<span class="bar" style="width:{f1 * 100:.0f}%"></span>'
        rows.append(
            f"<tr><th>{_e(label)}</th>" + "".join(f'<td class="num">{v:,}</td>' for v in cells)
            + "".join(f'<td class="num">{_pct(stats.get(k), 0)}</td>' for k in ("precision", "recall"))
            + f'<td class="num f1">{bar}<span>{"n/a" if f1 is None else f"{f1:.2f}"}</span></td></tr>')
    macro = summary.get("macro_average", {})
    macro_f1 = "n/a" if macro.get("f1") is None else f"{macro['f1']:.2f}"
    rows.append('<tr class="total"><th>macro average</th><td></td><td></td><td></td>'
                + "".join(f'<td class="num">{_pct(macro.get(k), 0)}</td>' for k in ("precision", "recall"))
                + f'<td class="num">{macro_f1}</td></tr>')
    return ('<table class="metrics"><thead><tr><th>class</th><th>training</th><th>validation</th><th>test</th>'
            '<th>precision</th><th>recall</th><th>F1</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def _coverage_table(summary: Mapping) -> str:
    rows = (summary.get("calibration") or {}).get("coverage") or []
    if not rows:
        return ""
    body = "".join(f'<tr><td class="num">{r["threshold"]:.2f}</td><td class="num">{_pct(r["coverage"])}</td>'
                   f'<td class="num">{_pct(r["accuracy"])}</td></tr>' for r in rows)
    return ('<h3>Answering only when confident (test set)</h3><p class="hint">With <code>label_image.py --threshold '
            'P</code> an image whose best score is below P is answered <code>unknown</code>.</p>'
            '<table class="metrics narrow"><thead><tr><th>threshold</th><th>answered</th><th>accuracy of answers</th>'
            f'</tr></thead><tbody>{body}</tbody></table>')


def _flags(setting: Mapping, leave_out=()) -> str:
    return " ".join(f"--{flag} {value:g}" if isinstance(value, float) else f"--{flag} {value}"
                    for flag, value in setting.items() if flag not in leave_out)


def _selection_table(selection: Mapping) -> str:
    """--preset auto's table: every setting tried, best first, the chosen one marked."""
    fixed = selection.get("fixed") or {}
    rows = []
    for r in sorted(selection["table"], key=lambda r: -(r["mean_accuracy"] or 0)):
        mark = "chosen" if r["chosen"] else "within noise" if r["within_noise"] else ""
        rows.append(f'<tr class="{"total" if r["chosen"] else ""}"><td><code>{_e(_flags(r["setting"], fixed))}</code>'
                    f'</td><td class="num">{_pct(r["mean_accuracy"])}</td><td class="num">{_pct(r["std"])}</td>'
                    f'<td>{_e(mark)}</td></tr>')
    given = f" Given, so not searched: <code>{_e(_flags(fixed))}</code>." if fixed else ""
    return (f'<p class="hint">Chosen: <code>{_e(_flags(selection["chosen"]))}</code>. Each setting was trained on '
            f'{selection["folds"]} folds of the {selection["images"]:,} training and validation images and scored on '
            f'the fold it did not see ({selection["seconds"]:.1f} s); rule: {_e(selection["rule"])}.{given}</p>'
            '<table class="metrics"><thead><tr><th>setting</th><th>mean accuracy</th><th>std</th><th></th></tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def _confusion(summary: Mapping, report_dir: Path, matrix: np.ndarray, labels: list[str]) -> str:
    n = len(labels)
    if matrix.sum() == 0:
        return "<p>No test images: no confusion matrix.</p>"
    if n > MATRIX_MAX_CLASSES:
        uri = _png_uri(report_dir / CONFUSION_FILE)
        pairs = [(int(matrix[i, j]), i, j) for i in range(n) for j in range(n) if i != j and matrix[i, j]]
        pairs.sort(reverse=True)
        items = "".join(f'<li><a href="#cell-{i}-{j}">{_e(labels[i])} → {_e(labels[j])}</a>: {c}</li>'
                        for c, i, j in pairs[:MATRIX_MAX_CLASSES])
        image = f'<img class="plot" src="{uri}" alt="confusion matrix">' if uri else ""
        return f"{image}<h3>Most confused pairs (true → predicted)</h3><ol>{items}</ol>"
    support = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, support, out=np.zeros(matrix.shape), where=support > 0)
    head = "".join(f'<th class="col"><span>{_e(label)}</span></th>' for label in labels)
    rows = []
    for i, label in enumerate(labels):
        cells = []
        for j in range(n):
            count = int(matrix[i, j])
            alpha = 0.08 + 0.85 * share[i, j] if count else 0
            colour = f"rgba(37,99,235,{alpha:.2f})" if i == j else f"rgba(220,38,38,{alpha:.2f})"
            text = "white" if share[i, j] > 0.55 else "inherit"
            if count:
                cells.append(f'<td class="cell" style="background:{colour};color:{text}"><a href="#cell-{i}-{j}" '
                             f'data-cell="{i}-{j}" title="{_e(label)} predicted as {_e(labels[j])}: {count}">'
                             f'{count}</a></td>')
            else:
                cells.append('<td class="cell zero">0</td>')
        rows.append(f'<tr><th class="row">{_e(label)}</th>{"".join(cells)}</tr>')
    return ('<p class="hint">Rows: true class; columns: predicted. Click a cell to see its images.</p>'
            f'<table class="confusion"><thead><tr><th class="corner">true \\ predicted</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _no_heat(_path: str, _taken_for: int, _folder: int) -> str:
    return ""


def _test_groups(thumbs, page: PageData, labels, plan, heat=_no_heat) -> str:
    errors, correct = [], []
    for (i, j), (shown, total) in plan.items():
        title = (f"{_e(labels[i])} <span class='arrow'>→</span> {_e(labels[j])}" if i != j
                 else f"{_e(labels[i])} <span class='ok'>✓</span>")
        figures = "".join(_figure(thumbs, page.test.names[r], _caption(labels, page.test, r),
                                  heat=heat(page.test.names[r], j, i) if i != j else "") for r in shown)
        group = (f'<div class="group" id="cell-{i}-{j}"><h3>{title} <small>{total} image{"s" if total != 1 else ""}'
                 f'</small></h3><div class="gallery">{figures}</div>{_left_out(total - len(shown), "")}</div>')
        (errors if i != j else correct).append(group)
    none = '<p class="good-note">None: every test image was classified correctly.</p>'
    out = ['<h3 class="sub">Misclassified</h3>', "".join(errors) or none]
    out += ['<h3 class="sub">Correctly classified (examples)</h3>', "".join(correct)]
    return "".join(out)


def _caption(labels, preds: Predictions, r: int) -> str:
    p = preds.probabilities[r]
    guess, truth = int(np.argmax(p)), int(preds.true[r])
    if guess == truth:
        return f'<span class="lbl">{_e(labels[truth])}</span><span class="conf">{p[guess] * 100:.0f}%</span>'
    return (f'<span class="lbl"><s>{_e(labels[truth])}</s> → <b>{_e(labels[guess])}</b></span>'
            f'<span class="conf">{p[guess] * 100:.0f}%</span>')


def plan_test_cells(page: PageData, num_classes: int) -> dict:
    """(true, predicted) -> (rows shown, images in the cell), within the page's caps; misclassified first."""
    preds = page.test
    if not len(preds.true):
        return {}
    true = np.asarray(preds.true)
    guess = np.asarray(preds.probabilities).argmax(axis=1)
    confidence = np.asarray(preds.probabilities).max(axis=1)
    cells: dict[tuple[int, int], list[int]] = {}
    for r in np.argsort(-confidence, kind="stable"):  # the most confident first within each cell
        cells.setdefault((int(true[r]), int(guess[r])), []).append(int(r))
    plan = {}
    budget = TEST_ERRORS_CAP
    for key in sorted((k for k in cells if k[0] != k[1]), key=lambda k: (-len(cells[k]), k)):
        take = min(CELL_CAP, budget, len(cells[key]))
        plan[key] = (cells[key][:take], len(cells[key]))
        budget -= take
    budget = CORRECT_CAP
    for c in range(num_classes):
        rows = cells.get((c, c), [])
        if rows:
            take = min(CORRECT_PER_CLASS, budget, len(rows))
            plan[(c, c)] = (rows[:take], len(rows))
            budget -= take
    return plan


def _validation_wrong(page: PageData) -> np.ndarray:
    """Rows of the misclassified validation images, the most confident first."""
    preds = page.validation
    if not len(preds.true):
        return np.zeros(0, np.int64)
    p = np.asarray(preds.probabilities)
    wrong = np.flatnonzero(p.argmax(axis=1) != np.asarray(preds.true))
    return wrong[np.argsort(-p[wrong].max(axis=1), kind="stable")]


def gallery_targets(page: PageData, labels: list[str]) -> list[Target]:
    """The images that the galleries show with a disputed class (misclassified test and validation images,
    suspected label errors, within the caps), each with the class it was taken for and its folder's class."""
    targets = []
    for (i, j), (shown, _total) in plan_test_cells(page, len(labels)).items():
        if i != j:
            targets += [Target(page.test.names[r], j, i) for r in shown]
    preds = page.validation
    targets += [Target(preds.names[r], int(np.argmax(preds.probabilities[r])), int(preds.true[r]))
                for r in _validation_wrong(page)[:VALIDATION_ERRORS_CAP]]
    if page.findings is not None:
        index = {label: k for k, label in enumerate(labels)}
        targets += [Target(e.path, index[e.suggested], index[e.label])
                    for e in page.findings.label_errors[:LABEL_ERRORS_CAP]]
    return targets


def _heat_switch(views: Views) -> str:
    """The header's switch between no heatmaps and either class's, or why there are none."""
    note = f'<span class="heat-note">{_e(views.heatmaps.note)}</span>'
    if not views.heatmaps.maps:
        return f'<div class="heat-switch">{note}</div>'
    options = (("off", "off"), ("taken", "the class it was taken for"), ("folder", "its folder's class"))
    radios = "".join(f'<label><input type="radio" name="heat" value="{value}"{" checked" if value == "off" else ""}>'
                     f" {_e(text)}</label>" for value, text in options)
    return f'<div class="heat-switch" role="radiogroup" aria-label="heatmaps">Heatmaps: {radios} {note}</div>'


def _validation_gallery(thumbs, page: PageData, labels, heat=_no_heat) -> tuple[str, int, int]:
    preds = page.validation
    if not len(preds.true):
        return "<p>No validation images.</p>", 0, 0
    wrong = _validation_wrong(page)
    shown = wrong[:VALIDATION_ERRORS_CAP]
    if not len(wrong):
        return '<p class="good-note">None: every validation image was classified correctly.</p>', 0, 0
    figures = "".join(_figure(thumbs, preds.names[r], _caption(labels, preds, r),
                              heat=heat(preds.names[r], int(np.argmax(preds.probabilities[r])), int(preds.true[r])))
                      for r in shown)
    return (f'<div class="gallery" id="validation-gallery">{figures}</div>'
            f'{_left_out(len(wrong) - len(shown), "")}'), len(shown), len(wrong)


def _label_error_gallery(thumbs, findings: Findings, shown, heat=_no_heat) -> str:
    if findings.out_of_fold is None:
        return f"<p>{_e(findings.note)}</p>"
    if not findings.label_errors:
        return '<p class="good-note">No image\'s folder label is disputed.</p>'
    figures = []
    for e in shown:
        caption = (f'<span class="lbl">folder <s>{_e(e.label)}</s></span><span class="lbl">looks like '
                   f'<b>{_e(e.suggested)}</b></span><span class="conf">{e.suggested_probability * 100:.0f}% vs '
                   f'{e.label_probability * 100:.0f}% · {_e(e.set)}</span>')
        index = {label: k for k, label in enumerate(findings.labels)}
        figures.append(_figure(thumbs, e.path, caption, heat=heat(e.path, index[e.suggested], index[e.label])))
    left = len(findings.label_errors) - len(shown)
    return (f'<div class="gallery" id="label-error-gallery">{"".join(figures)}</div>'
            + _left_out(left, f"; all {len(findings.label_errors):,} are in {LABEL_ERRORS_CSV}"))


def _pairs_gallery(thumbs, findings: Findings, shown, total) -> str:
    if not total:
        return ('<p class="good-note">No exact or near copies cross the training, validation and test sets or '
                'classes.</p>')
    im = findings.images
    out = []
    for p in shown:
        sets_differ, classes_differ = findings.crosses(p)
        tags = []
        if sets_differ:
            tags.append('<span class="tag bad">crosses sets</span>' if "testing" in (im.sets[p.a], im.sets[p.b])
                        else '<span class="tag warn">crosses sets</span>')
        if classes_differ:
            tags.append('<span class="tag warn">crosses classes</span>')
        kind = "exact copy" if p.kind == "exact" else f"near copy · similarity {p.similarity:.3f}"
        sides = "".join(
            _figure(thumbs, im.paths[r], f'<span class="lbl">{_e(findings.labels[im.y[r]])}</span>'
                                         f'<span class="conf">{_e(im.sets[r])}</span>')
            for r in (p.a, p.b))
        out.append(f'<div class="pair"><div class="pair-head">{_e(kind)} {"".join(tags)}</div>'
                   f'<div class="pair-body">{sides}</div></div>')
    return (f'<div class="pairs" id="pairs-gallery">{"".join(out)}</div>'
            + _left_out(total - len(shown), f"; all are in {DUPLICATES_CSV}"))


# ---------------------------------------------------------------------------------------------
# The page


def write_page(report_dir, summary: dict, page: PageData, views: Views | None = None) -> dict:
    """Write report.html; returns what it shows and leaves out (for summary.json).

    With ``views``, the galleries' images carry their heatmaps and the page maps the data set.
    """
    if summary.get("multi_label"):  # no confusion matrix, no data checks: a page of its own
        from .multi_label_page import write_multi_label_page

        return write_multi_label_page(report_dir, summary)
    report_dir = Path(report_dir)
    labels = list(summary["labels"])
    n = len(labels)
    matrix = matrix_from_summary(summary) if n else np.zeros((0, 0))
    findings = page.findings
    plan = plan_test_cells(page, n)
    label_errors = findings.label_errors[:LABEL_ERRORS_CAP] if findings else []
    reported = findings.reported_pairs() if findings else []
    pairs = reported[:PAIRS_CAP]
    paths = [page.test.names[r] for shown, _t in plan.values() for r in shown]
    paths += [page.validation.names[r] for r in _validation_wrong(page)[:VALIDATION_ERRORS_CAP]]
    paths += [e.path for e in label_errors]
    if findings:
        paths += [findings.images.paths[r] for p in pairs for r in (p.a, p.b)]
    thumbs = _Thumbs(paths)
    heat = _no_heat
    if views is not None:
        heat = lambda path, taken_for, folder: views.heatmaps.attributes(Target(path, taken_for, folder))  # noqa: E731

    validation_html, validation_shown, validation_total = _validation_gallery(thumbs, page, labels, heat)
    test_errors = {k: v for k, v in plan.items() if k[0] != k[1]}
    shown = {
        "test_misclassified": sum(len(s) for s, _t in test_errors.values()),
        "test_correct_examples": sum(len(s) for k, (s, _t) in plan.items() if k[0] == k[1]),
        "validation_misclassified": validation_shown,
        "label_errors": len(label_errors),
        "duplicate_pairs": len(pairs),
    }
    left_out = {
        "test_misclassified": int(matrix.sum() - np.trace(matrix)) - shown["test_misclassified"] if n else 0,
        "validation_misclassified": validation_total - validation_shown,
        "label_errors": (len(findings.label_errors) - len(label_errors)) if findings else 0,
        "duplicate_pairs": len(reported) - len(pairs),
    }

    sections = []
    leak = ((summary.get("data_checks") or {}).get("leakage") or {}).get("test_images")
    banner = ""
    if leak:
        banner = (f'<div class="banner">{leak} test image{"s" if leak != 1 else ""} '
                  f'{"have" if leak != 1 else "has"} an exact or near copy in the training or validation set: the '
                  'test accuracy overstates the model. See <a href="#duplicates">Duplicates and leakage</a>.</div>')
    cal = summary.get("calibration") or {}
    cal_note = f'<p class="hint">Confidence: {_e(cal.get("note", ""))}.</p>' if cal else ""
    sections.append(("summary", "Summary", banner + _cards(summary) + cal_note + _per_class_table(summary)
                     + _coverage_table(summary)))
    if summary.get("model_selection"):
        sections.append(("model-selection", "Setting chosen by --preset auto",
                         _selection_table(summary["model_selection"])))
    curves = _png_uri(report_dir / CURVES_FILE)
    sections.append(("curves", "Training curves",
                     f'<img class="plot" src="{curves}" alt="training curves">' if curves else "<p>No plot.</p>"))
    sections.append(("confusion", "Confusion matrix (test set)", _confusion(summary, report_dir, matrix, labels)))
    if views is not None and views.data_map is not None:
        sections.append(("data-map-section", "Map of the data set", map_section(views.data_map, labels,
                                                                                 views.squares)))
    sections.append(("test-images", "Test images by cell", _test_groups(thumbs, page, labels, plan, heat)
                     if plan else "<p>No test images.</p>"))
    sections.append(("validation-errors", "Misclassified validation images", validation_html))
    if findings is not None:
        checks = summary.get("data_checks") or {}
        le = checks.get("label_errors") or {}
        intro = (f'<p class="hint">Each image judged by a new layer trained, {le.get("folds", "")}-fold, on the other '
                 "images only. Shown: images whose folder label that layer most confidently disputes. "
                 "Check them: a wrong folder, or a photo that is not of its class.</p>")
        sections.append(("label-errors", "Suspected label errors",
                         intro + _label_error_gallery(thumbs, findings, label_errors, heat)))
        dup = checks.get("duplicates") or {}
        intro = (f'<p class="hint">Exact copies (same file content) and near copies (resized, re-encoded or '
                 f'lightly cropped: bottleneck similarity at least {dup.get("near_min_similarity")} and '
                 f'{dup.get("near_margin")} above any third image) that cross the training, validation and test sets '
                 f'or classes. {dup.get("exact_pairs", 0)} exact pair(s) in all, {dup.get("near_pairs", 0)} near '
                 f'pair(s) crossing sets or classes; search: {_e(dup.get("index", ""))}.</p>')
        sections.append(("duplicates", "Duplicates and leakage",
                         intro + _pairs_gallery(thumbs, findings, pairs, len(reported))))
    else:
        sections.append(("label-errors", "Suspected label errors", "<p>The data checks did not run "
                         "(--skip_data_checks).</p>"))
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _b in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>' for sid, title, content in sections)
    module = summary.get("module") or {}
    counts = summary.get("counts") or {}
    header = (f'<header><h1>Retraining report</h1><p class="meta">{_e(summary.get("created", ""))} · '
              f'{counts.get("total", 0):,} images in {n} classes · module '
              f'{_e(module.get("spec", module.get("identity", "")))}'
              f'</p><nav>{nav}</nav>{_heat_switch(views) if views is not None else ""}</header>')
    # page.js marks the confusion-matrix cell whose images are shown (page.css's :target rule highlights the images).
    document = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                f'content="width=device-width, initial-scale=1"><title>Retraining report</title>'
                f'<style>\n{_asset("page.css")}</style>'
                f"</head><body>{header}<main>{body}</main><footer>Written by retrain.py. Full lists: "
                f"summary.json, suspected_label_errors.csv, duplicates.csv.</footer>"
                f'<script>\n{_asset("page.js")}</script>'
                "</body></html>\n")
    write_text_atomic(report_dir / PAGE_FILE, document)
    return {"file": PAGE_FILE, "shown": shown, "left_out": left_out}
