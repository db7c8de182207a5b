"""Exports: the SavedModel's two serving signatures and the TFLite variants, on the tiny module.

One small synthetic training set is trained once per TFLite variant (the
bottleneck cache is shared, so only the first run computes bottlenecks); every
export is then checked on held-out synthetic photos that training never saw.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import CLASS_COLOURS, ROOT, TINY_SIZE, make_dataset, retrain_args, write_photo
from PIL import Image

from bottleneck.cli.label_image import label_image_main
from bottleneck.cli.retrain import retrain_main
from bottleneck.data.images import load_for_model
from bottleneck.errors import UserError
from bottleneck.export import outputs as export
from bottleneck.export import tflite
from bottleneck.label_image.engine import load_graph
from bottleneck.model.tf_import import make_interpreter

LABELS = ["blue", "green", "red"]
VARIANTS = tflite.QUANTIZATIONS  # none (float32), float16, dynamic, int8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("exports") / "images", {name: 20 for name in LABELS})


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    """Photos of each class that no run trained on: JPEG and PNG, several sizes, one a PNG named .jpg."""
    root = tmp_path_factory.mktemp("held_out")
    for c, name in enumerate(LABELS):
        for i, (fmt, size, suffix) in enumerate([("JPEG", (48, 40), "jpg"), ("PNG", (37, 53), "png"),
                                                 ("JPEG", (200, 150), "jpeg"), ("PNG", (32, 32), "jpg")]):
            write_photo(root / name / f"new_{i}.{suffix}", CLASS_COLOURS[name], seed=900_000 + 10 * c + i,
                        size=size, fmt=fmt)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_module, dataset):
    """variant -> the output folder of a retrain.py run exporting that TFLite variant (and a SavedModel)."""
    shared = tmp_path_factory.mktemp("bottlenecks")
    done = {}
    for variant in VARIANTS:
        base = tmp_path_factory.mktemp(f"run_{variant}")
        out = base / "out"
        code = retrain_main(retrain_args(
            base, dataset, tiny_module, f"--bottleneck_dir={shared}", f"--saved_model_dir={out / 'saved'}",
            f"--tflite_output={out / 'model.tflite'}", f"--tflite_quantize={variant}", "--quiet", steps=100,
        ))
        assert code == 0
        done[variant] = out
    return done


def _classic_scores(out: Path, paths) -> np.ndarray:
    """The frozen graph's scores, images decoded by PIL as label_image.py does."""
    graph = load_graph(out / "graph.pb")
    return graph(np.stack([load_for_model(p, TINY_SIZE, TINY_SIZE) for p in paths]))


# --------------------------------------------------------------------------- SavedModel


def test_saved_model_serving_signatures_take_bytes_and_images(runs, held_out):
    import tensorflow as tf

    out = runs["none"]
    loaded = tf.saved_model.load(str(out / "saved"))
    assert set(loaded.signatures) == {"serving_default", "serving_images"}
    by_bytes, by_images = loaded.signatures["serving_default"], loaded.signatures["serving_images"]
    assert by_bytes.structured_input_signature[1] == {
        "image_bytes": tf.TensorSpec([None], tf.string, name="image_bytes")
    }
    assert by_images.structured_input_signature[1] == {
        "images": tf.TensorSpec([None, TINY_SIZE, TINY_SIZE, 3], tf.float32, name="images")
    }
    assert set(by_bytes.structured_outputs) == set(by_images.structured_outputs) == {"scores", "classes", "labels"}

    paths = sorted(held_out.rglob("new_*"))
    truth = [p.parent.name for p in paths]
    classic = _classic_scores(out, paths)

    result = by_bytes(image_bytes=tf.constant([p.read_bytes() for p in paths]))
    assert [s.decode() for s in result["labels"].numpy()] == truth
    assert [LABELS[i] for i in result["classes"].numpy()] == truth
    # PNG decodes identically everywhere; JPEG is decoded in the graph with the accurate integer DCT and
    # libjpeg's draft scale, which is what PIL does, so both match the frozen graph fed by PIL.
    png = [i for i, p in enumerate(paths) if p.read_bytes().startswith(b"\x89PNG")]
    assert png and len(png) < len(paths)
    np.testing.assert_allclose(result["scores"].numpy()[png], classic[png], atol=1e-5)
    np.testing.assert_allclose(result["scores"].numpy(), classic, atol=1e-3)

    pixels = np.stack([load_for_model(p, TINY_SIZE, TINY_SIZE) for p in paths])
    result = by_images(images=tf.constant(pixels))
    assert [s.decode() for s in result["labels"].numpy()] == truth
    np.testing.assert_allclose(result["scores"].numpy(), classic, atol=1e-5)


def test_saved_model_bytes_decode_as_label_image_does(tmp_path):
    """Transparent PNGs onto white, grey images to RGB, big JPEGs at libjpeg's draft scale, as images.py does."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    cases = {
        "RGBA": Image.fromarray(rng.integers(0, 256, (21, 34, 4), dtype=np.uint8), "RGBA"),
        "LA": Image.fromarray(rng.integers(0, 256, (40, 30, 2), dtype=np.uint8), "LA"),
        "L": Image.fromarray(rng.integers(0, 256, (50, 60), dtype=np.uint8), "L"),
        "P": Image.fromarray(rng.integers(0, 256, (33, 33, 3), dtype=np.uint8)).quantize(8),
    }
    encoded = {}
    for mode, image in cases.items():
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        encoded[f"{mode} png"] = buf.getvalue()
    for size in ((300, 200), (150, 100), (64, 64)):  # draft scales 8 (down to 38x25), 4 and 2
        path = write_photo(tmp_path / f"{size[0]}.jpg", (90, 160, 30), seed=size[0], size=size)
        encoded[f"{size} jpeg"] = path.read_bytes()
    encoded["gif"] = write_photo(tmp_path / "a.gif", (90, 160, 30), seed=1, fmt="GIF").read_bytes()
    for name, data in encoded.items():
        ours = export.decode_for_model(tf.constant(data), TINY_SIZE, TINY_SIZE).numpy()
        np.testing.assert_array_equal(ours, load_for_model(data, TINY_SIZE, TINY_SIZE), err_msg=name)


def test_saved_model_is_replaced_whole_and_never_replaces_a_user_folder(runs, tiny_module, tmp_path):
    import tensorflow as tf

    from bottleneck.model.modules import load_module

    module = load_module(str(tiny_module), None)
    weights, biases = np.zeros((24, 2), np.float32), np.array([0.0, 1.0], np.float32)
    target = tmp_path / "saved"
    export.write_saved_model(target, module, weights, biases, ["a", "b"], "final_result")
    (target / "stale.txt").write_text("from an older export")
    export.write_saved_model(target, module, weights, biases, ["x", "y"], "final_result")
    assert (target / "stale.txt").read_text() == "from an older export"  # not the export's: carried over
    labels = tf.saved_model.load(str(target)).signatures["serving_images"](
        images=tf.zeros([1, TINY_SIZE, TINY_SIZE, 3]))["labels"]
    assert labels.numpy().tolist() == [b"y"]

    mine = tmp_path / "my documents"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    with pytest.raises(UserError, match="holds no SavedModel"):
        export.write_saved_model(mine, module, weights, biases, ["a", "b"], "final_result")
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my documents", "saved"]  # no temporary folders left


# --------------------------------------------------------------------------- TFLite


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_tflite_variant_classifies_held_out_photos(runs, held_out, variant, capsys):
    model = runs[variant] / "model.tflite"
    # The labels embedded in the model stand in for --labels.
    assert label_image_main([f"--graph={model}", "--evaluate", str(held_out)]) == 0
    out = capsys.readouterr().out
    assert "Accuracy = 100.0% (N=12)" in out, out

    photo = held_out / "red" / "new_0.jpg"
    assert label_image_main([f"--graph={model}", f"--labels={runs[variant] / 'labels.txt'}", str(photo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines][0] == "red" and len(lines) == 3
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 0.02


def test_tflite_scores_follow_the_frozen_graph(runs, held_out):
    paths = sorted(held_out.rglob("new_*"))
    classic = _classic_scores(runs["none"], paths)
    tolerance = {"none": 1e-5, "float16": 5e-3, "dynamic": 0.05, "int8": 0.05}
    pixels = np.stack([load_for_model(p, TINY_SIZE, TINY_SIZE) for p in paths])
    for variant, atol in tolerance.items():
        model = tflite.load_tflite(runs[variant] / "model.tflite")
        assert (model.height, model.width, model.num_outputs, model.labels) == (TINY_SIZE, TINY_SIZE, 3, LABELS)
        reference = classic if variant == "none" else _classic_scores(runs[variant], paths)
        batched = model(pixels)
        np.testing.assert_allclose(batched, reference, atol=atol, err_msg=variant)
        np.testing.assert_allclose(model(pixels[:1]), batched[:1], atol=1e-6)  # and the batch size can change


def test_tflite_sizes_and_int8_input_output(runs):
    size = {v: (runs[v] / "model.tflite").stat().st_size for v in VARIANTS}
    assert size["float16"] < 0.7 * size["none"]
    assert size["dynamic"] < size["float16"] and size["int8"] < size["float16"]
    interpreter = make_interpreter((runs["int8"] / "model.tflite").read_bytes())
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.int8 and outp["dtype"] == np.int8
    assert list(inp["shape_signature"]) == [-1, TINY_SIZE, TINY_SIZE, 3]
    scale, zero_point = inp["quantization"]
    assert 0.5 / 255 < scale < 1.5 / 255 and -128 <= zero_point < -100  # calibrated on training pixels in [0, 1]
    for variant in ("none", "float16", "dynamic"):
        interpreter = make_interpreter((runs[variant] / "model.tflite").read_bytes())
        assert interpreter.get_input_details()[0]["dtype"] == np.float32


def test_tflite_flags_and_log(tiny_module, dataset, tmp_path, capsys, caplog):
    caplog.set_level("INFO", logger="retrain")
    code = retrain_main(retrain_args(tmp_path, dataset, tiny_module, "--tflite_quantize=int8", steps=10))
    assert code == 2
    assert "--tflite_quantize needs --tflite_output" in capsys.readouterr().err

    out = tmp_path / "out"
    code = retrain_main(retrain_args(tmp_path, dataset, tiny_module, f"--tflite_output={out / 'm.tflite'}", steps=10))
    assert code == 0
    assert re.search(r"Saved the TFLite model \(none, [\d.]+ MB\) to .*m\.tflite", caplog.text)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # written atomically: no leftovers


def test_label_image_tflite_errors(runs, held_out, tmp_path, capsys):
    model = runs["none"] / "model.tflite"
    photo = str(held_out / "red" / "new_0.jpg")
    assert label_image_main([f"--graph={model}", "--input_height=299", photo]) == 2
    assert "takes 32x32 images" in capsys.readouterr().err
    assert label_image_main([f"--graph={tmp_path / 'missing.tflite'}", photo]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "junk.tflite").write_bytes(b"not a model at all, just some bytes")
    assert label_image_main([f"--graph={tmp_path / 'junk.tflite'}", photo]) == 2
    err = capsys.readouterr().err
    assert "is not a usable TFLite model" in err and "Traceback" not in err
    (tmp_path / "two.txt").write_text("a\nb\n")
    assert label_image_main([f"--graph={model}", f"--labels={tmp_path / 'two.txt'}", photo]) == 2
    assert "has 2 labels" in capsys.readouterr().err


def test_embedded_labels_survive_any_text():
    import tensorflow as tf

    labels = ["café", "日本", "with space", "x" * 300]

    fn = tf.function(lambda x: tf.nn.softmax(x * 2.0)).get_concrete_function(tf.TensorSpec([None, 4], tf.float32))
    model = tf.lite.TFLiteConverter.from_concrete_functions([fn]).convert()
    assert tflite.embedded_labels(model) is None
    once = tflite.embed_labels(model, labels)
    assert tflite.embedded_labels(once) == labels
    assert tflite.embedded_labels(tflite.embed_labels(once, ["a", "b"])) == ["a", "b"]  # replaced, not added


@pytest.mark.inception
def test_inception_saved_model_and_tflite_match_the_frozen_graph(tmp_path, inception_model_dir):
    """The built-in network is constants, not variables: both exports must handle that path too."""
    import tensorflow as tf

    from bottleneck.model.modules import load_module

    module = load_module("inception_v3", inception_model_dir, log=lambda *a: None)
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.05, (module.bottleneck_size, 3)).astype(np.float32)
    biases = np.zeros(3, np.float32)
    labels = ["one", "two", "three"]
    paths = sorted((ROOT / "examples" / "held_out").glob("*.jpg"))[:3]
    assert paths
    export.write_frozen_graph(tmp_path / "graph.pb", module, weights, biases, "final_result")
    classic = load_graph(tmp_path / "graph.pb")(np.stack([load_for_model(p, 299, 299) for p in paths]))

    export.write_saved_model(tmp_path / "saved", module, weights, biases, labels, "final_result")
    serve = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    np.testing.assert_allclose(serve(image_bytes=tf.constant([p.read_bytes() for p in paths]))["scores"].numpy(),
                               classic, atol=1e-4)

    tflite.write_tflite(tmp_path / "m.tflite", module, weights, biases, labels)
    model = tflite.load_tflite(tmp_path / "m.tflite")
    assert (model.height, model.width, model.labels) == (299, 299, labels)
    np.testing.assert_allclose(model(np.stack([load_for_model(p, 299, 299) for p in paths])), classic, atol=1e-4)
