"""TensorBoard's projector: the bottlenecks, their metadata and a sprite in --summaries_dir.

``tensorboard --logdir <summaries_dir>`` then shows the images in its Projector
tab, where PCA, t-SNE and UMAP run in the browser, each point drawn as its
thumbnail and coloured or searched by label, set, prediction or flag.  Written,
each atomically, beside the classic train/ and validation/ runs:

* ``projector_config.pbtxt``: the plugin's own ``ProjectorConfig``, its paths
  relative to the folder, so the folder can be moved;
* ``projector/bottlenecks.bytes``: float32 rows, row-major, as the plugin reads
  a tensor file that is not text (``tensor_shape`` in the config gives the
  shape; see ``_tensor_file``);
* ``projector/metadata.tsv``: a header, then one row per point: path, label,
  set, prediction and flags;
* ``projector/sprite.jpg``: every point's thumbnail, ``sprite.TILE`` pixels square
  (a JPEG: a PNG of a thousand photos' thumbnails is ten times larger and slower to write).

Above ``PROJECTOR_LIMIT`` images, the first ``PROJECTOR_LIMIT`` rows of
every_image's order are written: every flagged image that fits, then a seeded
random sample of the others.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic, write_text_atomic
from ..data.names import one_line
from .every_image import EveryImage
from .sprite import encoded, sprite

PROJECTOR_LIMIT = 5000  # points: a sprite of 64-pixel tiles stays under the projector's 8192-pixel limit
CONFIG_FILE = "projector_config.pbtxt"  # tensorboard.plugins.projector.metadata.PROJECTOR_FILENAME
FOLDER = "projector"
TENSOR_FILE = "bottlenecks.bytes"
TENSOR_TSV = "bottlenecks.tsv"
METADATA_FILE = "metadata.tsv"
SPRITE_FILE = "sprite.jpg"
SPRITE_QUALITY = 90
TENSOR_NAME = "bottlenecks"


def write_projector(summaries_dir, images: EveryImage, labels: list[str], squares: np.ndarray, total: int) -> dict:
    """Write the projector's files for ``images`` (already the sample) into ``summaries_dir``; what summary.json
    says of them."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector import ProjectorConfig

    started = time.perf_counter()
    root = Path(summaries_dir)
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    tensor_name = _tensor_file(folder, images.x)
    write_text_atomic(folder / METADATA_FILE, metadata(images, labels))
    write_bytes_atomic(folder / SPRITE_FILE, encoded(sprite(squares), "JPEG", quality=SPRITE_QUALITY))
    config = ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = TENSOR_NAME
    embedding.tensor_path = f"{FOLDER}/{tensor_name}"
    embedding.tensor_shape.extend(images.x.shape)
    embedding.metadata_path = f"{FOLDER}/{METADATA_FILE}"
    embedding.sprite.image_path = f"{FOLDER}/{SPRITE_FILE}"
    embedding.sprite.single_image_dim.extend([squares.shape[2], squares.shape[1]])
    write_text_atomic(root / CONFIG_FILE, text_format.MessageToString(config))
    return {"dir": str(root), "config": CONFIG_FILE, "points": len(images), "images": total,
            "tensor": f"{FOLDER}/{tensor_name}", "seconds": round(time.perf_counter() - started, 3)}


def _tensor_file(folder: Path, x: np.ndarray) -> str:
    """Write the bottlenecks as float32 bytes, or as TSV where the plugin would mistake the bytes for text.

    The plugin reads a tensor file as TSV first, line by line, and turns to bytes only when a line is not
    UTF-8; bytes whose first line happens to be valid UTF-8 would fail as TSV instead, so those are written
    as the (slower, larger) TSV.  Only one of the two files is left.
    """
    data = np.ascontiguousarray(x, dtype="<f4").tobytes()
    end = data.find(b"\n")
    try:
        data[:len(data) if end < 0 else end + 1].decode("utf-8")
    except UnicodeDecodeError:
        write_bytes_atomic(folder / TENSOR_FILE, data)
        (folder / TENSOR_TSV).unlink(missing_ok=True)
        return TENSOR_FILE
    text = io.StringIO()
    np.savetxt(text, x, fmt="%.6g", delimiter="\t")
    write_text_atomic(folder / TENSOR_TSV, text.getvalue())
    (folder / TENSOR_FILE).unlink(missing_ok=True)
    return TENSOR_TSV


def metadata(images: EveryImage, labels: list[str]) -> str:
    """The projector's metadata: a header row (several columns need one), then a row per point; a path's tabs
    and line breaks are escaped (names.one_line), so every row keeps its columns."""
    rows = ["path\tlabel\tset\tprediction\tflags"]
    for r in range(len(images)):
        guess = int(images.predicted[r])
        rows.append("\t".join((one_line(images.paths[r]), labels[int(images.y[r])], images.sets[r],
                                labels[guess] if guess >= 0 else "", ", ".join(images.flag_names(r)) or "none")))
    return "\n".join(rows) + "\n"
