"""What every benchmark shares: the record of the processor (model name and the flags that decide precision
speed) and of the commit measured, the result file, and the timing of a function over batches."""
import json
import os
import platform
import subprocess
import time
from pathlib import Path

# The 1,000-photo development set beside the repository (not part of it): every benchmark's default data.
DEFAULT_IMAGE_DIR = str(Path(__file__).resolve().parents[2] / "shared/datasets/flower_photos_dev")

RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")


def machine() -> dict:
    from bottleneck.model.precision import cpu_flags

    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    flags = cpu_flags()
    try:
        import tensorflow as tf

        tf_version = tf.__version__
        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    except ImportError:
        tf_version, gpus = None, []
    return {"cpu_model": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in RELEVANT_FLAGS},
            "tensorflow": tf_version, "gpus": gpus,
            # Other work on the same cores slows every figure: the load when the measurement began says how much.
            "load_average_1min_at_start": round(os.getloadavg()[0], 2)}


def scratch_outputs(folder) -> list[str]:
    """retrain.py flags that keep all of a run's outputs (cache, graph, labels, logs, report) in ``folder``, quietly.

    The report lands in ``folder/graph_report``, beside the graph.
    """
    folder = Path(folder)
    return [f"--bottleneck_dir={folder / 'bottlenecks'}", f"--output_graph={folder / 'graph.pb'}",
            f"--output_labels={folder / 'labels.txt'}", f"--summaries_dir={folder / 'summaries'}",
            f"--checkpoint_path={folder / 'checkpoint' / 'ckpt'}", "--quiet"]


def commit_of(checkout) -> str:
    """The short commit that a checkout (a folder of this repository or a worktree of it) has checked out."""
    return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def write_result(path, result: dict | list, indent: int = 2) -> None:
    """Write a benchmark's result as JSON, making its folder (bench/results/ by convention)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")


def rate_of(fn, batches) -> tuple[float, float]:
    """Images per second of ``fn`` over ``batches`` (after one warm-up batch), and CPU seconds per image.

    The CPU time (all threads of this process) hardly depends on what else runs
    on the machine, so its ratios stay meaningful when the wall clock does not.
    """
    import numpy as np

    np.asarray(fn(batches[0]))
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        np.asarray(fn(batch))
    images = sum(len(b) for b in batches)
    return images / (time.perf_counter() - started), (time.process_time() - cpu) / images
