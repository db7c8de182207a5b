"""label_image.py's three output formats: the classic text lines, CSV rows and JSON lines, one image at a time.

Names go out by data/names.py's rule: the text format and error lines show
them on one line; CSV and JSON carry every UTF-8 name exactly, and the bytes of
a name that is not UTF-8 in ``path_bytes`` (CSV's last column, a JSON field).
"""
from __future__ import annotations

import csv
import io
import json
import sys

from ..data.names import BYTES_SUFFIX, name_cells, name_fields, one_line
from .engine import UNKNOWN, Prediction, answer


def csv_header(top_k: int, threshold: float | None = None) -> list[str]:
    header = ["path"] + (["answer"] if threshold is not None else [])
    return header + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "score")] + [
        "error", "path" + BYTES_SUFFIX]


def csv_cells(prediction: Prediction, top_k: int, threshold: float | None = None) -> list[str]:
    """One CSV row: the path exactly (CSV quoting carries any character), its bytes last where not UTF-8."""
    cells = [value for pair in (prediction.top or []) for value in (pair[0], f"{pair[1]:.6f}")]
    cells += [""] * (2 * top_k - len(cells))
    said = [answer(prediction, threshold) or ""] if threshold is not None else []
    text, hex_bytes = name_cells(prediction.path)
    return [text, *said, *cells, prediction.error or "", hex_bytes]


def csv_line(cells: list[str]) -> str:
    """One CSV row without its line ending, every cell quoted where it needs to be.

    Python's writer quotes a cell only for the characters of its own line
    ending, so rows end in "\\r\\n" here and lose it: a carriage return in a name
    is quoted as a line feed is, and a reader gets the name back exactly.
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()[:-2]


# Characters that JSON strings may hold as they are but that line-splitting readers (str.splitlines) take for
# line ends; written as JSON escapes, which give the very same characters back.
_JSON_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_line(prediction: Prediction, threshold: float | None = None) -> str:
    top = [{"label": label, "score": score} for label, score in prediction.top or []]
    record = name_fields(prediction.path)
    if threshold is not None:
        record["answer"] = answer(prediction, threshold)
    record.update(predictions=top, error=prediction.error)
    text = json.dumps(record, ensure_ascii=False)
    return text.translate(str.maketrans(_JSON_LINE_BREAKS)) if any(c in text for c in _JSON_LINE_BREAKS) else text


def print_unreadable(prediction: Prediction) -> None:
    """The error line of an image that could not be classified, on stderr."""
    print(f"label_image.py: error: cannot classify {one_line(prediction.path)}: {prediction.error}", file=sys.stderr)


def write_predictions(predictions, output_format: str, top_k: int, several: bool,
                      threshold: float | None = None) -> int:
    """Print each prediction as it comes; returns how many images failed.

    With a ``threshold``, each image also gets an answer: its best label, or UNKNOWN below the threshold.
    """
    failed = 0
    with_answer = threshold is not None
    if output_format == "csv":
        print(csv_line(csv_header(top_k, threshold)))
    for prediction in predictions:
        if prediction.error is not None:
            failed += 1
            print_unreadable(prediction)
        said = answer(prediction, threshold)
        if output_format == "json":
            print(json_line(prediction, threshold))
        elif output_format == "csv":
            print(csv_line(csv_cells(prediction, top_k, threshold)))
        elif prediction.error is None:
            if several:
                print(one_line(prediction.path))
            if said == UNKNOWN and with_answer:
                print(UNKNOWN)
            for label, score in prediction.top:
                print(label, score)
        sys.stdout.flush()
    return failed
