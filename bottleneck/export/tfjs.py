"""The whole classifier as a TensorFlow.js graph model folder (--tfjs_output), made by the tensorflowjs converter.

tensorflowjs cannot be installed beside this project's TensorFlow (its
tensorflow-decision-forests dependency pins an older one), so setup.sh gives it
its own virtual environment, ``.venv-tfjs`` (requirements-tfjs.txt), and the
export runs its ``tensorflowjs_converter`` as a separate process on the frozen
graph the run has just written (``$BOTTLENECK_TFJS_CONVERTER`` names another
converter).  The folder holds ``model.json`` and its weight files: input
``Placeholder`` (float32 [N, H, W, 3], RGB in [0, 1], already resized), output
``final_result`` (the scores, in labels-file order), float32 weights, and in
``model.json``'s user-defined metadata ``classifier``: the labels, whether the
run is multi-label, and its thresholds.  The folder is built beside its target
and swapped in whole with the run's other outputs (atomic.all_or_nothing).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..atomic import defer
from ..errors import EXIT_FAILURE, UserError, last_line
from ..model.modules import FeatureModule
from ..model.traced import INPUT_NAME

CONVERTER_VARIABLE = "BOTTLENECK_TFJS_CONVERTER"
CONVERTER_VENV = ".venv-tfjs"  # at the repository root, made by setup.sh
MODEL_FILE = "model.json"
METADATA_NAME = "classifier"  # model.json's userDefinedMetadata key (GraphModel.metadata in TensorFlow.js)


def converter_path() -> Path:
    """The tensorflowjs_converter to run; UserError (exit 2) when there is none, before any work starts."""
    given = os.environ.get(CONVERTER_VARIABLE)
    path = Path(given) if given else Path(__file__).resolve().parents[2] / CONVERTER_VENV / "bin" / \
        "tensorflowjs_converter"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise UserError(f"--tfjs_output needs the TensorFlow.js converter, which ./setup.sh --tfjs installs in its "
                        f"own environment ({CONVERTER_VENV}); it is not at '{path}' (${CONVERTER_VARIABLE} names "
                        "another).")
    return path


def check_tfjs_dir(directory) -> None:
    """Raise UserError unless ``directory`` may be replaced whole: absent, empty, or a TensorFlow.js model."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--tfjs_output '{directory}' is a file, not a folder.")
    if directory.is_dir() and not (directory / MODEL_FILE).is_file() and any(directory.iterdir()):
        raise UserError(f"--tfjs_output '{directory}' is a folder that holds no TensorFlow.js model; it would be "
                        "replaced whole, so name a new or empty folder (or a previous --tfjs_output).")


def metadata(module: FeatureModule, labels: list[str], thresholds=None) -> dict:
    entry = {"labels": list(labels), "multi_label": thresholds is not None,
             "input": {"name": INPUT_NAME, "shape": [None, module.height, module.width, 3],
                       "values": "RGB in [0, 1], already resized"}}
    if thresholds is not None:
        entry["thresholds"] = [round(float(v), 6) for v in thresholds.values]
    return entry


def write_tfjs(directory, graph_def, module: FeatureModule, labels: list[str], thresholds=None,
               final_tensor_name: str = "final_result") -> None:
    """Convert the frozen ``graph_def`` into a temporary sibling folder, then swap it in with the other outputs."""
    converter = converter_path()
    directory = Path(directory)
    check_tfjs_dir(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        (tmp / "graph.pb").write_bytes(graph_def.SerializeToString())
        (tmp / "metadata.json").write_text(json.dumps(metadata(module, labels, thresholds), ensure_ascii=False),
                                           encoding="utf-8")
        command = [str(converter), "--input_format=tf_frozen_model", "--output_format=tfjs_graph_model",
                   f"--output_node_names={final_tensor_name}", f"--metadata={METADATA_NAME}:{tmp / 'metadata.json'}",
                   str(tmp / "graph.pb"), str(tmp / "model")]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run(command, capture_output=True, text=True, env=env, errors="replace")
        if done.returncode != 0 or not (tmp / "model" / MODEL_FILE).is_file():
            said = last_line(done.stderr or done.stdout).rstrip(".")
            raise UserError(f"Could not convert the classifier to TensorFlow.js (the converter exited "
                            f"{done.returncode}): {said}.", exit_code=EXIT_FAILURE)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    previous = tmp / "previous"
    swapped = []

    def commit():
        if directory.exists():
            directory.rename(previous)
        try:
            (tmp / "model").rename(directory)
        except OSError:
            if previous.exists():
                previous.rename(directory)
            raise
        swapped.append(True)

    def rollback():  # another output failed after this folder was swapped in: bring the old one back
        if not swapped:
            return
        directory.rename(tmp / "model")
        if previous.exists():
            previous.rename(directory)
        swapped.clear()

    remove = lambda: shutil.rmtree(tmp, ignore_errors=True)  # noqa: E731
    defer(commit, remove, prepare=lambda: check_tfjs_dir(directory), rollback=rollback, finish=remove,
          target=directory)
