"""--precision: which arithmetic runs the network, its cache identity, int8 and bfloat16 runs, several devices."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, make_dataset, retrain_args, write_photo

from bottleneck.cli.label_image import label_image_main
from bottleneck.cli.retrain import retrain_main
from bottleneck.model import precision as P

AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AVX2_ONLY = frozenset({"avx2", "fma"})


# ---------------------------------------------------------------- the choice


def test_auto_picks_bfloat16_only_where_the_processor_computes_it():
    assert P.choose("auto", AVX512_BF16, []).name == "bfloat16"
    assert P.choose("auto", frozenset({"amx_bf16"}), []).name == "bfloat16"
    chosen = P.choose("auto", AVX2_ONLY, [])
    assert chosen.name == "float32" and "neither avx512_bf16 nor amx_bf16" in chosen.reason


def test_auto_never_picks_int8_and_explicit_choices_are_kept():
    for flags in (AVX512_BF16, AVX2_ONLY):
        assert P.choose("auto", flags, []).name != "int8"
        assert P.choose("float32", flags, []).name == "float32"
        assert P.choose("int8", flags, []).name == "int8"


def test_bfloat16_without_hardware_runs_with_a_warning_not_an_error():
    chosen = P.choose("bfloat16", AVX2_ONLY, [])
    assert chosen.name == "bfloat16" and not chosen.native
    assert "slower" in P.describe(chosen)
    assert P.choose("bfloat16", AVX512_BF16, []).native


def test_with_gpus_auto_stays_float32_because_the_bfloat16_rewrite_is_for_cpus():
    chosen = P.choose("auto", AVX512_BF16, [(8, 0)])
    assert chosen.name == "float32" and "GPU" in chosen.reason


def test_cpu_flags_are_read_from_cpuinfo_on_x86_and_arm(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\n"
                   "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert {"avx2", "avx512_bf16"} <= P.cpu_flags(x86)
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert "i8mm" in P.cpu_flags(arm)
    assert P.cpu_flags(tmp_path / "missing") == frozenset()


# ---------------------------------------------------------------- retrain.py at each precision


@pytest.fixture
def images(tmp_path):
    return make_dataset(tmp_path / "images", {"red": 12, "green": 12, "blue": 12})


def _retrain(tmp_path, images, tiny_module, caplog, *extra):
    caplog.clear()
    code = retrain_main(retrain_args(tmp_path, images, tiny_module, f"--model_dir={tmp_path / 'models'}",
                                     "--validation_percentage=20", "--testing_percentage=20", *extra, steps=60))
    assert code == 0
    return caplog.text


def _counts(log):
    cached, _imported, computed = (int(v) for v in re.search(
        r"(\d+) bottlenecks cached, (\d+) imported, (\d+) to compute", log).groups())
    return cached, computed


def test_each_precision_has_its_own_cache_and_float32_keeps_its_vectors(tmp_path, images, tiny_module, caplog,
                                                                        monkeypatch):
    monkeypatch.setattr(P, "cpu_flags", lambda: AVX512_BF16)
    monkeypatch.setattr(P, "bfloat16_rewrite_runs", lambda: True)  # as on such a processor
    caplog.set_level("INFO", logger="retrain")
    log = _retrain(tmp_path, images, tiny_module, caplog, "--precision=float32")
    assert "Running the network in float32" in log and _counts(log) == (0, 36)
    log = _retrain(tmp_path, images, tiny_module, caplog)  # auto: bfloat16 on this (pretended) processor
    assert "Running the network in bfloat16: auto: the processor has avx512_bf16" in log
    assert _counts(log) == (0, 36)  # float32 vectors are never served to a bfloat16 run
    log = _retrain(tmp_path, images, tiny_module, caplog, "--precision=int8")
    assert _counts(log) == (0, 36)
    assert len(list((tmp_path / "models" / "int8").glob("features-*.tflite"))) == 1
    for flag in ("--precision=float32", "--precision=bfloat16", "--precision=int8"):
        assert _counts(_retrain(tmp_path, images, tiny_module, caplog, flag)) == (36, 0)


def test_bfloat16_on_a_processor_without_it_warns_and_still_trains(tmp_path, images, tiny_module, caplog,
                                                                  monkeypatch):
    monkeypatch.setattr(P, "cpu_flags", lambda: AVX2_ONLY)
    monkeypatch.setattr(P, "bfloat16_rewrite_runs", lambda: True)  # emulated: TensorFlow rewrites all the same
    caplog.set_level("INFO", logger="retrain")
    log = _retrain(tmp_path, images, tiny_module, caplog, "--precision=bfloat16")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("Running the network in bfloat16" in w and "slower than float32" in w for w in warnings)
    assert "Final test accuracy" in log
    log = _retrain(tmp_path, images, tiny_module, caplog)
    assert "Running the network in float32: auto: the processor has neither" in log


def test_int8_cannot_feed_fine_tuning(tmp_path, images, capsys):
    code = retrain_main([f"--image_dir={images}", "--precision=int8", "--fine_tune"])
    assert code == 2
    assert "--precision int8 cannot feed --fine_tune" in capsys.readouterr().err


def test_int8_artifact_is_the_same_for_the_same_network_and_calibration(tmp_path, tiny_module):
    from bottleneck.model import int8
    from bottleneck.model.modules import load_module

    module = load_module(str(tiny_module), tmp_path)
    first = int8.module_artifact(module, tmp_path / "a")
    second = int8.module_artifact(module, tmp_path / "b")
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    meta = json.loads(first.with_suffix(".json").read_text())
    assert meta["calibration"] == [p.relative_to(int8.CALIBRATION_DIR).as_posix() for p in int8.calibration_paths()]
    assert len(meta["calibration"]) >= 64


def test_int8_vectors_follow_the_float_network(tmp_path, tiny_module):
    from bottleneck.data.images import load_for_model
    from bottleneck.model import int8
    from bottleneck.model.modules import load_module

    module = load_module(str(tiny_module), tmp_path)
    run = int8.Int8Features(int8.module_artifact(module, tmp_path))
    photos = int8.calibration_paths()[::7]
    batch = np.stack([load_for_model(p, module.height, module.width) for p in photos])
    ours, theirs = run(batch), module.features(batch).numpy()
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= 0.97


def test_int8_interpreters_sharing_a_batch_keep_every_image_in_its_row(tmp_path, tiny_module):
    """Whichever interpreter takes an image, its vector lands in that image's row, in any batch size."""
    from bottleneck.data.images import load_for_model
    from bottleneck.model import int8
    from bottleneck.model.modules import load_module

    module = load_module(str(tiny_module), tmp_path)
    artifact = int8.module_artifact(module, tmp_path)
    alone = int8.Int8Features(artifact, workers=1)
    shared = int8.Int8Features(artifact, workers=3)
    batch = np.stack([load_for_model(p, module.height, module.width) for p in int8.calibration_paths()[:7]])
    expected = np.stack([alone(batch[i:i + 1])[0] for i in range(len(batch))])
    assert len({row.tobytes() for row in expected}) == len(batch)  # the images give different vectors
    for size in (1, 2, 7):
        np.testing.assert_array_equal(shared(batch[:size]), expected[:size])


# ---------------------------------------------------------------- label_image.py


def _scores(capsys, trained_graph, photo, *extra):
    code = label_image_main([*trained_graph.flags, "--output_format=json", *extra, str(photo)])
    assert code == 0
    return {p["label"]: p["score"] for p in json.loads(capsys.readouterr().out)["predictions"]}


def test_label_image_runs_a_graph_at_every_precision(trained_graph, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_MODEL_DIR", str(tmp_path / "label_models"))
    photo = write_photo(tmp_path / "new.jpg", (220, 40, 40), seed=4242)
    reference = _scores(capsys, trained_graph, photo, "--precision=float32")
    assert max(reference, key=reference.get) == "red"
    for precision in ("bfloat16", "int8", "auto"):
        scores = _scores(capsys, trained_graph, photo, f"--precision={precision}")
        assert max(scores, key=scores.get) == "red", precision
        assert all(abs(scores[k] - reference[k]) < 0.05 for k in reference), precision
    assert len(list((tmp_path / "label_models" / "int8").glob("*.tflite"))) == 1  # quantized once, kept


def test_label_image_refuses_a_precision_for_a_tflite_model(tmp_path, capsys):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"")
    assert label_image_main([f"--graph={model}", "--precision=int8", str(tmp_path)]) == 2
    assert "--precision applies to frozen graphs" in capsys.readouterr().err


# ---------------------------------------------------------------- several devices


MULTI_DEVICE = r"""
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[2])
from bottleneck.model.modules import load_module
from bottleneck.model.runner import runner
from bottleneck.model.precision import choose
devices = [d.name for d in tf.config.list_logical_devices("CPU")]
assert len(devices) == 2, devices
module = load_module(sys.argv[1], "/nonexistent")
batch = np.random.default_rng(0).random((7, module.height, module.width, 3), dtype=np.float32)
single = runner(module, choose("float32"), devices=[])(batch).numpy()
spread = runner(module, choose("float32"), devices=devices)(batch).numpy()
assert spread.shape == single.shape == (7, module.bottleneck_size)
assert len({row.tobytes() for row in single}) == 7  # the images give different vectors: rows cannot be mixed up
# A slice is a smaller batch, for which oneDNN may block the same sums differently; float32 rounds each addition
# to half an ulp, so a sum of a few hundred products taken in another order may move by some tens of ulps of the
# largest value. 1e-5 of the largest value is about 80 ulps; a row from another image or a lost slice is off by
# the size of the values themselves.
tolerance = 1e-5 * np.abs(single).max()
assert np.abs(spread - single).max() <= tolerance, (np.abs(spread - single).max(), tolerance)
print("equal within float32 rounding on", len(devices), "devices")
"""


def test_batches_spread_over_two_logical_devices_give_the_single_device_vectors(tiny_module):
    # Logical devices must be set up before TensorFlow starts, hence a fresh process.
    result = subprocess.run([sys.executable, "-c", MULTI_DEVICE, str(tiny_module), str(ROOT)], capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "equal within float32 rounding on 2 devices" in result.stdout


def test_bfloat16_kernels_missing_on_a_processor_stop_the_run_with_one_sentence():
    import tensorflow as tf

    from bottleneck.errors import UserError

    def network(images):
        raise tf.errors.NotFoundError(None, None, "No registered 'Conv2D' OpKernel for 'CPU' with T=DT_BFLOAT16")

    with pytest.raises(UserError) as caught:
        P.InPrecision(network, P.choose("bfloat16", AVX2_ONLY, []))(np.zeros((1, 4, 4, 3), np.float32))
    assert caught.value.exit_code == 2 and "cannot run the network in bfloat16" in str(caught.value)
    assert "Conv2D" in str(caught.value) and "\n" not in str(caught.value)
