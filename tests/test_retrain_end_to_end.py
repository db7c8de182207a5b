"""retrain.py -> frozen graph -> label_image.py, on the tiny module (fast)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, TINY_SIZE, import_frozen_graph, make_dataset, retrain_args, run_retrain, write_photo

from bottleneck.cli.label_image import label_image_main
from bottleneck.cli.retrain import retrain_main


@pytest.fixture
def trained(tmp_path, tiny_module, caplog):
    images = make_dataset(tmp_path / "images", {"red": 30, "green": 30, "blue": 30})
    caplog.set_level("INFO", logger="retrain")
    code = retrain_main(retrain_args(tmp_path, images, tiny_module, "--eval_step_interval=50"))
    assert code == 0
    return tmp_path / "out", caplog.text


def test_run_logs_the_classic_lines_and_reaches_high_accuracy(trained):
    out, log = trained
    steps = [int(s) for s in re.findall(r"Step (\d+): Train accuracy = [\d.]+%", log)]
    assert steps == [0, 50, 100, 150, 199]  # every --eval_step_interval steps and the last step
    assert len(re.findall(r"Step \d+: Cross entropy = [\d.]+", log)) == 5
    assert len(re.findall(r"Step \d+: Validation accuracy = [\d.]+% \(N=100\)", log)) == 5
    accuracy = float(re.search(r"Final test accuracy = ([\d.]+)% \(N=\d+\)", log).group(1))
    assert accuracy >= 90


def test_labels_file_is_sorted_one_per_line(trained):
    out, _ = trained
    assert (out / "labels.txt").read_text() == "blue\ngreen\nred\n"


def test_frozen_graph_classifies_through_a_plain_session(trained):
    """The classic contract: feed Placeholder:0 with [0, 1] images, fetch final_result:0."""
    import tensorflow as tf

    out, _ = trained
    graph = import_frozen_graph(out / "graph.pb")
    placeholder = graph.get_tensor_by_name("Placeholder:0")
    assert placeholder.dtype == tf.float32 and placeholder.shape.as_list() == [None, TINY_SIZE, TINY_SIZE, 3]
    assert graph.get_tensor_by_name("bottleneck:0").shape.as_list() == [None, 24]
    labels = (out / "labels.txt").read_text().split()
    colours = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
    batch = np.stack([np.full((TINY_SIZE, TINY_SIZE, 3), colours[name], np.float32) / 255 for name in labels])
    with tf.compat.v1.Session(graph=graph) as session:
        scores = session.run("final_result:0", {"Placeholder:0": batch})
    assert scores.shape == (3, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-5)
    assert list(scores.argmax(axis=1)) == [0, 1, 2]


def test_label_image_prints_top_labels_per_image(trained, tmp_path, capsys):
    out, _ = trained
    photo = write_photo(tmp_path / "new" / "a red one.jpg", (220, 40, 40), seed=999)
    common = [f"--graph={out / 'graph.pb'}", f"--labels={out / 'labels.txt'}"]
    assert label_image_main(common + [str(photo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # top 5, but only 3 classes
    assert lines[0].split()[0] == "red"
    scores = [float(line.split()[-1]) for line in lines]
    assert scores == sorted(scores, reverse=True)

    write_photo(tmp_path / "new" / "b.png", (40, 60, 220), seed=5, fmt="PNG")
    assert label_image_main(common + [str(tmp_path / "new")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("a red one.jpg") and lines[1].startswith("red ")
    assert lines[4].endswith("b.png") and lines[5].startswith("blue ")


def test_rerun_reuses_every_cached_bottleneck(tmp_path, tiny_module, caplog):
    images = make_dataset(tmp_path / "images", 12)
    caplog.set_level("INFO", logger="retrain")
    assert retrain_main(retrain_args(tmp_path, images, tiny_module, steps=20)) == 0
    assert "0 bottlenecks cached, 0 imported, 36 to compute." in caplog.text
    caplog.clear()
    write_photo(images / "red" / "extra.jpg", (220, 40, 40), seed=12345)
    assert retrain_main(retrain_args(tmp_path, images, tiny_module, steps=20)) == 0
    assert "36 bottlenecks cached, 0 imported, 1 to compute." in caplog.text


def _graph_constants(path):
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    return sorted(n.attr["value"].tensor.tensor_content for n in graph_def.node if n.op == "Const")


def test_random_seed_makes_runs_identical(tmp_path, tiny_module, caplog):
    images = make_dataset(tmp_path / "images", 12)
    caplog.set_level("INFO", logger="retrain")
    results = []
    for seed in (1, 1, 2):
        caplog.clear()
        assert retrain_main(retrain_args(tmp_path, images, tiny_module, f"--random_seed={seed}", steps=30)) == 0
        results.append([line.split(": Step")[-1] for line in caplog.text.splitlines() if ": Step" in line])
        results[-1].append(_graph_constants(tmp_path / "out" / "graph.pb"))
    assert results[0] == results[1]
    assert results[0][-1] != results[2][-1]  # and the seed does matter


def _run_cli(*args, buffered: bool = False):
    """retrain.py in its own process; ``buffered``: its stdout block-buffered, as a pipe is by default."""
    env = {k: v for k, v in os.environ.items() if not (buffered and k == "PYTHONUNBUFFERED")}
    return subprocess.run([sys.executable, "retrain.py", *args], cwd=ROOT, capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing_flag", "--image_dir is required"),
        ("missing_dir", "not found"),
        ("no_classes", "No class sub-folders found"),
        ("single_class", "Only one valid folder of images found"),
    ],
)
def test_user_errors_end_with_one_sentence_and_exit_2(tmp_path, setup, message):
    if setup == "missing_flag":
        args = []
    elif setup == "missing_dir":
        args = [f"--image_dir={tmp_path / 'nowhere'}"]
    elif setup == "no_classes":
        write_photo(tmp_path / "flat" / "a.jpg", (1, 2, 3), 1)
        args = [f"--image_dir={tmp_path / 'flat'}"]
    else:
        make_dataset(tmp_path / "one", {"red": 5})
        args = [f"--image_dir={tmp_path / 'one'}"]
    result = _run_cli(*args, f"--bottleneck_dir={tmp_path / 'bn'}")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("retrain.py: error: ")


def test_output_is_clean_for_cron_and_quiet_is_quiet(tmp_path, tiny_module):
    """Not a terminal: plain progress lines, no control characters, no TensorFlow start-up noise."""
    images = make_dataset(tmp_path / "images", 10)
    args = retrain_args(tmp_path, images, tiny_module, steps=50)
    loud = _run_cli(*args)
    assert loud.returncode == 0, loud.stderr
    assert "\r" not in loud.stderr and "\x1b" not in loud.stderr
    assert "Bottlenecks: 30/30 (100%)" in loud.stderr and "Training: 50/50 (100%)" in loud.stderr
    for noise in ("cuda", "absl", "oneDNN", "cpu_feature_guard"):
        assert noise not in loud.stderr
    quiet = _run_cli(*args, "--quiet", buffered=True)
    assert quiet.returncode == 0
    assert "INFO" not in quiet.stderr and "Training:" not in quiet.stderr
    assert quiet.stdout.startswith("Test accuracy: ")
    # The process ends without Python's teardown, after flushing: the last line still reaches the pipe.
    assert quiet.stdout.rstrip("\n").splitlines()[-1].startswith("Report: ")


def test_tensorboard_gets_the_classic_scalars_histograms_and_settings(tmp_path, tiny_module, caplog, capsys):
    import tensorflow as tf

    images = make_dataset(tmp_path / "images", 10)
    code, log, _err = run_retrain(tmp_path, images, tiny_module, caplog, capsys, "--eval_step_interval=10", steps=50)
    assert code == 0
    logs = tmp_path / "out" / "logs"

    def points(folder):
        found = {}  # tag -> {step: (plugin, value)}
        for event_file in (logs / folder).glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(event_file)):
                for value in event.summary.value:
                    found.setdefault(value.tag, {})[event.step] = (value.metadata.plugin_data.plugin_name,
                                                                   tf.make_ndarray(value.tensor))
        return found

    train, validation = points("train"), points("validation")
    assert sorted(train["accuracy"]) == sorted(train["cross_entropy"]) == [0, 10, 20, 30, 40, 49]
    assert sorted(validation["accuracy"]) == [0, 10, 20, 30, 40, 49]
    # The values TensorBoard plots are the ones the log printed.
    logged = {int(step): float(value) for step, value in re.findall(r"Step (\d+): Train accuracy = ([\d.]+)%", log)}
    assert {step: round(float(v) * 100, 1) for step, (_plugin, v) in train["accuracy"].items()} == logged
    assert {plugin for tag in ("accuracy", "cross_entropy") for plugin, _v in train[tag].values()} == {"scalars"}
    # Counted values: a bias per class, and the logits of one batch of 100 (the default --train_batch_size).
    for name, counted in (("weights", None), ("biases", 3), ("pre_activations", 100 * 3)):
        steps = train[f"final_training_ops/{name}"]
        assert 0 in steps and 49 in steps
        plugin, buckets = steps[49]
        assert plugin == "histograms" and buckets.shape[1] == 3  # [left edge, right edge, count] per bucket
        if counted:
            assert buckets[:, 2].sum() == counted  # one bias per class
    weights = train["final_training_ops/weights"][49][1][:, 2].sum()
    assert weights > 0 and weights % 3 == 0  # bottleneck width x 3 classes
    plugin, text = train["settings"][0]
    assert plugin == "text" and b"learning_rate" in text.item()


def test_report_holds_the_same_numbers_as_the_log(trained):
    import json

    out, log = trained
    summary = json.loads((out / "graph_report" / "summary.json").read_text())
    logged = float(re.search(r"Final test accuracy = ([\d.]+)% \(N=(\d+)\)", log).group(1))
    count = int(re.search(r"Final test accuracy = [\d.]+% \(N=(\d+)\)", log).group(1))
    assert round(summary["accuracy"]["test"] * 100, 1) == logged
    assert summary["accuracy"]["test_count"] == count
    last_validation = float(re.findall(r"Step 199: Validation accuracy = ([\d.]+)%", log)[-1])
    assert round(summary["accuracy"]["validation"] * 100, 1) == last_validation
    assert summary["labels"] == ["blue", "green", "red"]
    assert sum(c["total"] for c in summary["counts"]["per_class"].values()) == 90
    for name in ("training_curves.png", "confusion_matrix.png"):
        assert (out / "graph_report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_intermediate_graphs_are_stored_as_the_classic_script_did(tmp_path, tiny_module):
    images = make_dataset(tmp_path / "images", 8)
    args = retrain_args(tmp_path, images, tiny_module, "--intermediate_store_frequency=20", steps=50)
    assert retrain_main(args) == 0
    stored = sorted(p.name for p in (tmp_path / "out" / "intermediate").glob("*.pb"))
    assert stored == ["intermediate_20.pb", "intermediate_40.pb"]
    graph = import_frozen_graph(tmp_path / "out" / "intermediate" / "intermediate_20.pb")
    assert graph.get_tensor_by_name("final_result:0").shape.as_list() == [None, 3]
