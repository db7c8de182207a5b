"""Every flag and every output location is checked before any work starts: one sentence, exit code 2.

"Before any work" is visible in the log: a refused run never reaches the line that counts the images.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import import_frozen_graph, make_dataset, the_error
from helpers import run_retrain as run

from bottleneck.cli.retrain import build_parser, config_from_args
from bottleneck.errors import UserError

STEPS = 10


@pytest.fixture
def images(tmp_path):
    return make_dataset(tmp_path / "images", {"red": 6, "green": 6})


def refused(tmp_path, images, module, caplog, capsys, *flags) -> str:
    code, log, err = run(tmp_path, images, module, caplog, capsys, *flags)
    assert code == 2, err
    assert "Found " not in log  # before the images were even listed
    assert not (tmp_path / "out" / "graph.pb").exists()
    return the_error(err)


FLOAT_FLAGS = ["learning_rate", "weight_decay", "label_smoothing", "dropout", "testing_percentage",
               "validation_percentage", "assert_accuracy_at_least", "fine_tune_learning_rate", "network_learning_rate",
               "network_warmup", "network_weight_decay", "network_label_smoothing"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("flag", FLOAT_FLAGS)
def test_every_float_flag_refuses_nan_and_infinity(tmp_path, flag, value):
    args = build_parser().parse_args([f"--image_dir={tmp_path}", f"--{flag}={value}"])
    with pytest.raises(UserError) as exc:
        config_from_args(args)
    assert exc.value.exit_code == 2 and f"--{flag}" in str(exc.value) and "finite" in str(exc.value)


def test_every_float_flag_of_the_parser_is_covered():
    """A float flag added later is checked too (check_finite looks at every float value); this keeps the
    list above honest."""
    parser = build_parser()
    floats = sorted(a.dest for a in parser._actions if a.type is float)
    assert floats == sorted(FLOAT_FLAGS)


def test_a_nan_learning_rate_trains_nothing(tmp_path, tiny_module, caplog, capsys, images):
    line = refused(tmp_path, images, tiny_module, caplog, capsys, "--learning_rate=nan")
    assert "--learning_rate must be a finite number" in line


@pytest.mark.parametrize("flag, fragment", [
    ("--random_seed=-1", "--random_seed must be between 0 and"),
    (f"--random_seed={2**32}", "--random_seed must be between 0 and"),
    ("--final_tensor_name=", "is not a valid tensor name"),
    ("--final_tensor_name=final result", "is not a valid tensor name"),
    ("--final_tensor_name=a/b", "is not a valid tensor name"),
    ("--final_tensor_name=Placeholder", "already the name of another tensor"),
    ("--final_tensor_name=bottleneck", "already the name of another tensor"),
    ("--validation_batch_size=0", "--validation_batch_size must be a positive number, or -1"),
    ("--validation_batch_size=-2", "--validation_batch_size must be a positive number, or -1"),
    ("--test_batch_size=0", "--test_batch_size must be a positive number, or -1"),
    ("--train_batch_size=0", "--train_batch_size must be a positive number, or -1"),
    ("--train_batch_size=-5", "--train_batch_size must be a positive number, or -1"),
    ("--intermediate_store_frequency=-10", "--intermediate_store_frequency must be 0"),
])
def test_values_the_engine_relies_on_are_refused_up_front(tmp_path, tiny_module, caplog, capsys, images, flag,
                                                           fragment):
    assert fragment in refused(tmp_path, images, tiny_module, caplog, capsys, flag)


def test_a_final_tensor_name_used_inside_the_module_is_refused_before_the_bottlenecks(
    tmp_path, tiny_module, caplog, capsys, images
):
    code, log, err = run(tmp_path, images, tiny_module, caplog, capsys, "--final_tensor_name=MatMul")
    assert code == 2
    assert "already the name of a tensor in the module's graph" in the_error(err)
    assert "bottlenecks cached" not in log


def test_a_custom_final_tensor_name_that_is_free_is_exported(tmp_path, tiny_module, caplog, capsys, images):
    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, "--final_tensor_name=my.scores-v2")
    assert code == 0, err
    graph = import_frozen_graph(tmp_path / "out" / "graph.pb")
    assert graph.get_tensor_by_name("my.scores-v2:0").shape.as_list() == [None, 2]


def test_train_batch_size_minus_one_trains_on_the_whole_training_set(tmp_path, tiny_module, caplog, capsys, images):
    code, log, err = run(tmp_path, images, tiny_module, caplog, capsys, "--train_batch_size=-1",
                         "--validation_batch_size=-1")
    assert code == 0, err
    assert "nan" not in log.lower()


def test_train_batch_size_minus_one_uses_every_training_row_each_step():
    from bottleneck.cache.sets import SplitData
    from bottleneck.training.layer import TrainSettings, train_layer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 4)).astype(np.float32)
    data = SplitData(x, np.array([0, 1, 0, 1, 0, 1, 0]), [str(i) for i in range(7)])
    empty = SplitData(x[:0], np.array([], int), [])
    a = train_layer(data, empty, 2, TrainSettings(steps=5, batch_size=-1, seed=1, learning_rate=0.1), None)
    b = train_layer(data, empty, 2, TrainSettings(steps=5, batch_size=-1, seed=2, learning_rate=0.1), None)
    # Full-batch gradient descent: the same rows at each step, so only the initial weights differ by seed.
    assert a.history[-1].train_accuracy == b.history[-1].train_accuracy


# --------------------------------------------------------------------------- output locations


def test_a_checkpoint_path_that_cannot_be_written_is_refused_up_front(tmp_path, tiny_module, caplog, capsys, images):
    # /proc takes no new files, not even from root: the same refusal as a read-only mount.
    line = refused(tmp_path, images, tiny_module, caplog, capsys, "--checkpoint_path=/proc/ckpt")
    assert "--checkpoint_path" in line and "cannot be written" in line


def test_a_read_only_file_system_is_refused_up_front(tmp_path, tiny_module, caplog, capsys, images, monkeypatch):
    import errno
    import tempfile

    import bottleneck.config.checks as checks

    locked = tmp_path / "ro"
    locked.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(locked)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(checks.tempfile, "mkstemp", mkstemp)
    line = refused(tmp_path, images, tiny_module, caplog, capsys, f"--output_graph={locked / 'g.pb'}")
    assert "--output_graph" in line and "Read-only file system" in line


@pytest.mark.parametrize("stray", ["previous_runs", "train", "validation"])
def test_a_stray_file_in_the_summaries_dir_is_refused_before_the_work(tmp_path, tiny_module, caplog, capsys,
                                                                      images, stray):
    logs = tmp_path / "out" / "logs"
    logs.mkdir(parents=True)
    (logs / stray).write_text("not a folder")
    line = refused(tmp_path, images, tiny_module, caplog, capsys)
    assert "--summaries_dir" in line and stray in line
    assert (logs / stray).read_text() == "not a folder"


@pytest.mark.parametrize("flag", ["output_graph", "output_labels", "tflite_output"])
def test_a_folder_where_an_output_file_goes_is_refused_up_front(tmp_path, tiny_module, caplog, capsys, images, flag):
    folder = tmp_path / "a folder"
    folder.mkdir()
    line = refused(tmp_path, images, tiny_module, caplog, capsys, f"--{flag}={folder}")
    assert f"--{flag}" in line and "is a folder" in line


@pytest.mark.parametrize("flag", ["bottleneck_dir", "summaries_dir", "report_dir", "saved_model_dir"])
def test_a_file_where_an_output_folder_goes_is_refused_up_front(tmp_path, tiny_module, caplog, capsys, images, flag):
    blocker = tmp_path / "a file"
    blocker.write_text("mine")
    line = refused(tmp_path, images, tiny_module, caplog, capsys, f"--{flag}={blocker}")
    assert f"--{flag}" in line and blocker.read_text() == "mine"
