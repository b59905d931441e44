"""IDX files (MNIST / Fashion-MNIST), gzipped or raw: the format of the Debian package
`dataset-fashion-mnist` under /usr/share/datasets/fashion-mnist."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

# IDX type codes -> numpy dtypes (big-endian on disk).
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: str | Path) -> np.ndarray:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        header = f.read(4)
        if len(header) != 4 or header[0] != 0 or header[1] != 0 or header[2] not in IDX_TYPES:
            raise ValueError(f"{path} is not an IDX file")
        ndim = header[3]
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        dtype = np.dtype(IDX_TYPES[header[2]])
        data = f.read()
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: header promises {expected} bytes of data, found {len(data)} (truncated?)")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an IDX file (gzipped when the name ends in .gz); used by tests and tools."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    code = codes[array.dtype.newbyteorder("=")]
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.dtype(IDX_TYPES[code])).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (images N x 28 x 28 x 1 uint8, labels int64), 'test': (...)}."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        out[split] = (images[..., None].astype(np.uint8), labels.astype(np.int64))
    return out
