"""Model files checked against the digest recorded when they were written: a damaged int8 model is quantized
again with a log line; damaged built-in weights stop the run with one sentence naming the command that restores
them (exit 2), and that command really restores them."""
from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest
from helpers import make_dataset, retrain_args, the_error

from bottleneck.cli.commands import prepare_model_main
from bottleneck.cli.retrain import retrain_main
from bottleneck.model import sealed

# --------------------------------------------------------------------------- the seal


def test_a_sealed_file_is_sound_until_its_bytes_change(tmp_path):
    target = tmp_path / "model.bin"
    sealed.write_sealed(target, b"the model's bytes")
    assert (tmp_path / "model.bin.sha256").read_text().split() == [sealed.file_digest(target), "model.bin"]
    assert sealed.damage(target) is None
    target.write_bytes(b"the model's bytes, overwritten")
    assert sealed.damage(target) == "its SHA-256 is not the one recorded when it was written"
    target.write_bytes(b"the model's")
    assert "not the one recorded" in sealed.damage(target)


def test_a_file_without_a_recorded_digest_is_unknown_not_damaged(tmp_path):
    target = tmp_path / "old.bin"
    target.write_bytes(b"written before digests were recorded")
    assert sealed.damage(target) is None and not sealed.is_sealed(target)
    sealed.seal(target)
    assert sealed.is_sealed(target) and sealed.damage(target) is None


# --------------------------------------------------------------------------- int8


@pytest.fixture
def images(tmp_path):
    return make_dataset(tmp_path / "images", {"red": 8, "green": 8})


def _int8_run(tmp_path, images, tiny_module, caplog):
    caplog.clear()
    caplog.set_level("INFO", logger="retrain")
    args = retrain_args(tmp_path, images, tiny_module, f"--model_dir={tmp_path / 'models'}", "--precision=int8",
                        f"--bottleneck_dir={tmp_path / 'fresh-cache-each-run'}", steps=10)
    return retrain_main(args), caplog.text


@pytest.mark.parametrize("damage", ["cut in half", "overwritten"])
def test_a_damaged_int8_model_is_quantized_again(tmp_path, images, tiny_module, caplog, damage):
    code, _log = _int8_run(tmp_path, images, tiny_module, caplog)
    assert code == 0
    [model] = (tmp_path / "models" / "int8").glob("features-*.tflite")
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 2] if damage == "cut in half" else b"\0" * len(good))
    shutil.rmtree(tmp_path / "fresh-cache-each-run")
    code, log = _int8_run(tmp_path, images, tiny_module, caplog)
    assert code == 0, log[-2000:]
    assert f"The int8 model {model} is damaged" in log and "quantizing it again" in log
    assert model.read_bytes() == good and sealed.damage(model) is None


def test_an_int8_model_from_before_digests_is_checked_and_sealed(tmp_path, images, tiny_module, caplog):
    code, _log = _int8_run(tmp_path, images, tiny_module, caplog)
    assert code == 0
    [model] = (tmp_path / "models" / "int8").glob("features-*.tflite")
    sealed.digest_path(model).unlink()  # as an earlier version left it
    model.write_bytes(model.read_bytes()[:1000])  # and then damaged: it cannot be loaded, so it is rebuilt
    shutil.rmtree(tmp_path / "fresh-cache-each-run")
    code, log = _int8_run(tmp_path, images, tiny_module, caplog)
    assert code == 0 and "quantizing it again" in log
    assert sealed.is_sealed(model) and sealed.damage(model) is None


# --------------------------------------------------------------------------- the built-in weights


def _cut(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _without_one_array(path):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "mixed_4/tower_1/conv_4/kernel"}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


@pytest.fixture
def model_copy(tmp_path, inception_model_dir):
    """A copy of the converted model folder (weights and the archive they came from), to damage."""
    from bottleneck.model.weights import weights_path

    source = weights_path(inception_model_dir).parent
    if not (source / "default_1.pt").is_file():
        pytest.skip("the archive was removed after conversion")
    target = tmp_path / "models"
    shutil.copytree(source, target / source.name)
    return target


@pytest.mark.inception
@pytest.mark.parametrize("damage", [_cut, _without_one_array], ids=["cut short", "missing one array"])
@pytest.mark.parametrize("sealed_before", [True, False], ids=["sealed", "from before digests"])
def test_damaged_weights_name_the_command_that_restores_them(model_copy, tmp_path, capsys, damage, sealed_before):
    from bottleneck.model.weights import ensure_weights, weights_path

    target = weights_path(model_copy)
    ensure_weights(model_copy)  # seals weights converted before digests were recorded
    good = np.load(target)
    good = {k: good[k] for k in good.files}
    if not sealed_before:
        sealed.digest_path(target).unlink()
    damage(target)
    images = make_dataset(tmp_path / "images", {"red": 3, "green": 3})
    code = retrain_main([f"--image_dir={images}", f"--model_dir={model_copy}", f"--bottleneck_dir={tmp_path / 'b'}"])
    line = the_error(capsys.readouterr().err)
    assert code == 2
    assert f"The built-in Inception-v3 weights '{target}' are damaged" in line
    assert f"run python -m bottleneck prepare-model --model_dir {model_copy} to convert them again" in line
    assert "Traceback" not in line

    assert prepare_model_main([f"--model_dir={model_copy}"]) == 0  # the command really restores them
    assert "converting them again" in capsys.readouterr().out
    restored = np.load(target)
    assert set(restored.files) == set(good) and all(np.array_equal(restored[k], good[k]) for k in good)
    assert sealed.damage(target) is None
    assert zipfile.is_zipfile(target)
