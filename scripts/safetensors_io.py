"""Minimal safetensors reader/writer using only the standard library and numpy.

Why: the parity fixtures for the C++ tests must be writable on a stock Debian 12 box, which has
torch and numpy but not the `safetensors` package. The format (ECOSYSTEM.md §4.1) is small enough
to implement directly:

    bytes 0..7   : u64 little-endian N = length of the JSON header
    bytes 8..8+N : UTF-8 JSON object {name: {"dtype", "shape", "data_offsets": [begin, end)}, ...,
                   optional "__metadata__": {str: str}}, padded with spaces so that 8 + N is a
                   multiple of 8 (the data buffer then starts 8-byte aligned)
    rest         : tensor bytes, little-endian, C order; offsets are relative to the buffer start and
                   must cover it exactly (no holes, no overlaps)

Writer choices (match the reference writer so files are byte-comparable in spirit):
  * JSON keys are emitted sorted by name (``__metadata__`` first);
  * the data buffer is laid out by decreasing dtype size, then by name, so every 8-byte tensor
    (F64/I64) starts 8-byte aligned even when an odd-sized F32 tensor precedes it by name;
  * dtypes supported: F32, F64, I64 (plus I32, U8, BOOL for completeness).

The reader validates everything the spec lists and raises ``SafetensorsError`` with the file name
and the offending entry.
"""

import json
import struct

import numpy as np

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_FROM_NUMPY = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """Malformed safetensors file or unsupported tensor passed to the writer."""


def _dtype_name(arr, name):
    key = arr.dtype.newbyteorder("=")
    if key not in _FROM_NUMPY:
        raise SafetensorsError(
            f"write_safetensors: tensor '{name}' has dtype {arr.dtype}, expected one of "
            f"{sorted(_DTYPES)} (float32/float64/int64/int32/uint8/bool)")
    return _FROM_NUMPY[key]


def write_safetensors(path, tensors, metadata=None):
    """Write ``tensors`` (name -> numpy array or torch tensor) to ``path``.

    Torch tensors are detached and moved to CPU; arrays are converted to little-endian C order.
    ``metadata`` is an optional str->str mapping stored under ``__metadata__``.
    """
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise SafetensorsError(f"write_safetensors: invalid tensor name {name!r}")
        if hasattr(value, "detach"):  # torch.Tensor without importing torch here
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        dt = _dtype_name(arr, name)
        # np.array(order="C") rather than np.ascontiguousarray: the latter turns rank-0 into shape [1].
        arrays[name] = np.array(arr, dtype=_DTYPES[dt], order="C")

    # Data layout: decreasing itemsize, then name (keeps 8-byte types aligned).
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    offsets = {}
    pos = 0
    for name in order:
        nbytes = arrays[name].nbytes
        offsets[name] = (pos, pos + nbytes)
        pos += nbytes

    header = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError("write_safetensors: __metadata__ must map str to str")
        header["__metadata__"] = dict(sorted(metadata.items()))
    for name in sorted(arrays):
        arr = arrays[name]
        header[name] = {
            "dtype": _dtype_name(arr, name),
            "shape": [int(d) for d in arr.shape],
            "data_offsets": [offsets[name][0], offsets[name][1]],
        }
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * ((-len(blob)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in order:
            f.write(arrays[name].tobytes(order="C"))


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise SafetensorsError(f"duplicate key {k!r} in header")
        out[k] = v
    return out


def read_safetensors(path, return_layout=False):
    """Read and validate ``path``; returns (tensors: name -> np.ndarray, metadata: dict).

    With ``return_layout=True`` also returns a dict name -> (dtype, shape, begin, end) and the
    header length, for tests of the on-disk layout.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise SafetensorsError(f"read_safetensors: {path}: file has {len(raw)} bytes, expected >= 8")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _MAX_HEADER or 8 + n > len(raw):
        raise SafetensorsError(
            f"read_safetensors: {path}: header length {n} invalid for file of {len(raw)} bytes")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"read_safetensors: {path}: header is not valid JSON: {e}") from e
    except SafetensorsError as e:
        raise SafetensorsError(f"read_safetensors: {path}: {e}") from e
    if not isinstance(header, dict):
        raise SafetensorsError(f"read_safetensors: {path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"read_safetensors: {path}: __metadata__ must map str to str")

    buf = memoryview(raw)[8 + n:]
    spans = []
    tensors = {}
    layout = {}
    for name, info in header.items():
        where = f"read_safetensors: {path}: tensor '{name}'"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{where}: expected keys dtype/shape/data_offsets, got {info!r}")
        dt = info["dtype"]
        if dt not in _DTYPES:
            raise SafetensorsError(f"{where}: unsupported dtype {dt!r}")
        shape = info["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise SafetensorsError(f"{where}: bad shape {shape!r}")
        off = info["data_offsets"]
        if (not isinstance(off, list) or len(off) != 2
                or not all(isinstance(o, int) for o in off) or not 0 <= off[0] <= off[1] <= len(buf)):
            raise SafetensorsError(f"{where}: bad data_offsets {off!r} (buffer has {len(buf)} bytes)")
        numel = 1
        for d in shape:
            numel *= d
        if off[1] - off[0] != numel * _DTYPES[dt].itemsize:
            raise SafetensorsError(
                f"{where}: data_offsets span {off[1] - off[0]} bytes, expected "
                f"{numel * _DTYPES[dt].itemsize} for {dt}{shape}")
        spans.append((off[0], off[1], name))
        arr = np.frombuffer(buf[off[0]:off[1]], dtype=_DTYPES[dt]).reshape(shape)
        tensors[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)
        layout[name] = (dt, tuple(shape), off[0], off[1])
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            kind = "hole" if begin > pos else "overlap"
            raise SafetensorsError(
                f"read_safetensors: {path}: {kind} in data buffer at byte {pos} (tensor '{name}' starts at {begin})")
        pos = end
    if pos != len(buf):
        raise SafetensorsError(
            f"read_safetensors: {path}: tensors cover {pos} bytes but the buffer has {len(buf)}")
    if return_layout:
        return tensors, metadata, layout, n
    return tensors, metadata
