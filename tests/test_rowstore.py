"""Training sets too big for memory are read from disk a batch at a time, with the very same results."""
import numpy as np
from helpers import retrain_args

from bottleneck.cache import sets
from bottleneck.cache.rowstore import DiskRows
from bottleneck.cache.sets import SplitData
from bottleneck.cli.retrain import retrain_main
from bottleneck.training.layer import TrainSettings, train_layer


def test_disk_rows_read_back_what_was_written(tmp_path):
    values = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float16)
    rows = DiskRows(50, 7, np.float16, tmp_path)
    for i, vector in enumerate(values):
        rows[i] = vector
    assert np.array_equal(rows[np.array([3, 49, 3, 0])], values[[3, 49, 3, 0]])
    assert np.array_equal(rows[10:20], values[10:20]) and np.array_equal(rows[::7], values[::7])
    assert rows.astype(np.float32).dtype == np.float32 and np.array_equal(rows.astype(np.float32), values)
    assert len(rows) == 50 and rows.shape == (50, 7) and list(tmp_path.iterdir()) == []  # the file is unlinked


def test_training_from_disk_rows_equals_training_in_memory(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 16)).astype(np.float16)
    y = rng.integers(0, 3, 300).astype(np.int32)
    on_disk = DiskRows(300, 16, np.float16, tmp_path)
    for i, vector in enumerate(x):
        on_disk[i] = vector
    settings = TrainSettings(steps=60, batch_size=20, eval_step_interval=10, validation_batch_size=-1, seed=3,
                             early_stopping_patience=2)
    names = [str(i) for i in range(300)]
    in_memory = train_layer(SplitData(x, y, names), SplitData(x[:50], y[:50], names[:50]), 3, settings)
    streamed = train_layer(SplitData(on_disk, y, names), SplitData(on_disk[:50], y[:50], names[:50]), 3, settings)
    assert np.array_equal(in_memory.weights, streamed.weights) and np.array_equal(in_memory.biases, streamed.biases)


def test_retrain_streams_a_big_set_from_disk_and_exports_the_same_graph(tmp_path, dataset, tiny_module, monkeypatch):
    assert retrain_main(retrain_args(tmp_path / "memory", dataset, tiny_module, steps=60)) == 0
    monkeypatch.setattr(sets, "IN_MEMORY_BYTES", 0)  # every set counts as too big for memory
    used = []
    monkeypatch.setattr(sets, "DiskRows", lambda *a: used.append(a) or DiskRows(*a))
    assert retrain_main(retrain_args(tmp_path / "disk", dataset, tiny_module, steps=60)) == 0
    assert len(used) == 3  # training, validation and testing
    for name in ("final_weights", "final_biases"):
        assert np.array_equal(trained(tmp_path / "memory", name), trained(tmp_path / "disk", name))


def trained(run, name):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(run / "out" / "checkpoint" / "ckpt"))
    key = next(k for k in reader.get_variable_to_shape_map() if k.startswith(name))
    return reader.get_tensor(key)
