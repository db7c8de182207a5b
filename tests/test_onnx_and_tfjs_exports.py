"""The ONNX export run by ONNX Runtime, and the TensorFlow.js export run by TensorFlow.js in headless Chromium, each
against the frozen graph's scores on the same images: the tiny module's, and the built-in Inception-v3's on real
photos (inception mark)."""
import contextlib
import functools
import http.server
import io
import json
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, make_dataset, retrain_args

from bottleneck.cli.retrain import retrain_main
from bottleneck.data.images import load_for_model
from bottleneck.export.onnx import INPUT, OUTPUT, run_graph_def, run_onnx

TFJS_BUNDLE = ROOT / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=800,600")
EXAMPLES = ROOT / "examples"
PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><script src="tf.min.js"></script></head><body><script>
window.classify = async function (images, height, width) {
  await tf.setBackend('cpu');  // float32 everywhere, whatever the machine's WebGL does
  const model = await tf.loadGraphModel('model/model.json');
  const scores = [];
  for (const pixels of images) {
    const input = tf.tensor4d(pixels, [1, height, width, 3]);
    const output = model.predict(input);
    scores.push(Array.from(await output.data()));
    tf.dispose([input, output]);
  }
  return {scores: scores, metadata: model.metadata};
};
</script></body></html>
"""


def frozen_graph_scores(graph: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    return run_graph_def(graph_def, images)


def retrain_quietly(argv) -> None:
    log = io.StringIO()
    with contextlib.redirect_stderr(log), contextlib.redirect_stdout(io.StringIO()):
        code = retrain_main(argv)
    assert code == 0, log.getvalue()[-3000:]


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory, tiny_module):
    tmp = tmp_path_factory.mktemp("exports")
    images = make_dataset(tmp / "images", {"red": 15, "green": 15, "blue": 15})
    out = tmp / "out"
    retrain_quietly(retrain_args(tmp, images, tiny_module, "--precision=float32", f"--onnx_output={out / 'm.onnx'}",
                                 f"--tfjs_output={out / 'web'}", steps=100))
    return out, sorted(images.rglob("*.jpg"))[::7]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("Headless Chromium is needed: apt-get install chromium chromium-driver (setup.sh --tests).")
    if not TFJS_BUNDLE.is_file():
        pytest.fail(f"TensorFlow.js is needed at {TFJS_BUNDLE}: ./setup.sh --tests installs it (npm ci).")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_script_timeout(600)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args):  # one line per request would only clutter a failing test's output
        pass


@contextlib.contextmanager
def served(model_dir: Path):
    """A web server on 127.0.0.1 (a free port) serving the page, TensorFlow.js and the model folder."""
    root = Path(tempfile.mkdtemp(prefix="tfjs-page-"))
    (root / "index.html").write_text(PAGE, encoding="utf-8")
    shutil.copy(TFJS_BUNDLE, root / "tf.min.js")
    shutil.copytree(model_dir, root / "model")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


def tfjs_scores(driver, model_dir: Path, images: np.ndarray) -> tuple[np.ndarray, dict]:
    with served(model_dir) as url:
        driver.get(url)
        result = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.classify(arguments[0], arguments[1], arguments[2]).then(done, e => done({error: String(e)}));",
            [image.ravel().tolist() for image in images], images.shape[1], images.shape[2])
    assert "error" not in result, result
    return np.array(result["scores"]), result["metadata"]


def test_the_onnx_export_gives_the_frozen_graphs_scores_and_carries_the_labels(tiny_exports):
    import onnxruntime

    out, photos = tiny_exports
    images = np.stack([load_for_model(p, 32, 32) for p in photos])
    onnx_scores = run_onnx(out / "m.onnx", images)
    assert np.abs(onnx_scores - frozen_graph_scores(out / "graph.pb", images)).max() <= 1e-4
    session = onnxruntime.InferenceSession(str(out / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT] and [o.name for o in session.get_outputs()] == [OUTPUT]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == ["blue", "green", "red"] and meta["multi_label"] == "false"


def test_the_tfjs_export_runs_in_chromium_with_the_frozen_graphs_scores(tiny_exports, browser):
    out, photos = tiny_exports
    assert (out / "web" / "model.json").is_file() and list((out / "web").glob("*.bin"))
    images = np.stack([load_for_model(p, 32, 32) for p in photos[:3]])
    scores, metadata = tfjs_scores(browser, out / "web", images)
    assert np.abs(scores - frozen_graph_scores(out / "graph.pb", images)).max() <= 1e-3
    assert metadata["classifier"]["labels"] == ["blue", "green", "red"]


def test_a_failed_export_leaves_the_previous_onnx_and_tfjs_outputs(tmp_path, tiny_module, tiny_exports, monkeypatch):
    import bottleneck.export.outputs as outputs

    out, _photos = tiny_exports
    images = make_dataset(tmp_path / "images", {"red": 8, "green": 8})
    target = tmp_path / "previous"
    shutil.copytree(out / "web", target / "web")
    shutil.copy(out / "m.onnx", target / "m.onnx")
    before = (target / "m.onnx").read_bytes(), (target / "web" / "model.json").read_bytes()

    def full_disk(*_args):
        raise OSError(28, "No space left on device", "ckpt")

    monkeypatch.setattr(outputs, "write_checkpoint", full_disk)  # the last output of the set fails
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
        code = retrain_main(retrain_args(tmp_path, images, tiny_module, f"--onnx_output={target / 'm.onnx'}",
                                         f"--tfjs_output={target / 'web'}", steps=10))
    assert code == 1 and "No space left on device" in err.getvalue()
    assert ((target / "m.onnx").read_bytes(), (target / "web" / "model.json").read_bytes()) == before
    assert sorted(p.name for p in target.iterdir()) == ["m.onnx", "web"]  # no temporary folder left behind


@pytest.mark.inception
def test_inception_exports_agree_with_the_frozen_graph_on_real_photos(tmp_path, inception_model_dir, browser):
    out = tmp_path / "out"
    retrain_quietly([f"--image_dir={EXAMPLES / 'flower_photos'}", f"--model_dir={inception_model_dir}",
                     f"--bottleneck_dir={tmp_path / 'cache'}", f"--output_graph={out / 'graph.pb'}",
                     f"--output_labels={out / 'labels.txt'}", f"--summaries_dir={tmp_path / 'logs'}",
                     f"--checkpoint_path={out / 'ckpt'}", "--how_many_training_steps=60", "--random_seed=1",
                     "--precision=float32", "--skip_data_checks", "--skip_heatmaps",
                     f"--onnx_output={out / 'flowers.onnx'}", f"--tfjs_output={out / 'web'}"])
    photos = sorted((EXAMPLES / "held_out").glob("*.jpg"))
    images = np.stack([load_for_model(p, 299, 299) for p in photos])
    frozen = frozen_graph_scores(out / "graph.pb", images)
    assert np.abs(run_onnx(out / "flowers.onnx", images) - frozen).max() <= 1e-4
    scores, metadata = tfjs_scores(browser, out / "web", images[:3])
    assert np.abs(scores - frozen[:3]).max() <= 1e-3
    assert metadata["classifier"]["labels"] == (out / "labels.txt").read_text().split("\n")[:-1]


def test_a_missing_tensorflowjs_converter_is_one_sentence_before_any_work(tmp_path, tiny_module, monkeypatch):
    images = make_dataset(tmp_path / "images", {"red": 3, "green": 3})
    monkeypatch.setenv("BOTTLENECK_TFJS_CONVERTER", str(tmp_path / "no-converter"))
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
        code = retrain_main(retrain_args(tmp_path, images, tiny_module, f"--tfjs_output={tmp_path / 'web'}"))
    assert code == 2
    assert "--tfjs_output needs the TensorFlow.js converter, which ./setup.sh --tfjs installs in its own " \
           f"environment (.venv-tfjs); it is not at '{tmp_path / 'no-converter'}'" in err.getvalue()
    assert not (tmp_path / "out").exists()  # refused before any work
