"""--fine_tune_network: every weight of the network is trained, the exports carry the kept weights, a killed run
resumes after its last epoch, and a batch can be spread over several devices."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, TINY_SIZE, build_tiny_module, import_frozen_graph, make_dataset, retrain_args, the_error

from bottleneck.data.images import load_for_model
from bottleneck.training.network_tuning import (
    CHECKPOINT_FILE,
    TRAINING_BYTES_PER_INPUT_BYTE,
    choose_batch_size,
    learning_rate,
)

TUNING = ["--fine_tune_network", "--network_learning_rate=0.01", "--no_temperature_scaling", "--precision=float32"]


def retrain(tmp_path: Path, images: Path, module: Path, *extra: str, steps: int = 60):
    """retrain.py in a fresh process: (exit code, its log)."""
    result = subprocess.run([sys.executable, str(ROOT / "retrain.py"),
                             *retrain_args(tmp_path, images, module, *extra, steps=steps)],
                            capture_output=True, text=True, cwd=ROOT)
    return result.returncode, result.stderr


def checkpoint_of(out: Path) -> Path:
    (found,) = (out / "checkpoint" / "ckpt_network").glob(f"*/{CHECKPOINT_FILE}")
    return found


def saved(checkpoint: Path) -> dict:
    with np.load(checkpoint) as arrays:
        return {key: arrays[key] for key in arrays.files}


def tiny_scores(images: np.ndarray, projection: np.ndarray, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """The tiny module (helpers.build_tiny_module) and a new layer, in NumPy."""
    n = len(images)
    pooled = images.reshape(n, 8, 4, 8, 4, 3).mean(axis=(2, 4)).reshape(n, -1)
    logits = np.maximum((pooled - 0.5) @ projection, 0) @ weights + biases
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One run that fine-tunes the tiny module's every weight and writes every export."""
    tmp = tmp_path_factory.mktemp("tuned")
    module = build_tiny_module(tmp / "tiny")
    images = make_dataset(tmp / "images", 20)
    code, log = retrain(tmp, images, module, *TUNING, "--network_epochs=4", f"--saved_model_dir={tmp / 'saved'}",
                        f"--tflite_output={tmp / 'model.tflite'}")
    assert code == 0, log
    return tmp, module, images, log


def test_fine_tuning_changes_the_networks_weights_and_every_export_carries_them(tuned):
    import tensorflow as tf

    from bottleneck.export import tflite

    tmp, module, images, log = tuned
    out = tmp / "out"
    summary = json.loads((out / "graph_report" / "summary.json").read_text())["network_fine_tune"]
    assert summary["helped"] and summary["kept_epoch"] >= 1, summary
    assert "Whole network, epoch 1/4" in log
    kept = saved(checkpoint_of(out))
    (projection_name,) = [k for k in kept if k.startswith("kept:") and "final" not in k]
    start = tf.saved_model.load(str(module)).projection.numpy()
    tuned_projection = kept[projection_name]
    assert np.abs(tuned_projection - start).max() > 1e-3  # the network itself moved, not just the new layer

    paths = sorted(images.rglob("*.jpg"))[::7]
    pixels = np.stack([load_for_model(p, TINY_SIZE, TINY_SIZE) for p in paths])
    expected = tiny_scores(pixels, tuned_projection, kept["kept:final_weights"], kept["kept:final_biases"])
    with tf.compat.v1.Session(graph=import_frozen_graph(out / "graph.pb")) as session:
        frozen = session.run("final_result:0", {"Placeholder:0": pixels})
    np.testing.assert_allclose(frozen, expected, atol=1e-4)
    served = tf.saved_model.load(str(tmp / "saved")).signatures["serving_default"](
        image_bytes=tf.constant([p.read_bytes() for p in paths]))["scores"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-4)
    np.testing.assert_allclose(tflite.load_tflite(tmp / "model.tflite")(pixels), expected, atol=1e-4)
    # ...and the scores are not what the untuned network would give.
    assert np.abs(tiny_scores(pixels, start, kept["kept:final_weights"], kept["kept:final_biases"])
                  - expected).max() > 1e-3


def test_a_killed_run_resumes_after_its_last_epoch_and_ends_as_an_unbroken_one(tmp_path):
    module = build_tiny_module(tmp_path / "tiny")
    images = make_dataset(tmp_path / "images", 60)
    flags = [*TUNING, "--network_epochs=30", "--network_patience=0", "--network_batch_size=16"]

    code, _log = retrain(tmp_path / "unbroken", images, module, *flags)
    assert code == 0
    unbroken = saved(checkpoint_of(tmp_path / "unbroken" / "out"))

    broken = tmp_path / "broken"
    process = subprocess.Popen([sys.executable, str(ROOT / "retrain.py"),
                                *retrain_args(broken, images, module, *flags, steps=60)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 300
    epoch = 0
    while epoch < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            epoch = json.loads(str(saved(checkpoint_of(broken / "out"))["state"]))["epoch"]
        except (ValueError, OSError, KeyError, EOFError):
            continue  # not written yet
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_after = json.loads(str(saved(checkpoint_of(broken / "out"))["state"]))["epoch"]
    assert 3 <= killed_after < 30, "the run ended before it could be killed mid-way"

    code, log = retrain(broken, images, module, *flags)
    assert code == 0, log
    assert f"Resuming the whole network's fine-tuning after epoch {killed_after} of 30" in log
    trained = [int(line.split("epoch ")[1].split("/")[0]) for line in log.splitlines()
               if "Whole network, epoch" in line]
    assert trained == list(range(killed_after + 1, 31))  # no finished epoch runs again
    resumed = saved(checkpoint_of(broken / "out"))
    summary = json.loads((broken / "out" / "graph_report" / "summary.json").read_text())["network_fine_tune"]
    assert summary["resumed_after_epoch"] == killed_after and len(summary["history"]) == 31
    for key in unbroken:
        if key.startswith(("w:", "kept:")):
            np.testing.assert_allclose(resumed[key], unbroken[key], atol=1e-5, err_msg=key)

    code, log = retrain(broken, images, module, *flags)  # the same job again, after it finished
    assert code == 0 and "Resuming the whole network's fine-tuning after epoch 30 of 30" in log
    assert "Whole network, epoch" not in log and "nothing left to train" in log


@pytest.mark.parametrize("flags, message", [
    (["--fine_tune_network", "--fine_tune"], "--fine_tune_network already trains the top blocks that --fine_tune"),
    (["--fine_tune_network", "--network_epochs=0"], "--network_epochs must be a positive number, got 0."),
    (["--fine_tune_network", "--network_label_smoothing=1"],
     "--network_label_smoothing must be at least 0 and below 1"),
    (["--fine_tune_network", "--network_blocks=2"], "--network_blocks works with the built-in --tfhub_module"),
    (["--fine_tune_network", "--tfhub_module=inception_v3", "--bottleneck_layer=mixed_9", "--network_blocks=11"],
     "--network_blocks must be at most 10 with --bottleneck_layer mixed_9, got 11"),
])
def test_bad_network_tuning_flags_end_with_one_sentence(tmp_path, tiny_module, flags, message):
    code, log = retrain(tmp_path, make_dataset(tmp_path / "images", 5), tiny_module, *flags)
    assert code == 2
    assert message in the_error(log)


def test_a_module_without_trainable_weights_is_refused_in_one_sentence(tmp_path):
    import tensorflow as tf

    class Fixed(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, TINY_SIZE, TINY_SIZE, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(images, axis=[1, 2])

    tf.saved_model.save(Fixed(), str(tmp_path / "fixed"))
    code, log = retrain(tmp_path, make_dataset(tmp_path / "images", 5), tmp_path / "fixed", "--fine_tune_network")
    assert code == 2
    assert "--fine_tune_network needs a network with trainable weights" in the_error(log)


def test_the_batch_fits_the_memory_there_is():
    per_image = 299 * 299 * 3 * 4 * TRAINING_BYTES_PER_INPUT_BYTE
    assert choose_batch_size(0, 299, 299, available=64 * 2**30) == 16  # at most 16
    assert choose_batch_size(0, 299, 299, available=int(per_image * 2 * 8.5)) == 8  # half of memory: 8.5 images
    assert choose_batch_size(0, 299, 299, available=per_image) == 1  # never none
    assert choose_batch_size(12, 299, 299, available=per_image) == 12  # given: as given


def test_the_learning_rate_warms_up_then_decays_to_zero():
    rates = [learning_rate(step, 100, 1.0, 0.1) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(rates[:10], rates[1:10]))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[-1] < 0.01


SPREAD = """
import sys
sys.path.insert(0, "tests")
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
from helpers import build_tiny_module, make_dataset
from bottleneck.config.settings import NetworkTuneSettings
from bottleneck.data.distort import Distortion
from bottleneck.model.modules import load_module
from bottleneck.model.trainable import trainable_network
from bottleneck.training.layer import TrainedLayer
from bottleneck.training.network_tuning import LabelledImages, tune_network
root = Path(sys.argv[1])
module = load_module(str(build_tiny_module(root / "tiny")), None)
paths = sorted(make_dataset(root / "images", 8).rglob("*.jpg"))
y = np.array([["blue", "green", "red"].index(p.parent.name) for p in paths], np.int32)
data = LabelledImages(paths, [p.name for p in paths], y)
settings = NetworkTuneSettings(enabled=True, epochs=2, learning_rate=0.01, batch_size=6, patience=0)
results, start = [], None
for devices in ([], ["/device:CPU:0", "/device:CPU:1"]):
    network = trainable_network(module)  # the loaded module's own variables: put back where they started
    start = start or network.values()
    network.assign(start)
    layer = TrainedLayer(np.full((24, 3), 0.01, np.float32), np.zeros(3, np.float32))
    result = tune_network(network, layer, data, data, 3, settings, Distortion(flip_left_right=True), 32, 32, None,
                          devices=devices, seed=0)
    results.append(np.concatenate([result.values[network.names[0]].ravel(), result.layer.weights.ravel()]))
print(float(np.abs(results[0] - results[1]).max()), float(np.abs(results[0]).max()))
"""


def test_a_batch_spread_over_two_devices_trains_as_on_one(tmp_path):
    """Two logical CPU devices stand in for two GPUs: the slices' gradients must add up to the whole batch's."""
    result = subprocess.run([sys.executable, "-c", SPREAD, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    difference, scale = map(float, result.stdout.split())
    assert scale > 0.01 and difference < 1e-5 * max(1.0, scale)


def test_the_validation_scores_kept_are_those_of_the_kept_weights_also_after_a_resume(tmp_path):
    """The run calibrates and reports on the kept epoch's validation scores without scoring the images again:
    they must be what the kept network and layer compute, whether the epoch was trained now or before a resume."""
    from bottleneck.config.settings import NetworkTuneSettings
    from bottleneck.data.distort import Distortion
    from bottleneck.model.modules import load_module
    from bottleneck.model.trainable import trainable_network
    from bottleneck.training.layer import TrainedLayer
    from bottleneck.training.network_tuning import LabelledImages, classify_images, tune_network

    module = load_module(str(build_tiny_module(tmp_path / "tiny")), None)
    paths = sorted(make_dataset(tmp_path / "images", 6).rglob("*.jpg"))
    y = np.array([["blue", "green", "red"].index(p.parent.name) for p in paths], np.int32)
    train = LabelledImages(paths[::2], [p.name for p in paths[::2]], y[::2])
    validation = LabelledImages(paths[1::2], [p.name for p in paths[1::2]], y[1::2])
    settings = NetworkTuneSettings(enabled=True, epochs=3, learning_rate=0.01, batch_size=4, patience=0)
    network = trainable_network(module)
    start = network.values()
    layer = TrainedLayer(np.full((24, 3), 0.01, np.float32), np.zeros(3, np.float32))
    for attempt in ("trained", "resumed with nothing left to train"):
        network.assign(start)
        result = tune_network(network, layer, train, validation, 3, settings, Distortion(flip_left_right=True),
                              TINY_SIZE, TINY_SIZE, tmp_path / "checkpoint", seed=0)
        assert (result.resumed_after == 3) == (attempt != "trained")
        fresh = classify_images(network, result.layer, validation, TINY_SIZE, TINY_SIZE, 4)
        assert result.validation_logits.shape == fresh.shape == (len(validation), 3), attempt
        np.testing.assert_allclose(result.validation_logits, fresh, atol=1e-5, err_msg=attempt)
        assert result.kept.validation_accuracy == float((fresh.argmax(axis=1) == validation.y).mean())


@pytest.mark.inception
def test_bfloat16_trains_float32_weights_of_the_real_network(tmp_path, inception_model_dir):
    """Mixed precision: the passes compute in bfloat16, the kept weights are float32 and have moved."""
    import tensorflow as tf

    from bottleneck.config.settings import NetworkTuneSettings
    from bottleneck.data.distort import Distortion
    from bottleneck.model.modules import load_module
    from bottleneck.model.trainable import trainable_network
    from bottleneck.training.layer import TrainedLayer
    from bottleneck.training.network_tuning import LabelledImages, tune_network

    module = load_module("inception_v3", inception_model_dir, log=lambda *a: None, top_block="mixed_9")
    network = trainable_network(module)
    paths = sorted((ROOT / "examples" / "flower_photos").rglob("*.jpg"))[::20][:4]
    pixels = np.stack([load_for_model(p, 139, 139) for p in paths])
    float32 = network.forward(tf.constant(pixels), tf.float32).numpy()
    bfloat16 = network.forward(tf.constant(pixels), tf.bfloat16).numpy()
    assert np.corrcoef(float32.ravel(), bfloat16.ravel())[0, 1] > 0.99  # the same features, to bfloat16's precision
    assert not np.array_equal(float32, bfloat16)  # ...and really computed in bfloat16
    start = network.values()
    data = LabelledImages(paths, [p.name for p in paths], np.array([0, 1, 0, 1], np.int32))
    layer = TrainedLayer(np.zeros((2048, 2), np.float32), np.zeros(2, np.float32))
    settings = NetworkTuneSettings(enabled=True, epochs=1, learning_rate=1e-3, batch_size=2, patience=0)
    result = tune_network(network, layer, data, LabelledImages([], [], np.zeros(0, np.int32)), 2, settings,
                          Distortion(), 139, 139, None, compute_dtype="bfloat16")
    assert result.compute_dtype == "bfloat16" and result.best_epoch == 1
    moved = [n for n in network.names if np.abs(result.values[n] - start[n]).max() > 0]
    assert all(result.values[n].dtype == np.float32 for n in network.names)
    assert len(moved) > 0.9 * len(network.names)  # every block learns, the lowest convolutions included
    assert "conv/kernel" in moved


def test_lars_moves_every_weight_matrix_by_the_rate_times_its_own_size(tmp_path):
    """One step from rest: with LARS the learning rate is the share of its norm that each matrix moves (the new
    layer's at ten times the rate), however large its gradient is."""
    from bottleneck.config.settings import NetworkTuneSettings
    from bottleneck.data.distort import Distortion
    from bottleneck.model.modules import load_module
    from bottleneck.model.trainable import trainable_network
    from bottleneck.training.layer import TrainedLayer
    from bottleneck.training.network_tuning import HEAD_RATE_FACTOR, LabelledImages, tune_network

    module = load_module(str(build_tiny_module(tmp_path / "tiny")), None)
    paths = sorted(make_dataset(tmp_path / "images", 3).rglob("*.jpg"))
    y = np.array([["blue", "green", "red"].index(p.parent.name) for p in paths], np.int32)
    data = LabelledImages(paths, [p.name for p in paths], y)
    network = trainable_network(module)
    start = network.values()
    layer = TrainedLayer(np.random.default_rng(0).normal(0, 0.1, (24, 3)).astype(np.float32), np.zeros(3, np.float32))
    rate = 0.01
    settings = NetworkTuneSettings(enabled=True, epochs=1, optimizer="lars", learning_rate=rate, warmup=0,
                                   weight_decay=0, label_smoothing=0, batch_size=len(paths), patience=0)
    result = tune_network(network, layer, data, LabelledImages([], [], np.zeros(0, np.int32)), 3, settings,
                          Distortion(), TINY_SIZE, TINY_SIZE, None)
    matrices = [n for n in network.names if start[n].ndim >= 2]
    assert matrices
    for name in matrices:
        moved = np.linalg.norm(result.values[name] - start[name]) / np.linalg.norm(start[name])
        assert moved == pytest.approx(rate, rel=1e-3), name
    head_moved = np.linalg.norm(result.layer.weights - layer.weights) / np.linalg.norm(layer.weights)
    assert head_moved == pytest.approx(rate * HEAD_RATE_FACTOR, rel=1e-3)


@pytest.mark.inception
def test_network_blocks_trains_the_top_blocks_and_leaves_the_rest_as_it_was(tmp_path, inception_model_dir):
    from bottleneck.config.settings import NetworkTuneSettings
    from bottleneck.data.distort import Distortion
    from bottleneck.model.modules import load_module
    from bottleneck.model.trainable import trainable_network
    from bottleneck.training.layer import TrainedLayer
    from bottleneck.training.network_tuning import LabelledImages, tune_network

    module = load_module("inception_v3", inception_model_dir, log=lambda *a: None, top_block="mixed_9")
    network = trainable_network(module, blocks=2)
    assert {name.split("/")[0] for name in network.names} == {"mixed_8", "mixed_9"}
    paths = sorted((ROOT / "examples" / "flower_photos").rglob("*.jpg"))[::20][:4]
    data = LabelledImages(paths, [p.name for p in paths], np.array([0, 1, 0, 1], np.int32))
    layer = TrainedLayer(np.zeros((2048, 2), np.float32), np.zeros(2, np.float32))
    settings = NetworkTuneSettings(enabled=True, epochs=1, learning_rate=1e-3, batch_size=2, patience=0, blocks=2)
    start = network.values()
    result = tune_network(network, layer, data, LabelledImages([], [], np.zeros(0, np.int32)), 2, settings,
                          Distortion(), 139, 139, None)
    assert all(np.abs(result.values[n] - start[n]).max() > 0 for n in network.names)  # both blocks learn
    # Below them the network computes as the module does: the exported module takes the two blocks' new weights
    # and keeps every other array it had.
    from bottleneck.model.trainable import tuned_module

    tuned = tuned_module(module, network)
    untouched = [k for k in module.weights if k.split("/")[0] not in ("mixed_8", "mixed_9")]
    assert all(tuned.weights[k] is module.weights[k] for k in untouched)
    assert tuned.identity != module.identity


def test_a_default_run_does_none_of_it(tmp_path, tiny_module):
    code, log = retrain(tmp_path, make_dataset(tmp_path / "images", 10), tiny_module, "--flip_left_right")
    assert code == 0, log
    summary = json.loads((tmp_path / "out" / "graph_report" / "summary.json").read_text())
    assert summary["network_fine_tune"] is None and "Whole network" not in log
    assert not (tmp_path / "out" / "checkpoint" / "ckpt_network").exists()
    assert "bottlenecks cached" in log and "distorted" in log.lower()  # the distorted copies are cached as before


def test_early_stopping_counts_from_the_best_fine_tuned_epoch_not_from_the_start():
    """The LARS run of docs/fine-tuning.md: its first epochs fell below the start and its fifth beat it; counted
    from the start, a patience of 3 would have stopped it after epoch 3."""
    from bottleneck.training.network_tuning import EpochPoint, stops_early

    def history(*points):
        return [EpochPoint(epoch, None, None, accuracy, loss) for epoch, (accuracy, loss) in enumerate(points)]

    dip_then_gain = history((0.912, 0.30), (0.885, 0.42), (0.912, 0.35), (0.903, 0.38), (0.912, 0.37))
    assert not stops_early(dip_then_gain[:4], patience=3, epochs=6)  # epoch 2 was fine-tuning's best so far
    assert not stops_early(dip_then_gain, patience=3, epochs=6)  # epochs 3 and 4 did not beat it: two, not three
    falling = history((0.912, 0.30), (0.903, 0.38), (0.894, 0.40), (0.885, 0.41), (0.876, 0.43))
    assert not stops_early(falling[:4], patience=3, epochs=6)
    assert stops_early(falling, patience=3, epochs=6)  # three epochs without beating epoch 1
    assert not stops_early(falling, patience=0, epochs=6)  # 0: every epoch runs
    assert not stops_early(falling, patience=3, epochs=4)  # the last epoch ends the run anyway, not early
