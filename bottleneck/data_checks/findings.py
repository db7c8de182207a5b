"""Know your data: what the data checks found in a run, and where it goes.

``run_checks`` looks for suspected label errors (``label_errors``) and for
duplicates and leakage (``duplicates``) among all the images (``all_images``);
the ``Findings`` are then logged, written as CSV files, summarised for
summary.json, and with ``--strict`` leakage into the test set fails the run.
File names go out by data/names.py's rule: shown on one line in the log,
written exactly in the CSVs and summary.json, with the bytes of a name that is
not UTF-8 in the ``*_bytes`` column or field beside it.
"""
from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..data.names import BYTES_SUFFIX, name_bytes, name_cells, name_fields, names_fields, one_line, utf8_text
from . import copies
from .all_images import AllImages
from .duplicates import NEAR_MARGIN, NEAR_MIN_SIMILARITY, DuplicatePair, exact_pairs, leaked, near_pairs
from .label_errors import FOLDS, LabelError, judged_rows, out_of_fold, rank_label_errors, unjudged_note

log = logging.getLogger("retrain")

LABEL_ERRORS_CSV = "suspected_label_errors.csv"
DUPLICATES_CSV = "duplicates.csv"
SUMMARY_TOP = 20  # suspected label errors listed in summary.json itself


@dataclass
class Findings:
    labels: list[str]
    images: AllImages
    out_of_fold: np.ndarray | None  # [N, C] probabilities, None when not enough images per class
    label_errors: list[LabelError]  # ranked, most confidently disputed first
    pairs: list[DuplicatePair]  # exact pairs, and near pairs crossing sets or classes
    leaked_test: list[str] = field(default_factory=list)  # test images with a copy in training or validation
    leaked_validation: list[str] = field(default_factory=list)  # validation images with a copy in training
    index: str = ""  # which similarity index was used
    folds: int = 0  # of the out-of-fold predictions (fewer than FOLDS when a class has fewer images)
    seconds: float = 0.0
    note: str = ""

    def crosses(self, pair: DuplicatePair) -> tuple[bool, bool]:
        im = self.images
        return im.sets[pair.a] != im.sets[pair.b], bool(im.y[pair.a] != im.y[pair.b])

    def reported_pairs(self) -> list[DuplicatePair]:
        """The pairs the page and the CSV list: those crossing sets or classes."""
        return [p for p in self.pairs if any(self.crosses(p))]


def run_checks(images: AllImages, labels: list[str], seed: int = 0, folds: int = FOLDS,
               fingerprints: dict | None = None) -> Findings:
    """The checks over ``images``; ``fingerprints`` (digest -> perceptual fingerprint, copies.py) find copies that
    the bottleneck similarity alone misses."""
    started = time.perf_counter()
    counts = np.bincount(images.y, minlength=len(labels))
    probabilities, errors, note, used = None, [], "", 0
    if len(images.y) and counts.min() >= 2 and len(labels) >= 2:
        used = min(folds, int(counts.min()))
        probabilities = out_of_fold(images, len(labels), used, seed)
        note = unjudged_note(probabilities)
        if judged_rows(probabilities).any():
            errors = rank_label_errors(images, probabilities, labels)
        else:  # nothing to show: the page and summary give the note instead
            probabilities = None
    else:
        note = "Too few images per class to look for label errors (at least 2 per class are needed)."
    pairs = exact_pairs(images)
    near, index = near_pairs(images, fingerprints)
    findings = Findings(labels, images, probabilities, errors, pairs, index=index, folds=used, note=note)
    findings.pairs += [p for p in near if any(findings.crosses(p))]
    findings.leaked_test, findings.leaked_validation = leaked(images, findings.pairs)
    findings.seconds = time.perf_counter() - started
    return findings


def log_findings(findings: Findings, shown: int = 10) -> None:
    """Leakage into the test set is a WARNING: the test accuracy then overstates the model."""
    im = findings.images
    if findings.leaked_test:
        log.warning("%d test image(s) have an exact or near copy in the training or validation set, so the test "
                    "accuracy overstates the model (see %s in the report):", len(findings.leaked_test), DUPLICATES_CSV)
        shown_pairs = [p for p in findings.pairs if "testing" in (im.sets[p.a], im.sets[p.b])
                       and im.sets[p.a] != im.sets[p.b]]
        for p in shown_pairs[:shown]:
            log.warning("  %s copy (similarity %.3f): %s [%s] ~ %s [%s]", p.kind, p.similarity,
                        one_line(im.paths[p.a]), im.sets[p.a], one_line(im.paths[p.b]), im.sets[p.b])
    if findings.leaked_validation:
        log.info("%d validation image(s) have an exact or near copy in the training set.",
                 len(findings.leaked_validation))
    if findings.label_errors:
        log.info("%d image(s) whose folder label a cross-validated layer disputes (%s in the report).",
                 len(findings.label_errors), LABEL_ERRORS_CSV)
    if findings.note and findings.folds:  # folds ran, but some images could not be judged
        log.warning(findings.note)


def write_csvs(report_dir: Path, findings: Findings) -> None:
    """The two CSV files; each name's bytes, where they are not UTF-8, in a last column beside the others."""
    im = findings.images
    with atomic_path(report_dir / LABEL_ERRORS_CSV) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["rank", "path", "set", "label", "suggested", "label_probability", "suggested_probability",
                        "path" + BYTES_SUFFIX])
            for rank, e in enumerate(findings.label_errors, 1):
                text, hex_bytes = name_cells(e.path)
                w.writerow([rank, text, e.set, e.label, e.suggested, f"{e.label_probability:.4f}",
                            f"{e.suggested_probability:.4f}", hex_bytes])
    with atomic_path(report_dir / DUPLICATES_CSV) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["kind", "similarity", "path_a", "set_a", "label_a", "path_b", "set_b", "label_b",
                        "crosses_sets", "crosses_classes", "path_a" + BYTES_SUFFIX, "path_b" + BYTES_SUFFIX])
            for p in findings.pairs:
                sets_differ, classes_differ = findings.crosses(p)
                w.writerow([p.kind, f"{p.similarity:.4f}", utf8_text(im.paths[p.a]), im.sets[p.a],
                            findings.labels[im.y[p.a]], utf8_text(im.paths[p.b]), im.sets[p.b],
                            findings.labels[im.y[p.b]], int(sets_differ), int(classes_differ),
                            name_bytes(im.paths[p.a]), name_bytes(im.paths[p.b])])


def summary_of(findings: Findings) -> dict:
    """What summary.json says about the data (file names are relative to the report folder)."""
    im = findings.images
    exact = [p for p in findings.pairs if p.kind == "exact"]
    near = [p for p in findings.pairs if p.kind == "near"]
    oof_accuracy = None
    if findings.out_of_fold is not None and len(im.y):
        judged = judged_rows(findings.out_of_fold)
        oof_accuracy = float((findings.out_of_fold[judged].argmax(axis=1) == im.y[judged]).mean())
    return {
        "images": int(len(im.y)),
        "seconds": round(findings.seconds, 3),
        "note": findings.note or None,
        "label_errors": {
            "folds": findings.folds,
            "cross_validated_accuracy": oof_accuracy,
            "disputed": len(findings.label_errors),
            "csv": LABEL_ERRORS_CSV,
            "top": [{**name_fields(e.path), "set": e.set, "label": e.label, "suggested": e.suggested,
                     "label_probability": round(e.label_probability, 4),
                     "suggested_probability": round(e.suggested_probability, 4)}
                    for e in findings.label_errors[:SUMMARY_TOP]],
        },
        "duplicates": {
            "csv": DUPLICATES_CSV,
            "index": findings.index,
            "near_min_similarity": NEAR_MIN_SIMILARITY,
            "near_margin": NEAR_MARGIN,
            "copy_rule": copies.copy_rule(),
            "exact_pairs": len(exact),
            "exact_cross_class": int(sum(findings.crosses(p)[1] for p in exact)),
            "exact_cross_set": int(sum(findings.crosses(p)[0] for p in exact)),
            "near_pairs": len(near),  # near pairs are kept only when they cross sets or classes
            "near_cross_class": int(sum(findings.crosses(p)[1] for p in near)),
            "near_cross_set": int(sum(findings.crosses(p)[0] for p in near)),
        },
        "leakage": {
            "test_images": len(findings.leaked_test),
            "validation_images": len(findings.leaked_validation),
            **names_fields(findings.leaked_test[:100], "test_paths"),
        },
    }


def check_run(plain_sets: dict, digest_of: dict, labels: list[str], seed: int | None, strict: bool,
              fingerprint_dir=None) -> Findings:
    """The data checks of a run: log what they found; with ``strict``, leakage into the test set fails it.

    The failure comes before any output is written, like the accuracy gate, so the previous graph stays.
    Perceptual fingerprints are kept in ``fingerprint_dir`` (the bottleneck cache's folder).
    """
    from ..errors import EXIT_FAILURE, UserError

    images = AllImages.from_sets(plain_sets, digest_of)
    findings = run_checks(images, labels, seed=seed or 0, fingerprints=copies.fingerprints(images, fingerprint_dir))
    log_findings(findings)
    if strict and findings.leaked_test:
        raise UserError(
            f"{len(findings.leaked_test)} test image(s) have an exact or near copy in the training or validation "
            f"set and --strict is set, e.g. {one_line(findings.leaked_test[0])}; the previous outputs were left "
            "untouched.",
            exit_code=EXIT_FAILURE,
        )
    return findings
