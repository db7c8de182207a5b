"""The thresholds file of a multi-label run: each label's threshold, beside the labels file.

``<labels>_thresholds.json`` (config.settings.thresholds_path) holds the labels
in score order, each label's threshold, whether it was chosen on the validation
set (a label that no validation image has keeps 0.5), and the validation F1 at
it.  label_image.py says a label when its score is at least its threshold.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import UserError
from ..training.multi_label_metrics import Thresholds

THRESHOLDS_FORMAT = "bottleneck-thresholds/1"


def thresholds_document(labels: list[str], thresholds: Thresholds) -> dict:
    return {
        "format": THRESHOLDS_FORMAT,
        "labels": list(labels),
        "thresholds": [round(float(v), 6) for v in thresholds.values],
        "chosen_on_validation": [bool(c) for c in thresholds.chosen],
        "validation_f1": [None if f != f else round(float(f), 6) for f in thresholds.validation_f1],
    }


def write_thresholds(path, labels: list[str], thresholds: Thresholds) -> None:
    write_text_atomic(path, json.dumps(thresholds_document(labels, thresholds), indent=2, ensure_ascii=False) + "\n")


def read_thresholds(path, labels: list[str]) -> list[float]:
    """The threshold of each of ``labels``, from the file a multi-label run wrote; UserError when it does not fit."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        values = [float(v) for v in document["thresholds"]]
        written = list(document["labels"])
    except FileNotFoundError:
        raise UserError(f"Thresholds file '{path}' not found; pass the thresholds file that retrain.py "
                        "--multi_label wrote beside its labels (--thresholds).") from None
    except OSError as exc:
        raise UserError(f"Thresholds file '{path}' cannot be read ({exc.strerror or exc}).") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"'{path}' is not a thresholds file of retrain.py --multi_label.") from None
    if written != list(labels) or len(values) != len(labels):
        raise UserError(f"The thresholds file '{path}' is for other labels than the labels file; use the files "
                        "written together by one run.")
    return values
