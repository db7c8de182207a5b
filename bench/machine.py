"""What every benchmark shares: the one record of the machine a figure was measured on (processor, the flags
that decide precision speed, cores, memory, TensorFlow, Python, load), the command line and commit measured,
the result file, and the timing of a function over batches."""
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

# The 1,000-photo development set beside the repository (not part of it): every benchmark's default data.
DEFAULT_IMAGE_DIR = str(Path(__file__).resolve().parents[2] / "shared/datasets/flower_photos_dev")

RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _nvidia_gpus() -> list[str]:
    """The GPUs that nvidia-smi lists, for a benchmark that does not load TensorFlow."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(" (UUID")[0] for line in out.splitlines() if line.startswith("GPU ")]


def machine(tensorflow: bool = True) -> dict:
    """The machine, as every result file records it; call it when the measurement starts (it notes the load).

    ``tensorflow=False`` records it without importing TensorFlow (for benchmarks that run where it is not
    installed): its version only if already imported, and the GPUs as nvidia-smi lists them.
    """
    from bottleneck.model.precision import cpu_flags

    flags = cpu_flags()
    tf_version, gpus = None, []
    if tensorflow or "tensorflow" in sys.modules:
        try:
            import tensorflow as tf

            tf_version = tf.__version__
            gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
        except ImportError:
            pass
    else:
        gpus = _nvidia_gpus()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": _cpu_model(), "cores": usable, "logical_cpus": os.cpu_count(),
            "flags": {f: f in flags for f in RELEVANT_FLAGS}, "ram_gb": _ram_gb(),
            "tensorflow": tf_version, "gpus": gpus, "python": platform.python_version(),
            # Other work on the same cores slows every figure: the load when the measurement began says how much.
            "load_average_1min_at_start": round(os.getloadavg()[0], 2)}


def machine_name(record: dict) -> str:
    """The short name that result files carry, e.g. ``amd-epyc-avx512bf16-2core``: processor model, the native
    bfloat16 flag where there is one (it changes every precision figure), cores, and GPUs if any."""
    model = re.sub(r"\((r|tm)\)|cpu @.*|processor", " ", record["cpu_model"].lower())
    parts = [re.sub(r"[^a-z0-9]+", "-", model).strip("-")]
    parts += [flag.replace("_", "") for flag in ("amx_bf16", "avx512_bf16") if record["flags"].get(flag)][:1]
    parts.append(f"{record['cores']}core")
    if record["gpus"]:
        parts.append(f"{len(record['gpus'])}gpu")
    return "-".join(parts)


def command(argv=None) -> str:
    """The command line that ran this benchmark, as it is typed from the repository root."""
    script = Path(sys.argv[0]).stem
    return " ".join([".venv/bin/python", "-m", f"bench.{script}", *(sys.argv[1:] if argv is None else argv)])


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


def write_result(path, result: dict, indent: int = 2) -> None:
    """Write a benchmark's result as JSON, making its folder (bench/results/ by convention).

    Every result carries the machine it was measured on, so a figure never stands without it.
    """
    if "machine" not in result:
        raise ValueError("a benchmark result must carry machine(), the record of where it was measured")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent, default=str) + "\n")


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


if __name__ == "__main__":  # python -m bench.machine: this machine's name, for naming a result file
    print(machine_name(machine()))
