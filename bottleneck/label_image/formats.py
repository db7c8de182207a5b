"""label_image.py's three output formats: the classic text lines, CSV rows and JSON lines, one image at a time."""
from __future__ import annotations

import csv
import json
import sys

from ..data.names import one_line, utf8_text
from .engine import UNKNOWN, Prediction, answer


def csv_header(top_k: int, threshold: float | None = None) -> list[str]:
    header = ["path"] + (["answer"] if threshold is not None else [])
    return header + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "score")] + ["error"]


def csv_cells(prediction: Prediction, top_k: int, threshold: float | None = None) -> list[str]:
    """One CSV row; the path on one line, whatever characters its name holds."""
    cells = [value for pair in (prediction.top or []) for value in (pair[0], f"{pair[1]:.6f}")]
    cells += [""] * (2 * top_k - len(cells))
    said = [answer(prediction, threshold) or ""] if threshold is not None else []
    return [one_line(prediction.path), *said, *cells, prediction.error or ""]


def json_line(prediction: Prediction, threshold: float | None = None) -> str:
    top = [{"label": label, "score": score} for label, score in prediction.top or []]
    record = {"path": utf8_text(prediction.path)}
    if threshold is not None:
        record["answer"] = answer(prediction, threshold)
    record.update(predictions=top, error=prediction.error)
    return json.dumps(record, ensure_ascii=False)


def print_unreadable(prediction: Prediction) -> None:
    """The error line of an image that could not be classified, on stderr."""
    print(f"label_image.py: error: cannot classify {one_line(prediction.path)}: {prediction.error}", file=sys.stderr)


def write_predictions(predictions, output_format: str, top_k: int, several: bool,
                      threshold: float | None = None) -> int:
    """Print each prediction as it comes; returns how many images failed.

    With a ``threshold``, each image also gets an answer: its best label, or UNKNOWN below the threshold.
    """
    failed = 0
    writer = None
    with_answer = threshold is not None
    if output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(csv_header(top_k, threshold))
    for prediction in predictions:
        if prediction.error is not None:
            failed += 1
            print_unreadable(prediction)
        said = answer(prediction, threshold)
        if output_format == "json":
            print(json_line(prediction, threshold))
        elif output_format == "csv":
            writer.writerow(csv_cells(prediction, top_k, threshold))
        elif prediction.error is None:
            if several:
                print(one_line(prediction.path))
            if said == UNKNOWN and with_answer:
                print(UNKNOWN)
            for label, score in prediction.top:
                print(label, score)
        sys.stdout.flush()
    return failed
