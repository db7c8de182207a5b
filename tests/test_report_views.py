"""Why the model decides: Grad-CAM heatmaps, the data map and TensorBoard's projector files.

The heatmap tests build images whose only class signal is a coloured square in one corner, on noise, and check
that the heatmap's mass lies in that corner, on the tiny module and on the built-in Inception-v3.
"""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_module, make_dataset, retrain_args, write_photo
from PIL import Image

from bottleneck.cli.retrain import retrain_main
from bottleneck.data.images import load_for_model
from bottleneck.data.split import which_set
from bottleneck.model.heatmaps import cut_network, feature_grids, grad_cam
from bottleneck.model.modules import load_module
from bottleneck.model.precision import choose

SQUARE_COLOURS = {"red": (230, 30, 30), "green": (30, 200, 40), "blue": (30, 50, 230)}
SQUARE = 0.3  # of the image's side, in its top-left corner


def square_in_corner(root: Path, per_class: int = 12, size: int = 96) -> tuple[list[Path], np.ndarray]:
    """Uniform colour noise everywhere, and a square of the class's colour in the top-left corner."""
    rng = np.random.default_rng(0)
    paths, classes = [], []
    side = int(size * SQUARE)
    for c, colour in enumerate(SQUARE_COLOURS.values()):
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size, 3)).astype(np.uint8)
            pixels[:side, :side] = np.clip(np.array(colour) + rng.normal(0, 10, (side, side, 3)), 0, 255)
            path = root / f"{c}_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
            paths.append(path)
            classes.append(c)
    return paths, np.array(classes)


def fitted_layer(x: np.ndarray, y: np.ndarray, classes: int, steps: int = 500):
    """A softmax layer on the bottlenecks, by plain gradient descent: weights [D, C], biases [C]."""
    weights, biases = np.zeros((x.shape[1], classes), np.float32), np.zeros(classes, np.float32)
    target = np.eye(classes)[y]
    rate = 0.5 / float(np.mean(np.sum(x * x, axis=1)))
    for _ in range(steps):
        z = x @ weights + biases
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        weights -= (rate * x.T @ (p - target) / len(x)).astype(np.float32)
        biases -= (rate * (p - target).mean(axis=0)).astype(np.float32)
    assert ((x @ weights + biases).argmax(axis=1) == y).mean() == 1.0
    return weights, biases


def corner_share(module, tmp_path) -> np.ndarray:
    """Each image's share of its own class's heatmap mass that lies in the top-left quadrant."""
    import tensorflow as tf

    paths, y = square_in_corner(tmp_path / "squares")
    images = np.stack([load_for_model(str(p), module.height, module.width) for p in paths])
    x = np.concatenate([module.features(tf.constant(images[s:s + 12])).numpy() for s in range(0, len(images), 12)])
    weights, biases = fitted_layer(x, y, len(SQUARE_COLOURS))
    network, why_not = cut_network(module)
    assert network is not None, why_not
    maps = grad_cam(network, feature_grids(network, images, choose("auto")), weights, biases, y[None, :])[0]
    assert maps.shape[0] == len(paths) and maps.max() <= 1.0 and maps.min() >= 0.0
    h, w = maps.shape[1:]
    return maps[:, : h // 2, : w // 2].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


def test_the_heatmap_lies_on_the_coloured_square_with_the_tiny_module(tiny_module, tmp_path):
    share = corner_share(load_module(str(tiny_module), None), tmp_path)
    # The quadrant is a quarter of the image; the evidence is in it.
    assert share.mean() > 0.6 and share.min() > 0.4, share


@pytest.mark.inception
def test_the_heatmap_lies_on_the_coloured_square_with_the_built_in_network(inception_model_dir, tmp_path):
    share = corner_share(load_module("inception_v3", inception_model_dir), tmp_path)
    assert share.mean() > 0.6 and share.min() > 0.4, share


def test_a_re_run_makes_the_heatmaps_from_the_kept_grids_without_the_network(tiny_module, tmp_path, monkeypatch):
    from bottleneck.model import heatmaps as model_heatmaps
    from bottleneck.report import heatmaps
    from bottleneck.training.layer import TrainedLayer

    module = load_module(str(tiny_module), None)
    paths, y = square_in_corner(tmp_path / "squares", per_class=3)
    layer = TrainedLayer(np.random.default_rng(0).normal(size=(24, 3)).astype(np.float32), np.zeros(3, np.float32))
    targets = [heatmaps.Target(str(p), int(c), int((c + 1) % 3)) for p, c in zip(paths, y)]
    first = heatmaps.gallery_heatmaps(targets, module, layer, choose("float32"), tmp_path / "cache")
    assert len(first.maps) == len(targets) and (tmp_path / "cache" / heatmaps.GRIDS_FILE).is_file()
    monkeypatch.setattr(model_heatmaps, "feature_grids", lambda *a: pytest.fail("the network ran again"))
    monkeypatch.setattr(heatmaps, "feature_grids", lambda *a: pytest.fail("the network ran again"))
    again = heatmaps.gallery_heatmaps(targets, module, layer, choose("float32"), tmp_path / "cache")
    assert again.maps.keys() == first.maps.keys()
    assert all(np.array_equal(a, b) for t in targets for a, b in zip(again.maps[t], first.maps[t]))
    # A file that changed is the network's again.
    Image.fromarray(np.zeros((96, 96, 3), np.uint8)).save(paths[0])
    monkeypatch.undo()
    changed = heatmaps.gallery_heatmaps(targets, module, layer, choose("float32"), tmp_path / "cache")
    assert not np.array_equal(changed.maps[targets[0]][0], first.maps[targets[0]][0])


def test_a_module_without_a_feature_map_says_why_it_has_no_heatmaps(tmp_path):
    import tensorflow as tf

    class Opaque(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(images, axis=[1, 2])

    tf.saved_model.save(Opaque(), str(tmp_path / "opaque"))
    network, why_not = cut_network(load_module(str(tmp_path / "opaque"), None))
    assert network is None and "feature_map" in why_not and "opaque" in why_not


# ------------------------------------------------------------------------------------------ a run's views


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_module):
    """One run whose data holds misclassified images, suspected label errors and a duplicate."""
    tmp = tmp_path_factory.mktemp("views")
    images = make_dataset(tmp / "images", {"red": 30, "green": 30, "blue": 30})
    names = [f"red_{i}.jpg" for i in range(400) if which_set(f"red_{i}.jpg", 10, 10) == "testing"][:2]
    for k, name in enumerate(names):
        write_photo(images / "blue" / name, (220, 40, 40), seed=7000 + k)
    (images / "red" / "green_copy.jpg").write_bytes((images / "green" / "img_002.jpg").read_bytes())
    assert retrain_main(retrain_args(tmp, images, tiny_module)) == 0
    report = tmp / "out" / "graph_report"
    return tmp, json.loads((report / "summary.json").read_text()), report


def test_each_view_is_timed_and_summarised(run):
    _tmp, summary, _report = run
    for view in ("heatmaps", "thumbnails", "data_map", "projector"):
        assert summary["timings_s"][f"report_{view}"] >= 0
    views = summary["views"]
    assert views["heatmaps"]["images"] >= 2 and "Grad-CAM" in views["heatmaps"]["note"]
    total = summary["counts"]["total"]
    assert views["data_map"]["points"] == views["data_map"]["images"] == total
    assert "t-SNE" in views["data_map"]["method"]
    assert views["projector"]["points"] == total


def test_the_projector_files_load_as_tensorboard_reads_them(run):
    """projector_config.pbtxt parsed with the plugin's own proto; the tensor, metadata and sprite read as the
    plugin reads them."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector import ProjectorConfig, projector_plugin

    tmp, summary, _report = run
    logs = tmp / "out" / "logs"
    config = text_format.Parse((logs / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    total = summary["counts"]["total"]
    assert list(embedding.tensor_shape) == [total, 24]
    tensor_file = logs / embedding.tensor_path
    try:
        tensor = projector_plugin._read_tensor_tsv_file(str(tensor_file))
    except UnicodeDecodeError:
        tensor = projector_plugin._read_tensor_binary_file(str(tensor_file), embedding.tensor_shape)
    assert tensor.shape == (total, 24) and np.isfinite(tensor).all()

    with open(logs / embedding.metadata_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["path", "label", "set", "prediction", "flags"]
    assert len(rows) == total + 1 and all(len(r) == 5 for r in rows)
    assert {r[1] for r in rows[1:]} == set(summary["labels"])
    assert {r[2] for r in rows[1:]} <= {"training", "validation", "testing"}
    misclassified = {m["path"] for m in summary["misclassified"]}
    assert misclassified and misclassified <= {r[0] for r in rows[1:] if "misclassified" in r[4]}
    assert any("duplicate" in r[4] for r in rows[1:]) and any("suspected label error" in r[4] for r in rows[1:])

    tile = list(embedding.sprite.single_image_dim)
    assert tile == [64, 64]
    with Image.open(logs / embedding.sprite.image_path) as sprite:
        per_row = int(np.ceil(np.sqrt(total)))
        assert sprite.size == (per_row * 64, int(np.ceil(total / per_row)) * 64)
    # The order of the rows is that of the metadata: a row's vector is its image's bottleneck.
    from bottleneck.model.modules import load_module as load

    first = rows[1][0]
    module = load(summary["module"]["spec"], None)
    import tensorflow as tf

    vector = module.features(tf.constant(load_for_model(first, 32, 32)[None])).numpy()[0]
    np.testing.assert_allclose(tensor[0], vector, rtol=1e-4, atol=1e-5)


def test_the_tensor_is_text_where_its_bytes_would_read_as_a_line_of_text(tmp_path):
    from tensorboard.plugins.projector import projector_plugin

    from bottleneck.report.projector import _tensor_file

    zeros = np.zeros((3, 4), np.float32)  # all bytes 0: valid UTF-8, which the plugin would try as TSV
    assert _tensor_file(tmp_path, zeros) == "bottlenecks.tsv"
    assert projector_plugin._read_tensor_tsv_file(str(tmp_path / "bottlenecks.tsv")).shape == (3, 4)
    values = np.random.default_rng(0).random((3, 4)).astype(np.float32) + 1
    assert _tensor_file(tmp_path, values) == "bottlenecks.bytes"
    assert not (tmp_path / "bottlenecks.tsv").exists()
    with pytest.raises(UnicodeDecodeError):
        projector_plugin._read_tensor_tsv_file(str(tmp_path / "bottlenecks.bytes"))
    np.testing.assert_array_equal(
        projector_plugin._read_tensor_binary_file(str(tmp_path / "bottlenecks.bytes"), [3, 4]), values)


def test_the_map_is_reused_when_the_images_are_the_same(run, monkeypatch):
    from bottleneck.report import data_map
    from bottleneck.report.every_image import every_image

    rng = np.random.default_rng(1)
    _tmp, _summary, report = run

    class Set:
        def __init__(self, n, start):
            self.x, self.y = rng.random((n, 8)).astype(np.float32), np.arange(n) % 2
            self.names = [f"/x/{start + i}.jpg" for i in range(n)]

    sets = {"training": Set(30, 0), "validation": Set(5, 100), "testing": Set(5, 200)}
    table, total = every_image(sets, None, {}, None, seed=1)
    source = {name: x for data in sets.values() for name, x in zip(data.names, data.x)}
    assert total == len(table) == 40 and all(np.array_equal(table.x[k], source[p]) for k, p in enumerate(table.paths))
    first = data_map.place(table, total, 1, report)
    monkeypatch.setattr(data_map, "_placed", lambda *a: pytest.fail("placed again"))
    again = data_map.place(table.take(np.arange(total)[::-1]), total, 1, report)  # another order
    np.testing.assert_array_equal(again.points[::-1], first.points)


def test_above_the_limits_every_flagged_image_is_kept(tiny_module, tmp_path, monkeypatch):
    from bottleneck.report import views

    monkeypatch.setattr(views, "MAP_LIMIT", 12)
    monkeypatch.setattr(views, "PROJECTOR_LIMIT", 20)
    images = make_dataset(tmp_path / "images", {"red": 20, "green": 20, "blue": 20})
    tested = [f"red_{i}.jpg" for i in range(400) if which_set(f"red_{i}.jpg", 10, 10) == "testing"][:2]
    for k, name in enumerate(tested):
        write_photo(images / "blue" / name, (220, 40, 40), seed=7000 + k)
    assert retrain_main(retrain_args(tmp_path, images, tiny_module)) == 0
    summary = json.loads((tmp_path / "out" / "graph_report" / "summary.json").read_text())
    assert summary["views"]["data_map"] == {**summary["views"]["data_map"], "points": 12, "images": 62}
    assert summary["views"]["projector"]["points"] == 20
    rows = (tmp_path / "out" / "logs" / "projector" / "metadata.tsv").read_text().splitlines()[1:]
    flagged = [r for r in rows if not r.endswith("\tnone")]
    assert len(rows) == 20 and flagged and rows[:len(flagged)] == flagged  # flagged first
    page = (tmp_path / "out" / "graph_report" / "report.html").read_text()
    assert "Showing 12 of 62 images" in page


def test_skip_heatmaps_leaves_them_out_and_says_so(tiny_module, tmp_path):
    images = make_dataset(tmp_path / "images", {"red": 12, "green": 12})
    write_photo(images / "green" / "red_0.jpg", (220, 40, 40), seed=99)
    assert retrain_main(retrain_args(tmp_path, images, tiny_module, "--skip_heatmaps")) == 0
    summary = json.loads((tmp_path / "out" / "graph_report" / "summary.json").read_text())
    assert summary["views"]["heatmaps"] == {"images": 0, "note": "Heatmaps were not computed (--skip_heatmaps)."}
    page = (tmp_path / "out" / "graph_report" / "report.html").read_text()
    assert 'data-heat-size="' not in page and "--skip_heatmaps" in page


def test_a_module_without_a_feature_map_runs_and_says_so_in_the_log_and_on_the_page(tmp_path, caplog, capsys):
    import tensorflow as tf

    tiny = build_tiny_module(tmp_path / "tiny")
    loaded = tf.saved_model.load(str(tiny))

    class Opaque(tf.Module):  # the tiny network's own call, without the two functions that cut it
        def __init__(self):
            super().__init__()
            self.inner = loaded

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        def __call__(self, images):
            return self.inner(images)

    tf.saved_model.save(Opaque(), str(tmp_path / "opaque"))
    images = make_dataset(tmp_path / "images", {"red": 12, "green": 12})
    for k in range(3):  # disputed images, which would have heatmaps
        write_photo(images / "green" / f"red_{k}.jpg", (220, 40, 40), seed=99 + k)
    caplog.set_level("INFO", logger="retrain")
    assert retrain_main(retrain_args(tmp_path, images, tmp_path / "opaque")) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("No heatmaps on report.html")]
    assert len(lines) == 1 and "feature_map" in lines[0]
    page = (tmp_path / "out" / "graph_report" / "report.html").read_text()
    assert 'data-heat-size="' not in page and "No heatmaps: the module" in page


def test_a_re_run_reuses_the_thumbnails_of_unchanged_images(tmp_path, monkeypatch):
    from bottleneck.report import sprite

    paths = [str(write_photo(tmp_path / "images" / f"{i}.jpg", (200, 40, 40), seed=i)) for i in range(5)]
    first = sprite.tiles(paths, cache_dir=tmp_path / "cache")
    assert first.shape == (5, sprite.TILE, sprite.TILE, 3)
    made = []
    real = sprite._tile
    monkeypatch.setattr(sprite, "_tile", lambda path, size: made.append(path) or real(path, size))
    np.testing.assert_array_equal(sprite.tiles(paths, cache_dir=tmp_path / "cache"), first)
    assert made == []
    write_photo(Path(paths[2]), (40, 40, 200), seed=99)  # changed: decoded again, the others kept
    again = sprite.tiles(paths[1:], cache_dir=tmp_path / "cache")
    assert made == [paths[2]] and not np.array_equal(again[1], first[2])
    np.testing.assert_array_equal(again[0], first[1])
