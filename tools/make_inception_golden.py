"""One-off: compute golden Inception-v3 bottlenecks with the ORIGINAL TorchScript network.

Needs torch, which is not a dependency of the project; run it in a throw-away venv:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy pillow
    /tmp/torchvenv/bin/python -m tools.make_inception_golden PATH/TO/default_1.pt   # from the repository root

It writes tests/fixtures/inception_v3_golden.npz: the 2048-value pool_3 output
for the inputs that tests/golden_inputs.py rebuilds deterministically (seeded
noise, a smooth gradient and a real photo).  tests/test_inception_golden.py
compares the TensorFlow rebuild against these values.
"""
import sys
from pathlib import Path

import numpy as np
import torch

from tests.golden_inputs import golden_images

ROOT = Path(__file__).resolve().parent.parent


def main(archive: str) -> None:
    net = torch.jit.load(archive, map_location="cpu").eval()
    images = golden_images()  # uint8 [N, 299, 299, 3]
    x = torch.from_numpy((images.astype(np.float32) - 128.0) / 128.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        features = net(x).numpy().astype(np.float32)
    out = ROOT / "tests" / "fixtures" / "inception_v3_golden.npz"
    np.savez_compressed(out, bottlenecks=features, torch_version=np.array(torch.__version__))
    print(f"wrote {out}: {features.shape}, mean {features.mean():.6f}, max {features.max():.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
