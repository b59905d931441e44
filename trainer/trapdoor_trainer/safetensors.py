"""Reader and writer for the safetensors format, so exported models need no extra library.

Layout: an 8-byte little-endian header length, a JSON header
`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}` padded with
spaces to a multiple of 8 bytes, then the raw little-endian tensor bytes, back to back in
header order. Offsets are relative to the start of the data section.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Optional, Union

import numpy as np
import torch

PathLike = Union[str, "os.PathLike[str]"]

METADATA_KEY = "__metadata__"
# The reference implementation refuses headers above 100 MB; anything bigger is corruption.
MAX_HEADER_BYTES = 100_000_000

# safetensors dtype name -> (torch dtype, little-endian numpy dtype used for the bytes).
# BF16 has no numpy type: its bytes travel as int16 and are reinterpreted on the torch side.
_DTYPES: dict[str, tuple[torch.dtype, np.dtype]] = {
    "F32": (torch.float32, np.dtype("<f4")),
    "F16": (torch.float16, np.dtype("<f2")),
    "BF16": (torch.bfloat16, np.dtype("<i2")),
    "I64": (torch.int64, np.dtype("<i8")),
    "I32": (torch.int32, np.dtype("<i4")),
    "U8": (torch.uint8, np.dtype("u1")),
    "BOOL": (torch.bool, np.dtype("?")),
}
_NAME_BY_TORCH_DTYPE = {torch_dtype: name for name, (torch_dtype, _) in _DTYPES.items()}


def _tensor_bytes(tensor: torch.Tensor, np_dtype: np.dtype) -> bytes:
    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().astype(np_dtype, copy=False).tobytes()


def save_file(tensors: dict[str, torch.Tensor], path: PathLike, metadata: Optional[dict[str, str]] = None) -> None:
    """Write `tensors` (any device; copied to CPU) and string `metadata` to `path`."""
    header: dict[str, object] = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"metadata must map str to str, got {key!r}: {value!r}")
        header[METADATA_KEY] = dict(metadata)

    chunks: list[bytes] = []
    offset = 0
    for name, tensor in tensors.items():
        if not isinstance(name, str) or name == METADATA_KEY:
            raise ValueError(f"invalid tensor name {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
        dtype_name = _NAME_BY_TORCH_DTYPE.get(tensor.dtype)
        if dtype_name is None:
            raise ValueError(f"{name}: unsupported dtype {tensor.dtype}")
        data = _tensor_bytes(tensor, _DTYPES[dtype_name][1])
        header[name] = {"dtype": dtype_name, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)

    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Pad so the data section starts 8-byte aligned (8-byte length prefix + padded header).
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for chunk in chunks:
            f.write(chunk)


def _read_header(f, file_size: int) -> tuple[dict, int]:
    """Parse and sanity-check the header; returns it and the data section's start offset."""
    if file_size < 8:
        raise ValueError("not a safetensors file: shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", f.read(8))
    if header_len > MAX_HEADER_BYTES or header_len > file_size - 8:
        raise ValueError(f"safetensors header length {header_len} is not plausible for a {file_size}-byte file")
    raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"safetensors header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError("safetensors header must be a JSON object")
    return header, 8 + header_len


def _check_metadata(header: dict) -> dict[str, str]:
    metadata = header.get(METADATA_KEY, {})
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("safetensors __metadata__ must map strings to strings")
    return dict(metadata)


def _check_entries(header: dict, data_size: int) -> list[tuple[str, str, list[int], int, int]]:
    """Validate every tensor entry; returns (name, dtype, shape, begin, end) sorted by offset."""
    entries = []
    for name, info in header.items():
        if name == METADATA_KEY:
            continue
        if not isinstance(info, dict):
            raise ValueError(f"{name}: tensor entry must be an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _DTYPES:
            raise ValueError(f"{name}: unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ValueError(f"{name}: invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise ValueError(f"{name}: invalid data_offsets {offsets!r}")
        begin, end = offsets
        expected = math.prod(shape) * _DTYPES[dtype][1].itemsize
        if begin < 0 or end < begin or end - begin != expected:
            raise ValueError(f"{name}: data_offsets {offsets} do not hold {expected} bytes for {dtype} {shape}")
        entries.append((name, dtype, shape, begin, end))

    # Tensors must tile the data section exactly: no gaps, overlaps or trailing bytes.
    position = 0
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != position:
            raise ValueError(f"{name}: data_offsets start at {begin}, expected {position} (gap or overlap)")
        position = end
    if position != data_size:
        raise ValueError(f"tensor data covers {position} bytes but the file holds {data_size}")
    return entries


def load_file(path: PathLike) -> dict[str, torch.Tensor]:
    """Read every tensor (on CPU, in header order). Raises ValueError on a malformed file."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, data_start = _read_header(f, file_size)
        _check_metadata(header)
        entries = _check_entries(header, file_size - data_start)
        data = f.read()
    if len(data) != file_size - data_start:
        raise ValueError("safetensors file changed while being read")

    tensors: dict[str, torch.Tensor] = {}
    for name, dtype, shape, begin, end in entries:
        torch_dtype, np_dtype = _DTYPES[dtype]
        array = np.frombuffer(data, dtype=np_dtype, count=(end - begin) // np_dtype.itemsize, offset=begin)
        # Native byte order + a private copy: torch.from_numpy needs a writable native array.
        array = array.astype(np_dtype.newbyteorder("="), copy=True).reshape(shape)
        tensor = torch.from_numpy(array)
        if torch_dtype == torch.bfloat16:
            tensor = tensor.view(torch.bfloat16)
        tensors[name] = tensor
    return tensors


def read_metadata(path: PathLike) -> dict[str, str]:
    """The `__metadata__` map, reading only the header."""
    with open(path, "rb") as f:
        header, _ = _read_header(f, os.path.getsize(path))
    return _check_metadata(header)
