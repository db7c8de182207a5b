"""The Apache Beam pipelines on Beam's local runner, offline: bottleneck shards and batch classification.

Most checks run on the tiny module; one runs the built-in Inception-v3 on a few real photos.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, make_dataset, retrain_args

from bottleneck.cache.shards import import_shards
from bottleneck.cache.store import BottleneckCache, Entry
from bottleneck.cli.commands import beam_bottlenecks_main
from bottleneck.cli.label_image import label_image_main
from bottleneck.cli.retrain import retrain_main
from bottleneck.data.digest import file_digest
from bottleneck.data.images import BadImage, load_for_model
from bottleneck.extraction.batches import Job, compute_missing
from bottleneck.model.modules import load_module
from bottleneck.scale_out import beam_bottlenecks

BAD_FILES = {"red/notes.jpg": b"just some text, not a picture\n", "blue/cut.jpg": None}


def add_bad_images(images):
    """A text file named .jpg and a JPEG cut in half; returns their paths."""
    (images / "red" / "notes.jpg").write_bytes(BAD_FILES["red/notes.jpg"])
    whole = (images / "blue" / "img_000.jpg").read_bytes()
    (images / "blue" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    return [images / name for name in BAD_FILES]


def local_reason(path) -> str:
    with pytest.raises(BadImage) as caught:
        load_for_model(path, 32, 32)
    return str(caught.value)


def local_vectors(module, images, tmp_path):
    """What the local tool computes for ``images``: digest -> vector."""
    cache = BottleneckCache(tmp_path / "local-cache", module.identity, module.bottleneck_size)
    jobs = {file_digest(p): p for p in images}
    compute_missing(module, [Job(Entry(d), p) for d, p in jobs.items()], cache)
    good = [d for d in jobs if Entry(d) in cache.present([Entry(d) for d in jobs])]
    vectors = dict(zip(good, cache.matrix([Entry(d) for d in good])))
    cache.close()
    return vectors


def imported_vectors(module, shard_dir, cache_dir):
    cache = BottleneckCache(cache_dir, module.identity, module.bottleneck_size)
    import_shards(cache, shard_dir)
    digests = sorted(cache.stored_digests())
    vectors = dict(zip(digests, cache.matrix([Entry(d) for d in digests])))
    cache.close()
    return vectors


@pytest.fixture(scope="module")
def beam_run(tmp_path_factory, tiny_module):
    """One run of the bottleneck command over synthetic images with two bad files and one duplicate."""
    tmp = tmp_path_factory.mktemp("beam")
    images = make_dataset(tmp / "images", {"red": 6, "green": 6, "blue": 6})
    shutil.copy(images / "red" / "img_001.jpg", images / "red" / "copy_of_001.jpg")  # same content, computed once
    bad = add_bad_images(images)
    bottleneck_dir = tmp / "bottlenecks"
    args = [f"--image_dir={images}", f"--tfhub_module={tiny_module}", f"--bottleneck_dir={bottleneck_dir}",
            "--extraction_batch_size=4", "--precision=float32"]
    return tmp, images, bottleneck_dir, bad, args


def run_command(args, capsys) -> str:
    assert beam_bottlenecks_main(args) == 0
    return capsys.readouterr().out


def test_shards_import_with_the_vectors_of_local_extraction_and_a_rerun_computes_nothing(beam_run, tiny_module,
                                                                                        capsys, tmp_path):
    tmp, images, bottleneck_dir, bad, args = beam_run
    out = run_command(args, capsys)
    assert "21 images listed, 0 already computed, 18 bottlenecks computed, 2 skipped." in out
    module = load_module(str(tiny_module), None)
    every_image = sorted(p for p in images.rglob("*.jpg"))
    expected = local_vectors(module, every_image, tmp_path)
    got = imported_vectors(module, bottleneck_dir / "shards", tmp_path / "imported")
    assert set(got) == set(expected) and len(got) == 18
    assert max(float(np.abs(got[d] - expected[d]).max()) for d in got) <= 1e-5

    again = run_command(args, capsys)  # nothing new: every key is in the shards already written
    assert "0 bottlenecks computed" in again and "19 already computed" in again


def test_skipped_images_are_recorded_with_the_local_tools_reasons(beam_run, capsys):
    tmp, _images, bottleneck_dir, bad, args = beam_run
    run_command([*args, f"--output_dir={tmp / 'skip-check'}"], capsys)
    records = {r["path"]: r["reason"] for r in beam_bottlenecks.read_skipped(tmp / "skip-check")}
    assert records == {str(p): local_reason(p) for p in bad}
    assert "not an image (looks like text)" in records.values()


def test_retrain_imports_the_shards_once_and_computes_only_what_they_lack(beam_run, tiny_module, caplog):
    tmp, images, bottleneck_dir, bad, args = beam_run
    shard_dir = tmp / "shards-for-retrain"
    beam_bottlenecks_main([*args, f"--output_dir={shard_dir}", f"--bottleneck_dir={tmp / 'unused'}"])
    train = tmp / "train-run"
    # The pipeline computes float32 vectors; they serve runs at that precision.
    flags = retrain_args(train, images, tiny_module, f"--bottleneck_shards={shard_dir}", "--precision=float32",
                         steps=50)
    with caplog.at_level("INFO", logger="retrain"):
        assert retrain_main(flags) == 0
    text = caplog.text
    assert "Imported 18 bottlenecks from" in text
    # The two bad files: the pipeline's record says their content cannot be decoded, so they are not tried again.
    assert "bottlenecks cached, 0 imported, 0 to compute." in text
    assert all(f"Skipping {p}: {local_reason(p)}" in text for p in bad), text
    caplog.clear()
    with caplog.at_level("INFO", logger="retrain"):
        assert retrain_main(flags) == 0
    assert "Imported" not in caplog.text  # the same shard files are not read again


def test_bfloat16_shards_are_keyed_for_bfloat16_runs_only(beam_run, tiny_module, caplog, monkeypatch):
    from bottleneck.model import precision as precision_module

    monkeypatch.setattr(precision_module, "bfloat16_rewrite_runs", lambda: True)  # as where bfloat16 runs
    tmp, images, _bottleneck_dir, _bad, args = beam_run
    shard_dir = tmp / "bfloat16-shards"
    bfloat16_args = [a for a in args if not a.startswith("--precision")] + ["--precision=bfloat16"]
    assert beam_bottlenecks_main([*bfloat16_args, f"--output_dir={shard_dir}", f"--bottleneck_dir={tmp / 'none'}"]) == 0
    train = tmp / "bfloat16-run"
    for precision, imported in (("float32", False), ("bfloat16", True)):
        flags = retrain_args(train, images, tiny_module, f"--bottleneck_shards={shard_dir}",
                             f"--precision={precision}", steps=20)
        caplog.clear()
        with caplog.at_level("INFO", logger="retrain"):
            assert retrain_main(flags) == 0
        assert ("Imported 18 bottlenecks from" in caplog.text) is imported, precision
        if not imported:  # a float32 run says why it leaves bfloat16 vectors alone
            assert "for another module, --bottleneck_layer or --precision" in caplog.text


def test_label_image_pipeline_rows_equal_its_local_output(tmp_path, tiny_module, capsys):
    train = make_dataset(tmp_path / "train", {"red": 12, "green": 12, "blue": 12})
    assert retrain_main(retrain_args(tmp_path, train, tiny_module, steps=100)) == 0
    photos = make_dataset(tmp_path / "photos", {"red": 3, "green": 3, "blue": 3}, seed=5)
    (photos / "green" / "broken.jpg").write_bytes(b"not a picture")
    flags = [f"--graph={tmp_path / 'out' / 'graph.pb'}", f"--labels={tmp_path / 'out' / 'labels.txt'}", "--top_k=2",
             "--precision=float32"]  # the pipeline runs float32 on every worker
    capsys.readouterr()
    for output_format, suffix in (("csv", ".csv"), ("json", ".jsonl")):
        assert label_image_main([*flags, f"--output_format={output_format}", str(photos)]) == 2  # one bad image
        local = capsys.readouterr().out.splitlines()
        shards = tmp_path / f"rows-{output_format}"
        assert label_image_main([*flags, f"--output_format={output_format}", f"--beam_output={shards}",
                                 "--direct_num_workers=2", str(photos)]) == 2
        assert "Wrote 10 rows" in capsys.readouterr().out
        lines = [line for f in sorted(shards.glob(f"predictions-*{suffix}")) for line in f.read_text().splitlines()]
        if output_format == "csv":
            assert {line for line in lines if line.startswith("path,")} == {local[0]}  # each shard's header
            assert_same_rows(parse_csv(local[1:]), parse_csv([x for x in lines if not x.startswith("path,")]))
        else:
            assert_same_rows(parse_json(local), parse_json(lines))


def parse_csv(lines):
    return {row[0]: (row[1::2], [float(s) if s else None for s in row[2::2]])
            for row in csv.reader(io.StringIO("\n".join(lines)))}


def parse_json(lines):
    rows = {}
    for line in lines:
        obj = json.loads(line)
        rows[obj["path"]] = ([p["label"] for p in obj["predictions"]] + [obj["error"]],
                             [p["score"] for p in obj["predictions"]])
    return rows


def assert_same_rows(local, pipeline):
    """Same paths, labels and errors; scores equal up to float32 rounding in a different batch."""
    assert local.keys() == pipeline.keys() and len(local) == 10
    for path, (texts, scores) in local.items():
        other_texts, other_scores = pipeline[path]
        assert texts == other_texts
        assert np.allclose([s or 0 for s in scores], [s or 0 for s in other_scores], atol=2e-6)


@pytest.mark.parametrize("cwd", [ROOT, ROOT / "tests"])
def test_pandas_imports_beside_our_bottleneck_package_without_a_word(cwd):
    """pandas has an optional accelerator also named bottleneck; with our package on sys.path it must pass over it."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import bottleneck.cli.retrain; import pandas; "
            "import pandas.core.nanops as nanops; assert not nanops._BOTTLENECK_INSTALLED; "
            "print(pandas.Series([1.0, float('nan'), 3.0]).mean())")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2.0" and done.stderr == ""


def test_pandas_imports_in_this_process_where_bottleneck_is_ours():
    import pandas

    import bottleneck

    assert bottleneck.__file__.startswith(str(ROOT))  # the name pandas looks for is our package here
    assert pandas.DataFrame({"a": [1.0, float("nan"), 2.0]})["a"].sum() == 3.0


@pytest.mark.inception
def test_inception_shards_equal_local_extraction_on_real_photos(tmp_path, inception_model_dir, capsys):
    images = tmp_path / "photos"
    for label in ("daisy", "roses"):
        for photo in sorted((ROOT / "examples" / "flower_photos" / label).glob("*.jpg"))[:3]:
            (images / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, images / label / photo.name)
    (images / "roses" / "empty.jpg").write_bytes(b"")
    args = [f"--image_dir={images}", f"--bottleneck_dir={tmp_path / 'bottlenecks'}", "--precision=float32",
            f"--model_dir={inception_model_dir}"]
    out = run_command(args, capsys)
    assert "7 images listed, 0 already computed, 6 bottlenecks computed, 1 skipped." in out
    module = load_module("inception_v3", inception_model_dir)
    expected = local_vectors(module, sorted(images.rglob("*.jpg")), tmp_path)
    got = imported_vectors(module, tmp_path / "bottlenecks" / "shards", tmp_path / "imported")
    assert set(got) == set(expected) and len(got) == 6
    assert max(float(np.abs(got[d] - expected[d]).max()) for d in got) <= 1e-5
    assert "0 bottlenecks computed" in run_command(args, capsys)


def test_a_missing_image_folder_is_one_sentence_and_exit_2(tmp_path, capsys):
    assert beam_bottlenecks_main([f"--image_dir={tmp_path / 'nowhere'}", f"--bottleneck_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"beam-bottlenecks: error: Image directory '{tmp_path / 'nowhere'}' not found."]
