"""report.html of a multi-label run: the figures per label, the curves, and the test images with a wrong label.

A multi-label run has no confusion matrix (an image may have several labels)
and no data checks, so its page is its own, built from summary.json with
page.py's parts: the cards (every label right, micro and macro F1, mean average
precision), a table per label (images per set, threshold, precision, recall,
F1, average precision), the training curves, and the test images that got a
label wrong, each with its labels and the labels said.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..atomic import write_text_atomic
from .page import PAGE_FILE, TEST_ERRORS_CAP, _asset, _e, _figure, _left_out, _pct, _png_uri, _Thumbs
from .plots import CURVES_FILE


def _number(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cards(summary: Mapping) -> str:
    multi = summary["multi_label"]["test"]
    micro = multi.get("micro") or {}
    count = summary["accuracy"].get("test_count", 0)
    cards = [("Every label right", _pct(summary["accuracy"].get("test")), f"test images, N={count}"),
             ("Micro F1", _number(micro.get("f1")), f"precision {_pct(micro.get('precision'))}, recall "
                                                    f"{_pct(micro.get('recall'))}"),
             ("Macro F1", _number(multi.get("macro_f1")), "mean over the labels"),
             ("Mean average precision", _number(multi.get("mean_average_precision")), "mAP, at any threshold")]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div><div class="n">{_e(n)}</div></div>'
        for k, v, n in cards) + "</div>"


def _per_label_table(summary: Mapping) -> str:
    rows = []
    counts = summary["counts"]["per_class"]
    for label, stats in summary["per_class"].items():
        c = counts.get(label, {})
        f1 = stats.get("f1")
        bar = "" if f1 is None else f'<span class="bar" style="width:{f1 * 100:.0f}%"></span>'
        rows.append(
            f"<tr><th>{_e(label)}</th>"
            + "".join(f'<td class="num">{c.get(s, 0):,}</td>' for s in ("training", "validation", "testing"))
            + f'<td class="num">{stats.get("threshold", 0):.3f}</td>'
            + "".join(f'<td class="num">{_pct(stats.get(k), 0)}</td>' for k in ("precision", "recall"))
            + f'<td class="num f1">{bar}<span>{_number(f1, 2)}</span></td>'
            + f'<td class="num">{_number(stats.get("average_precision"), 2)}</td></tr>')
    macro = summary.get("macro_average", {})
    rows.append('<tr class="total"><th>macro average</th><td></td><td></td><td></td><td></td>'
                + "".join(f'<td class="num">{_pct(macro.get(k), 0)}</td>' for k in ("precision", "recall"))
                + f'<td class="num">{_number(macro.get("f1"), 2)}</td>'
                + f'<td class="num">{_number(summary["multi_label"]["test"].get("mean_average_precision"), 2)}'
                  "</td></tr>")
    return ('<table class="metrics"><thead><tr><th>label</th><th>training</th><th>validation</th><th>test</th>'
            '<th>threshold</th><th>precision</th><th>recall</th><th>F1</th><th>average precision</th></tr></thead>'
            "<tbody>" + "".join(rows) + "</tbody></table>")


def _wrong_gallery(summary: Mapping) -> str:
    wrong = summary.get("misclassified") or []
    if not summary["accuracy"].get("test_count"):
        return "<p>No test images.</p>"
    if not wrong:
        return '<p class="good-note">None: every test image got every label right.</p>'
    shown = wrong[:TEST_ERRORS_CAP]
    thumbs = _Thumbs([entry["path"] for entry in shown])
    figures = "".join(
        _figure(thumbs, entry["path"], f'<span class="truth">labels: {_e(" | ".join(entry["true"]) or "none")}</span>'
                f'<span class="guess">said: {_e(" | ".join(entry["predicted"]) or "none")}</span>')
        for entry in shown)
    return f'<div class="gallery" id="multi-label-gallery">{figures}</div>{_left_out(len(wrong) - len(shown), "")}'


def write_multi_label_page(report_dir, summary: dict) -> dict:
    """Write report.html for a multi-label run; returns what it shows and leaves out (for summary.json)."""
    report_dir = Path(report_dir)
    labels = list(summary["labels"])
    curves = _png_uri(report_dir / CURVES_FILE)
    hint = ('<p class="hint">Each label has its own sigmoid score and its own threshold, chosen on the validation set '
            'for the best F1 and written beside the labels file; <code>label_image.py</code> says every label whose '
            "score reaches its threshold.</p>")
    sections = [
        ("summary", "Summary", _cards(summary) + hint + _per_label_table(summary)),
        ("curves", "Training curves", f'<img class="plot" src="{curves}" alt="training curves">' if curves
         else "<p>No plot.</p>"),
        ("test-images", "Test images with a wrong label", _wrong_gallery(summary)),
        ("label-errors", "Suspected label errors", "<p>The data checks (suspected label errors, duplicates and "
         "leakage) look at single-label runs only; they were skipped for this multi-label run.</p>"),
    ]
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _b in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>' for sid, title, content in sections)
    module = summary.get("module") or {}
    header = (f'<header><h1>Retraining report (multi-label)</h1><p class="meta">{_e(summary.get("created", ""))} · '
              f'{len(labels)} labels · module '
              f'{_e(module.get("spec", module.get("identity", "")))}</p><nav>{nav}</nav></header>')
    document = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                f'content="width=device-width, initial-scale=1"><title>Retraining report</title>'
                f'<style>\n{_asset("page.css")}</style></head><body>{header}<main>{body}</main>'
                "<footer>Written by retrain.py. Full figures: summary.json.</footer></body></html>\n")
    write_text_atomic(report_dir / PAGE_FILE, document)
    shown = min(len(summary.get("misclassified") or []), TEST_ERRORS_CAP)
    return {"file": PAGE_FILE, "shown": {"test_misclassified": shown},
            "left_out": {"test_misclassified": len(summary.get("misclassified") or []) - shown}}
