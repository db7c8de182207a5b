"""--preset auto: the setting chosen by cross-validation follows the data, given flags stay as given, the choice
lands in summary.json and report.html, and a run without it searches nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bottleneck.config.settings import TrainSettings
from bottleneck.errors import UserError
from bottleneck.training import model_selection as ms
from tests.helpers import make_dataset, run_retrain, the_error

# The real grid with fewer steps, so that each search below takes a fraction of a second.
SHORT_GRID = tuple(ms.Axis(a.flags, ((100,), (400,))) if a.flags == (ms.STEPS_FLAG,) else a for a in ms.GRID)


def separable(n=120, dim=8, seed=0):
    """Two classes far apart along one axis: every setting classifies them without a mistake."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(0, 0.3, (n, dim))
    x[:, 0] += (2 * y - 1) * 3
    return x.astype(np.float32), y


def needs_a_fast_optimizer(n=120, dim=8, seed=0):
    """Two classes told apart only by the difference of two features that share a large common noise, all of them
    small: the class means point the wrong way, and plain SGD at 0.01 is still near them after a few hundred steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    shared = rng.normal(0, 3.0, n)
    x = rng.normal(0, 0.3, (n, dim))
    x[:, 0] += shared + (2 * y - 1)
    x[:, 1] += shared
    return (x * 0.2).astype(np.float32), y


def noise_like(x, seed=1):
    return np.random.default_rng(seed).normal(0, 1, x.shape).astype(np.float32)


def search(vectors, y, fixed=None, grid=SHORT_GRID):
    fold = np.arange(len(y)) // 2 % ms.FOLDS  # stratified: the classes alternate
    return ms.select(vectors, y, fold, 2, TrainSettings(), fixed or {}, grid)


def optimizer_of(setting):
    return setting["optimizer"], setting["learning_rate"]


def test_the_search_picks_the_optimizer_that_these_data_need():
    easy = search({"mixed_10": separable()[0]}, separable()[1], grid=ms.without_layer(SHORT_GRID))
    hard = search({"mixed_10": needs_a_fast_optimizer()[0]}, needs_a_fast_optimizer()[1],
                  grid=ms.without_layer(SHORT_GRID))
    # Where every setting is perfect, the classic one is the simplest within noise.
    assert {s.mean for s in easy.table} == {1.0}
    assert optimizer_of(easy.setting) == ("sgd", 0.01)
    assert easy.setting["weight_decay"] == 0 and easy.setting["label_smoothing"] == 0
    # Where the classic optimizer is far behind, another wins, by more than the noise.
    assert optimizer_of(hard.setting) != ("sgd", 0.01)
    classic = [s for s in hard.table if optimizer_of(s.point) == ("sgd", 0.01)]
    assert max(s.mean for s in classic) < hard.table[hard.chosen].mean - 0.2
    assert not any(s.within_noise for s in classic)


def test_the_search_picks_the_layer_whose_vectors_tell_the_classes_apart():
    x, y = separable()
    picked = {}
    for informative in ("mixed_10", "mixed_9"):
        other = "mixed_9" if informative == "mixed_10" else "mixed_10"
        selection = search({informative: x, other: noise_like(x)}, y)
        picked[informative] = selection.setting[ms.LAYER_FLAG]
        assert len(selection.table) == len(ms.grid_points({}, SHORT_GRID))  # both layers searched
    assert picked == {"mixed_10": "mixed_10", "mixed_9": "mixed_9"}


def test_a_simpler_setting_within_noise_of_the_best_is_chosen_and_one_beyond_it_is_not():
    classic = dict(ms.CLASSIC)
    adam = {**classic, "optimizer": "adam", "learning_rate": 0.001}
    adam_layer = {**adam, ms.LAYER_FLAG: "mixed_9"}
    # The best is one point above the classic setting on average, but it swings more than that between folds.
    table = [ms.Scored(classic, np.array([0.90, 0.88, 0.91, 0.89, 0.90])),
             ms.Scored(adam_layer, np.array([0.93, 0.86, 0.94, 0.87, 0.93]))]
    best, chosen = ms.choose(table)
    assert (best, chosen) == (1, 0)
    # Ahead on every fold by two points: beyond the noise, so the best is chosen.
    table = [ms.Scored(classic, np.array([0.90, 0.88, 0.91, 0.89, 0.90])),
             ms.Scored(adam, np.array([0.92, 0.90, 0.93, 0.91, 0.92]))]
    assert ms.choose(table) == (1, 1)
    assert ms.complexity(adam) == 1 and ms.complexity(adam_layer) == 2  # an optimizer and its rate: one change


def test_given_flags_are_not_searched():
    points = ms.grid_points({"learning_rate": 0.05, "label_smoothing": 0.2})
    assert {p["learning_rate"] for p in points} == {0.05}
    assert {p["label_smoothing"] for p in points} == {0.2}
    assert {p["optimizer"] for p in points} == {"sgd", "adam"}  # the other flags still are
    assert {p[ms.LAYER_FLAG] for p in points} == {"mixed_10", "mixed_9"}
    x, y = separable()
    selection = search({"mixed_10": x}, y, {"optimizer": "adam"}, ms.without_layer(SHORT_GRID))
    assert {s.point["optimizer"] for s in selection.table} == {"adam"}
    assert selection.setting["optimizer"] == "adam"


def test_preset_auto_chooses_on_the_run_and_writes_its_table(tmp_path, dataset, tiny_module, caplog, capsys):
    code, log, err = run_retrain(tmp_path, dataset, tiny_module, caplog, capsys, "--preset=auto",
                                 "--label_smoothing=0.05", steps=20)
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "graph_report" / "summary.json").read_text())
    selection = summary["model_selection"]
    chosen = selection["chosen"]
    # The run trained with the chosen setting, and says so where its settings are.
    assert {flag: summary["settings"][flag] for flag in chosen} == chosen
    # The given flags were fixed; the others searched (no layer: the tiny module is not Inception-v3).
    assert selection["fixed"] == {"how_many_training_steps": 20, "learning_rate": 0.1, "label_smoothing": 0.05}
    settings = [row["setting"] for row in selection["table"]]
    assert {s["learning_rate"] for s in settings} == {0.1} and {s["label_smoothing"] for s in settings} == {0.05}
    assert {s["optimizer"] for s in settings} == {"sgd", "adam"} and {s["weight_decay"] for s in settings} == {0, 0.001}
    assert all(ms.LAYER_FLAG not in s for s in settings)
    assert sum(row["chosen"] for row in selection["table"]) == 1
    assert len(selection["table"][0]["fold_accuracy"]) == selection["folds"] == ms.FOLDS
    # Only training and validation images: the test images judge the chosen setting afterwards.
    counts = summary["counts"]["per_split"]
    assert selection["images"] == counts["training"] + counts["validation"]
    assert "select" in summary["timings_s"]
    # The log has one line per setting, and the page shows the table.
    assert sum(line.count("% ± ") for line in log.splitlines()) == len(settings)
    assert f"--preset auto chose {ms.describe(chosen)}." in log
    page = (tmp_path / "out" / "graph_report" / "report.html").read_text()
    assert "Setting chosen by --preset auto" in page and page.count("<code>--optimizer") == len(settings) + 1


def test_a_run_without_preset_auto_searches_nothing(trained_graph):
    summary = json.loads((trained_graph.out / "graph_report" / "summary.json").read_text())
    assert summary["model_selection"] is None
    assert "select" not in summary["timings_s"]
    assert "Setting chosen by --preset auto" not in (trained_graph.out / "graph_report" / "report.html").read_text()


def test_preset_auto_is_refused_with_multi_label(tmp_path, tiny_module, caplog, capsys):
    images = make_dataset(tmp_path / "images", 3)
    code, _log, err = run_retrain(tmp_path, images, tiny_module, caplog, capsys, "--preset=auto", "--multi_label")
    assert code == 2
    assert "--preset auto" in the_error(err) and "--multi_label" in the_error(err)


def test_too_few_images_to_cross_validate_is_one_sentence():
    x, y = separable(n=4)
    with pytest.raises(UserError, match="--preset auto needs"):
        ms.select({"mixed_10": x}, y, np.zeros(4, np.int64), 2, TrainSettings(), {}, SHORT_GRID)  # one fold


def test_a_run_goes_on_with_the_layer_chosen(tmp_path, inception_model_dir, monkeypatch, caplog, capsys):
    """The built-in network loaded at its classic block; the search (here a grid of mixed_9 alone) picks the other:
    training, export and report then use mixed_9's network and cache."""
    monkeypatch.setattr(ms, "GRID", (ms.Axis((ms.LAYER_FLAG,), (("mixed_9",),)),) + ms.without_layer(SHORT_GRID)[:1])
    images = make_dataset(tmp_path / "images", {"red": 5, "green": 5})
    code, log, err = run_retrain(tmp_path, images, "inception_v3", caplog, capsys, "--preset=auto",
                                 f"--model_dir={inception_model_dir}", "--precision=float32", "--skip_data_checks",
                                 "--skip_heatmaps")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "graph_report" / "summary.json").read_text())
    assert summary["model_selection"]["chosen"][ms.LAYER_FLAG] == "mixed_9"
    assert summary["settings"]["bottleneck_layer"] == "mixed_9"
    assert summary["module"]["identity"].endswith("|bottleneck:mixed_9")
    assert "the mixed_9 bottlenecks, to compare with mixed_10's" in log
    # The exported graph ends at mixed_9: mixed_10's weights are not in it.
    from bottleneck.model.inception_v3 import tuned_parameter_names
    from bottleneck.model.weights import load_weights, weights_path

    arrays = load_weights(weights_path(inception_model_dir))
    mixed_10_bytes = sum(arrays[k].nbytes for k in tuned_parameter_names(arrays, 1))
    network_bytes = sum(a.nbytes for a in arrays.values())
    assert (tmp_path / "out" / "graph.pb").stat().st_size < network_bytes - 0.9 * mixed_10_bytes


def test_whole_network_fine_tuning_tunes_the_network_of_the_layer_chosen(tmp_path, inception_model_dir, monkeypatch,
                                                                           caplog, capsys):
    """--preset auto with --fine_tune_network: the search picks mixed_9, so the network that is fine-tuned and
    exported is the one ending at mixed_9, starting from the layer trained with the chosen setting."""
    monkeypatch.setattr(ms, "GRID", (ms.Axis((ms.LAYER_FLAG,), (("mixed_9",),)),) + ms.without_layer(SHORT_GRID)[:1])
    images = make_dataset(tmp_path / "images", {"red": 5, "green": 5})
    code, log, err = run_retrain(tmp_path, images, "inception_v3", caplog, capsys, "--preset=auto",
                                 "--fine_tune_network", "--network_epochs=1", "--network_batch_size=4",
                                 f"--model_dir={inception_model_dir}", "--precision=float32", "--skip_data_checks",
                                 "--skip_heatmaps")
    assert code == 0, err
    out = tmp_path / "out"
    summary = json.loads((out / "graph_report" / "summary.json").read_text())
    assert summary["model_selection"]["chosen"][ms.LAYER_FLAG] == "mixed_9"
    assert summary["network_fine_tune"]["history"][-1]["epoch"] == 1
    assert summary["timings_s"]["select"] < summary["timings_s"]["fine_tune_network"]  # it ran after the choice
    assert log.index("--preset auto chose") < log.index("Whole network, epoch 1/1")
    (checkpoint,) = (out / "checkpoint").glob("ckpt_network/*/checkpoint.npz")
    with np.load(checkpoint) as saved:
        blocks = {key.split(":", 1)[1].split("/")[0] for key in saved.files if key.startswith("kept:")}
    assert "mixed_9" in blocks and "mixed_10" not in blocks  # the chosen layer's network, not the loaded one's
    assert "|bottleneck:mixed_9" in summary["module"]["identity"]
