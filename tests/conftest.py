"""Shared fixtures: a tiny feature-extractor SavedModel, synthetic image folders, one graph trained on them.

Most tests run the whole tool against the tiny model (32x32 input, 24-value
bottleneck), so they exercise the real code paths in seconds; a few tests
marked ``inception`` use the real built-in Inception-v3. The plain helpers
these fixtures build on are in helpers.py.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

# The helpers' own asserts (the_error, one_sentence) explain a failure as the tests' asserts do.
pytest.register_assert_rewrite("helpers")

# CLASS_COLOURS, ROOT, run_retrain and write_photo are imported for test files still being written, which take
# them from conftest; helpers is where they live.
from helpers import (  # noqa: E402, F401
    CLASS_COLOURS,
    ROOT,
    TrainedGraph,
    build_tiny_module,
    make_dataset,
    retrain_args,
    run_retrain,
    write_photo,
)


@pytest.fixture(scope="session")
def tiny_module(tmp_path_factory) -> Path:
    return build_tiny_module(tmp_path_factory.mktemp("tiny") / "tiny_module")


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "images")


@pytest.fixture(scope="session")
def trained_graph(tiny_module, tmp_path_factory) -> TrainedGraph:
    """graph.pb and labels.txt (blue, green, red) of one retrain.py run on the tiny module, for the tests that
    only need a trained classifier to run label_image.py on.

    Twenty photos a class and 150 steps classify held-out photos of the three colours without a mistake.
    float32 whatever the processor, so the graph is the same on every machine.
    """
    from bottleneck.cli.retrain import retrain_main

    tmp = tmp_path_factory.mktemp("trained_graph")
    images = make_dataset(tmp / "images", {"red": 20, "green": 20, "blue": 20})
    with contextlib.redirect_stderr(io.StringIO()) as log, contextlib.redirect_stdout(io.StringIO()):
        code = retrain_main(retrain_args(tmp, images, tiny_module, "--precision=float32", steps=150))
    assert code == 0, log.getvalue()[-3000:]
    out = tmp / "out"
    return TrainedGraph(out=out, graph=out / "graph.pb", labels=out / "labels.txt", images=images)


@pytest.fixture(scope="session")
def inception_model_dir() -> Path:
    """The converted built-in model: converted once per machine (the set-up script does it)."""
    from bottleneck.model.weights import default_model_dir, weights_path

    model_dir = Path(os.environ.get("BOTTLENECK_MODEL_DIR", default_model_dir()))
    if not weights_path(model_dir).is_file():
        from bottleneck.model.weights import ensure_weights

        ensure_weights(model_dir)
    return model_dir
