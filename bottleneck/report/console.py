"""The few lines a run ends with on stdout: test accuracy, the weakest classes, what to look at next."""
from __future__ import annotations

from .page import PAGE_FILE
from .plots import CONFUSION_FILE, CURVES_FILE
from .summary import SUMMARY_FILE


def human_summary(summary: dict, worst: int = 3) -> list[str]:
    """A few lines for the end of a run, from ``write_report``'s summary."""
    lines = []
    accuracy = summary.get("accuracy", {})
    if accuracy.get("test") is not None:
        lines.append(f"Test accuracy: {accuracy['test'] * 100:.1f}% (N={accuracy.get('test_count', 0)})")
    else:
        lines.append("Test accuracy: not measured (no test images).")
    multi = (summary.get("multi_label") or {}).get("test")
    if multi and multi.get("count"):
        shown = {k: "n/a" if v is None else f"{v:.3f}" for k, v in
                 (("micro", (multi.get("micro") or {}).get("f1")), ("macro", multi.get("macro_f1")),
                  ("map", multi.get("mean_average_precision")))}
        lines.append(f"Multi-label test (accuracy: every label right): micro F1 {shown['micro']}, macro F1 "
                     f"{shown['macro']}, mean average precision {shown['map']}")
    per_class = summary.get("per_class", {})
    scored = [(stats["f1"], label, stats) for label, stats in per_class.items() if stats.get("f1") is not None]
    weak = sorted((s for s in scored if s[0] < 1.0), key=lambda s: (s[0], s[1]))[: max(0, worst)]
    if weak and len(per_class) > 1:
        lines.append("Weakest classes on the test set:")
        for f1, label, stats in weak:
            recall = stats.get("recall")
            recall_text = "n/a" if recall is None else f"{recall * 100:.0f}%"
            lines.append(f"  {label}: F1 {f1:.2f}, recall {recall_text} ({stats.get('support', 0)} test images)")
    tuned = summary.get("fine_tune")
    if tuned:
        before, after = tuned["validation_accuracy_before"], tuned["validation_accuracy_after"]
        if before is None:
            lines.append("Fine-tuning ran without validation images, so its effect was not measured.")
        else:
            verdict = "kept" if tuned["helped"] else "not kept: it did not lower the validation cross-entropy"
            lines.append(f"Fine-tuning {tuned['blocks']} block(s): validation accuracy {before * 100:.1f}% -> "
                         f"{after * 100:.1f}% ({verdict}).")
    network = summary.get("network_fine_tune")
    if network and network["history"][0]["validation_accuracy"] is not None:
        before = network["history"][0]["validation_accuracy"]
        after = next(p for p in network["history"] if p["epoch"] == network["kept_epoch"])["validation_accuracy"]
        verdict = f"epoch {network['kept_epoch']} kept" if network["helped"] else "not kept: no better on validation"
        lines.append(f"Fine-tuning the whole network: validation accuracy {before * 100:.1f}% -> {after * 100:.1f}% "
                     f"({verdict}).")
    skipped = summary.get("skipped_count", len(summary.get("skipped", [])))
    if skipped:
        lines.append(f"Skipped {skipped} unreadable image{'s' if skipped != 1 else ''} (listed in {SUMMARY_FILE}).")
    if summary.get("overfitting_warning"):
        lines.append(summary["overfitting_warning"])
    checks = summary.get("data_checks")
    if checks:
        leak = checks["leakage"]["test_images"]
        if leak:
            lines.append(f"Leakage: {leak} test image{'s have' if leak != 1 else ' has'} a copy in the training or "
                         "validation set, so the test accuracy overstates the model.")
        disputed = checks["label_errors"]["disputed"]
        if disputed:
            lines.append(f"Suspected label errors: {disputed} image{'s' if disputed != 1 else ''} "
                         f"(ranked in {checks['label_errors']['csv']}).")
    if summary.get("report_dir"):
        page = f"{PAGE_FILE}, " if summary.get("page") else ""
        lines.append(f"Report: {summary['report_dir']} ({page}{SUMMARY_FILE}, {CURVES_FILE}, {CONFUSION_FILE})")
    return lines
