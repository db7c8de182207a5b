"""What a command pays before its first image: TensorFlow's import, without the Keras it does not use and
without leaving its objects for the garbage collector to walk again and again."""
import subprocess
import sys

from helpers import ROOT


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_tensorflow_is_imported_without_keras_yet_keras_works_when_asked_for():
    done = _python(
        "import sys\n"
        "from bottleneck.model.tf_import import quiet_tensorflow\n"
        "quiet_tensorflow('WARN')\n"
        "print('tensorflow' in sys.modules, any(m == 'keras' or m.startswith('keras.') for m in sys.modules))\n"
        "import tensorflow as tf\n"
        "print(tf.constant(2.0).numpy() * 2)\n"
        # fine-tuning's optimizer comes through tf.keras, which imports Keras on first use
        "v = tf.Variable([1.0]); tf.keras.optimizers.Adam(0.5).apply_gradients([(tf.constant([1.0]), v)])\n"
        "print(round(float(v.numpy()[0]), 3))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "4.0", "0.5"]


def test_a_savedmodel_module_loads_with_keras_registered_as_tensorflow_would(tiny_module):
    """TF-Hub modules and the user's SavedModels may come from Keras: they load as under a plain import."""
    done = _python(
        "import sys\n"
        "from bottleneck.model.tf_import import quiet_tensorflow\n"
        "from bottleneck.model.modules import load_module\n"
        "quiet_tensorflow('WARN')\n"
        "print('keras.src.optimizers' in sys.modules)\n"
        f"module = load_module({str(tiny_module)!r}, None)\n"
        "print('keras.src.optimizers' in sys.modules, module.bottleneck_size > 0)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True"]


def test_tensorflows_objects_are_out_of_the_collectors_way_and_collection_still_runs():
    """A full collection during the run walks the run's own objects, not the library's few hundred thousand."""
    done = _python(
        "import gc\n"
        "from bottleneck.model.tf_import import quiet_tensorflow\n"
        "quiet_tensorflow('WARN')\n"
        "print(gc.isenabled(), gc.get_freeze_count(), len(gc.get_objects()))\n"
        "class Cycle: pass\n"
        "a = Cycle(); a.me = a; del a\n"
        "print(gc.collect() >= 1)\n"  # garbage made afterwards is still collected
    )
    assert done.returncode == 0, done.stderr
    enabled, frozen, tracked, collected = done.stdout.split()
    assert enabled == "True" and collected == "True"
    assert int(frozen) > 100_000 and int(tracked) < int(frozen) // 10
