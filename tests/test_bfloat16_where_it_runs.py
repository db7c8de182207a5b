"""bfloat16 only where it really runs: elsewhere float32 runs under float32's own cache identity, and says so."""
import re

import numpy as np
import pytest
from helpers import make_dataset, retrain_args

from bottleneck.cli.retrain import retrain_main
from bottleneck.model import precision as P

AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AVX2_ONLY = frozenset({"avx2", "fma"})


def test_bfloat16_asked_for_where_the_rewrite_does_not_run_is_float32_under_float32s_key():
    chosen = P.precision_here("bfloat16", AVX2_ONLY, [], rewrite_runs=False)
    assert chosen.name == "float32" and chosen.cache_suffix == "" and not chosen.native
    line = P.describe(chosen)
    assert line.startswith("Running the network in float32: asked for bfloat16 (--precision bfloat16), but "
                           "bfloat16 does not run here (the processor has neither avx512_bf16 nor amx_bf16")
    assert line.endswith("float32 runs and its vectors are cached as float32's.")


def test_auto_keeps_float32_where_the_flags_promise_bfloat16_but_the_rewrite_does_not_run():
    chosen = P.precision_here("auto", AVX512_BF16, [], rewrite_runs=False)
    assert chosen.name == "float32" and chosen.native  # auto choosing float32 is no warning
    assert "the processor has avx512_bf16, but oneDNN's bfloat16 rewrite does not change" in chosen.reason


def test_where_the_rewrite_runs_the_hardware_decides_as_before():
    assert P.precision_here("auto", AVX512_BF16, [], rewrite_runs=True).name == "bfloat16"
    emulated = P.precision_here("bfloat16", AVX2_ONLY, [], rewrite_runs=True)
    assert emulated.name == "bfloat16" and not emulated.native and "slower" in emulated.reason
    assert P.precision_here("float32", AVX512_BF16, [], rewrite_runs=True).name == "float32"


def test_the_probe_is_not_consulted_where_bfloat16_is_not_on_the_table(monkeypatch):
    def no_probe():
        raise AssertionError("probed")

    monkeypatch.setattr(P, "bfloat16_rewrite_runs", no_probe)
    assert P.precision_here("auto", AVX2_ONLY, []).name == "float32"
    assert P.precision_here("float32", AVX512_BF16, []).name == "float32"
    assert P.precision_here("int8", AVX512_BF16, []).name == "int8"


def test_the_probe_says_what_the_rewrite_does_to_a_real_network_on_this_machine(tiny_module, tmp_path):
    """On every processor: the probe's answer is whether bfloat16_scope changes the tiny network's vectors."""
    from bottleneck.model.modules import load_module
    from bottleneck.model.traced import network_fn

    module = load_module(str(tiny_module), tmp_path)
    batch = np.random.default_rng(3).random((4, module.height, module.width, 3), dtype=np.float32)
    plain = np.asarray(network_fn(module)(batch))
    with P.bfloat16_scope():
        rewritten = np.asarray(network_fn(module)(batch))
    assert P.bfloat16_rewrite_runs() == (not np.array_equal(plain, rewritten))


@pytest.fixture
def images(tmp_path):
    return make_dataset(tmp_path / "images", {"red": 12, "green": 12, "blue": 12})


def _counts(log):
    cached, _imported, computed = (int(v) for v in re.search(
        r"(\d+) bottlenecks cached, (\d+) imported, (\d+) to compute", log).groups())
    return cached, computed


def test_retrain_where_bfloat16_cannot_run_warns_and_fills_float32s_cache(tmp_path, images, tiny_module, caplog,
                                                                         monkeypatch):
    monkeypatch.setattr(P, "cpu_flags", lambda: AVX2_ONLY)
    monkeypatch.setattr(P, "bfloat16_rewrite_runs", lambda: False)
    caplog.set_level("INFO", logger="retrain")
    args = retrain_args(tmp_path, images, tiny_module, f"--model_dir={tmp_path / 'models'}", steps=20)
    assert retrain_main([*args, "--precision=bfloat16"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("Running the network in float32: asked for bfloat16") for w in warnings), warnings
    assert _counts(caplog.text) == (0, 36)
    caplog.clear()
    assert retrain_main([*args, "--precision=float32"]) == 0
    assert _counts(caplog.text) == (36, 0)  # the vectors it computed are float32's, and float32 finds them
