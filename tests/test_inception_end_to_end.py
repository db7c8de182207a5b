"""The quick start for real: the built-in Inception-v3 on the bundled sample photos."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from golden_inputs import golden_images
from helpers import ROOT, import_frozen_graph

pytestmark = pytest.mark.inception
SAMPLE = ROOT / "examples" / "flower_photos"
HELD_OUT = sorted((ROOT / "examples" / "held_out").glob("*.jpg"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, inception_model_dir):
    out = tmp_path_factory.mktemp("inception")
    command = [
        sys.executable, "retrain.py", f"--image_dir={SAMPLE}", f"--model_dir={inception_model_dir}",
        f"--bottleneck_dir={out / 'bottlenecks'}", f"--output_graph={out / 'graph.pb'}",
        f"--output_labels={out / 'labels.txt'}", f"--summaries_dir={out / 'logs'}",
        f"--checkpoint_path={out / 'ckpt'}", "--random_seed=0",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_retrain_on_the_sample_logs_the_classic_lines(trained):
    _out, result = trained
    assert "75 to compute" in result.stderr
    assert re.search(r"Step 3999: Validation accuracy = [\d.]+% \(N=100\)", result.stderr)
    accuracy = float(re.search(r"Final test accuracy = ([\d.]+)% \(N=9\)", result.stderr).group(1))
    assert accuracy >= 55  # 9 test images: a loose bar, but far above the 20% of guessing
    assert "Test accuracy:" in result.stdout


def test_label_image_classifies_held_out_photos(trained):
    out, _ = trained
    command = [sys.executable, "label_image.py", f"--graph={out / 'graph.pb'}", f"--labels={out / 'labels.txt'}"]
    result = subprocess.run(command + [str(p) for p in HELD_OUT], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(HELD_OUT) * 6  # a path line, then the top 5
    correct = 0
    for i, photo in enumerate(HELD_OUT):
        block = lines[i * 6 : i * 6 + 6]
        assert block[0] == str(photo)
        correct += block[1].split()[0] == photo.name.split("_")[0]
    assert correct >= 3, result.stdout  # 5 photos from 5 classes; chance gives 1


def test_frozen_graph_holds_the_whole_network(trained):
    """Placeholder [None, 299, 299, 3] in [0, 1] -> bottleneck [None, 2048] equal to the original network's."""
    import tensorflow as tf

    out, _ = trained
    graph = import_frozen_graph(out / "graph.pb")
    assert graph.get_tensor_by_name("Placeholder:0").shape.as_list() == [None, 299, 299, 3]
    images = golden_images().astype(np.float32) / 255.0
    with tf.compat.v1.Session(graph=graph) as session:
        bottlenecks, scores = session.run(["bottleneck:0", "final_result:0"], {"Placeholder:0": images})
    golden = np.load(Path(__file__).parent / "fixtures" / "inception_v3_golden.npz")["bottlenecks"]
    np.testing.assert_allclose(bottlenecks, golden, atol=1e-4)
    assert scores.shape == (3, 5)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-5)
