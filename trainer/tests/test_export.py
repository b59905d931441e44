"""Artifacts: the safetensors codec, export_model / load_exported_model, PNG writer, previews."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from trapdoor_trainer.export import (
    ArtifactRecord,
    export_model,
    export_onnx,
    load_exported_model,
    sha256_file,
    write_reconstruction_preview,
)
from trapdoor_trainer.models import create_model
from trapdoor_trainer.png import PNG_SIGNATURE, encode_png, image_grid, write_png
from trapdoor_trainer.safetensors import load_file, read_metadata, save_file

# ---------------------------------------------------------------- safetensors


def _sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).to(torch.bfloat16),
        "i64": torch.tensor([-(2**40), 0, 7], dtype=torch.int64),
        "i32": torch.tensor([[-5, 6], [2**30, -(2**31)]], dtype=torch.int32),
        "u8": torch.arange(0, 256, dtype=torch.uint8).reshape(16, 16),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 4),
        "strided": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),  # non-contiguous on purpose
    }


def _read_header(path: Path) -> tuple[int, dict]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return n, json.loads(raw[8 : 8 + n])


def test_safetensors_round_trip_every_dtype(tmp_path: Path) -> None:
    tensors = _sample_tensors()
    path = tmp_path / "t.safetensors"
    save_file(tensors, path, metadata={"format": "pt", "note": "ünïcode"})
    loaded = load_file(path)
    assert list(loaded) == list(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor), name
    assert read_metadata(path) == {"format": "pt", "note": "ünïcode"}


def test_safetensors_header_layout(tmp_path: Path) -> None:
    tensors = {"a": torch.ones(3, dtype=torch.float32), "b": torch.ones(1, dtype=torch.uint8), "c": torch.ones(2, 2, dtype=torch.int64)}
    path = tmp_path / "t.safetensors"
    save_file(tensors, path)
    n, header = _read_header(path)
    assert n % 8 == 0
    assert "__metadata__" not in header
    assert header["a"] == {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}
    assert header["b"] == {"dtype": "U8", "shape": [1], "data_offsets": [12, 13]}
    assert header["c"] == {"dtype": "I64", "shape": [2, 2], "data_offsets": [13, 45]}
    assert path.stat().st_size == 8 + n + 45
    data = path.read_bytes()[8 + n :]
    assert np.frombuffer(data[13:45], dtype="<i8").tolist() == [1, 1, 1, 1]
    assert read_metadata(path) == {}


def _rewrite_header(path: Path, header: dict, extra: bytes = b"") -> None:
    n, _ = _read_header(path)
    data = path.read_bytes()[8 + n :]
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    path.write_bytes(struct.pack("<Q", len(body)) + body + data + extra)


@pytest.mark.parametrize(
    "corrupt",
    ["truncated", "huge_header_len", "bad_json", "gap", "overlap", "past_end", "wrong_size", "trailing", "bad_dtype", "bad_metadata"],
)
def test_safetensors_rejects_corrupt_files(tmp_path: Path, corrupt: str) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.ones(4), "b": torch.ones(2)}, path, metadata={"k": "v"})
    _, header = _read_header(path)
    raw = path.read_bytes()
    if corrupt == "truncated":
        path.write_bytes(raw[:-3])
    elif corrupt == "huge_header_len":
        path.write_bytes(struct.pack("<Q", 2**40) + raw[8:])
    elif corrupt == "bad_json":
        path.write_bytes(raw[:8] + b"{" * 8 + raw[16:])
    elif corrupt == "gap":
        header["b"]["data_offsets"] = [17, 25]
        _rewrite_header(path, header, extra=b"\0")
    elif corrupt == "overlap":
        header["b"]["data_offsets"] = [8, 16]
        _rewrite_header(path, header)
    elif corrupt == "past_end":
        header["b"]["data_offsets"] = [16, 24]
        header["a"]["data_offsets"] = [0, 16]
        header["b"]["shape"] = [2]
        path.write_bytes(raw[:-4])  # data section now 20 bytes, b claims up to 24
        _rewrite_header(path, header)
    elif corrupt == "wrong_size":
        header["b"]["shape"] = [3]
        _rewrite_header(path, header)
    elif corrupt == "trailing":
        _rewrite_header(path, header, extra=b"\0" * 4)
    elif corrupt == "bad_dtype":
        header["a"]["dtype"] = "F128"
        _rewrite_header(path, header)
    elif corrupt == "bad_metadata":
        header["__metadata__"] = {"k": 1}
        _rewrite_header(path, header)
    with pytest.raises(ValueError):
        load_file(path)


def test_safetensors_save_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_file({"c": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "x")
    with pytest.raises(TypeError):
        save_file({"a": torch.zeros(2)}, tmp_path / "x", metadata={"k": 1})  # type: ignore[dict-item]


# ---------------------------------------------------------------- export

# (architecture, C, H, W); 30 x 30 is not a multiple of the stem's stride, so it pads in-graph.
EXPORT_CASES = [
    ("small-cnn", 1, 28, 28),
    ("small-cnn", 1, 30, 30),
    ("small-cnn", 3, 32, 32),
    ("wrn16-1", 1, 28, 28),
    ("wrn16-1", 1, 30, 30),
    ("wrn16-1", 3, 32, 32),
]


def _trained_looking_model(architecture: str, c: int, h: int, w: int):
    torch.manual_seed(0)
    model = create_model(architecture, c, 10, (h, w), with_decoder=True)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # move BN running stats off their defaults
            model(torch.rand(8, c, h, w))
    return model


def _config(architecture: str, c: int, h: int, w: int) -> dict:
    return {"architecture": architecture, "inChannels": c, "numClasses": 10, "height": h, "width": w, "stemEndBlock": 5, "faithfulWrn": True}


@pytest.mark.parametrize("architecture,c,h,w", EXPORT_CASES)
def test_export_model_round_trip(tmp_path: Path, architecture: str, c: int, h: int, w: int) -> None:
    model = _trained_looking_model(architecture, c, h, w)
    decoder_keys = {k for k in model.state_dict() if k.startswith("decoder.")}
    assert decoder_keys
    model.drop_decoder()
    model.train()
    records = export_model(model, tmp_path, config=_config(architecture, c, h, w), metadata={"seed": 0}, image_shape=(c, h, w))

    assert model.training, "export must leave the training flag as it found it"
    assert [(r.kind, r.format, r.path) for r in records] == [
        ("model", "safetensors", "model.safetensors"),
        ("config", "json", "config.json"),
        ("metadata", "json", "metadata.json"),
        ("onnx", "onnx", "model.onnx"),
    ]
    for record in records:
        path = tmp_path / record.path
        assert path.is_file()
        assert record.sha256 == sha256_file(path)
        assert record.size_bytes == path.stat().st_size

    tensors = load_file(tmp_path / "model.safetensors")
    assert not any(k.startswith("decoder.") for k in tensors)
    assert set(tensors) == set(model.state_dict())
    assert any(k.endswith("running_var") for k in tensors)
    assert read_metadata(tmp_path / "model.safetensors") == {"format": "pt", "architecture": architecture}
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == architecture
    assert json.loads((tmp_path / "metadata.json").read_text()) == {"seed": 0}
    assert (tmp_path / "model.onnx").read_bytes()[:1] == b"\x08"  # protobuf field 1 (ir_version), varint

    model.eval()
    rebuilt = load_exported_model(tmp_path)
    assert not rebuilt.training and rebuilt.decoder is None
    x = torch.rand(4, c, h, w)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_export_model_refuses_a_decoder(tmp_path: Path) -> None:
    model = create_model("small-cnn", 1, 10, (28, 28), with_decoder=True)
    with pytest.raises(ValueError, match="decoder"):
        export_model(model, tmp_path, config=_config("small-cnn", 1, 28, 28), metadata={}, image_shape=(1, 28, 28))


def test_export_onnx_keeps_submodule_flags_and_rng(tmp_path: Path) -> None:
    model = create_model("small-cnn", 1, 10, (28, 28), with_decoder=False)
    model.train()
    model.stem.eval()  # e.g. a frozen stem during T&R stage 2
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    export_onnx(model, tmp_path / "m.onnx", (1, 28, 28))
    assert torch.equal(torch.rand(1), expected_next), "export must not consume the global RNG"
    assert model.training and model.head.training and not model.stem.training
    assert all(not m.training for m in model.stem.modules())


def test_artifact_record_event_shape() -> None:
    record = ArtifactRecord("model", "safetensors", "model.safetensors", "ab" * 32, 10)
    assert record.to_event() == {"kind": "model", "format": "safetensors", "path": "model.safetensors", "sha256": "ab" * 32, "sizeBytes": 10}


# ---------------------------------------------------------------- PNG


def _decode_png(data: bytes) -> tuple[int, int, int, np.ndarray]:
    """Minimal decoder for what encode_png writes: returns width, height, colour type, pixels."""
    assert data[:8] == PNG_SIGNATURE
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF
        chunks.append((kind, payload))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8
    channels = {0: 1, 2: 3}[color]
    raw = zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()  # filter type None
    return width, height, color, rows[:, 1:].reshape(height, width, channels)


@pytest.mark.parametrize("shape", [(7, 5), (7, 5, 1), (4, 9, 3)])
def test_png_round_trip(tmp_path: Path, shape: tuple) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    write_png(tmp_path / "x.png", image)
    width, height, color, pixels = _decode_png((tmp_path / "x.png").read_bytes())
    assert (width, height) == (shape[1], shape[0])
    assert color == (2 if len(shape) == 3 and shape[2] == 3 else 0)
    assert np.array_equal(pixels.reshape(shape), image)


def test_png_rejects_bad_images() -> None:
    with pytest.raises(TypeError):
        encode_png(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2, 4), dtype=np.uint8))


def test_image_grid_layout() -> None:
    a = np.full((3, 4), 10, dtype=np.uint8)
    b = np.full((3, 4, 3), 20, dtype=np.uint8)
    grid = image_grid([[a, b], [a]], pad=2)
    assert grid.shape == (2 + 2 * (3 + 2), 2 + 2 * (4 + 2), 3)
    assert (grid[2:5, 2:6] == 10).all()
    assert (grid[2:5, 8:12] == 20).all()
    assert (grid[7:10, 8:12] == 255).all()  # missing cell stays background
    assert (grid[0:2] == 255).all()


def test_reconstruction_preview(tmp_path: Path) -> None:
    n, c, h, w = 10, 3, 32, 32
    images = torch.rand(n, c, h, w)
    path = tmp_path / "preview.png"
    write_reconstruction_preview(path, images, images.flip(0), images * 0.5, images.clamp(0.2, 0.8), n=8)
    width, height, color, pixels = _decode_png(path.read_bytes())
    scale, pad = 2, 2  # 32 px tiles are doubled to reach 64 px
    assert (width, height, color) == (pad + 8 * (w * scale + pad), pad + 4 * (h * scale + pad), 2)
    expected = (images[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(pixels[pad : pad + h * scale : scale, pad : pad + w * scale : scale], expected)

    gray = tmp_path / "gray.png"
    small = torch.rand(3, 1, 28, 28)
    write_reconstruction_preview(gray, small, small)
    width, height, color, _ = _decode_png(gray.read_bytes())
    assert (width, height, color) == (2 + 3 * (28 * 3 + 2), 2 + 2 * (28 * 3 + 2), 0)
