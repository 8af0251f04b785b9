#!/usr/bin/python3
"""Independent reference files for mscl's .npy and safetensors I/O tests.

The C++ tests (tests/unit/io_npy_test.cpp, tests/unit/io_safetensors_test.cpp) call this script so
that the C++ reader/writer is checked against code that shares nothing with it:

  make_io_fixtures.py npy DIR
      1. if DIR holds mscl_*.npy files written by mscl, load them with numpy, compare dtype, shape,
         values with the formulas below, and compare the bytes with numpy.save of the same array;
      2. write numpy's own files np_*.npy (versions 1.0, 2.0, 3.0, and files mscl must reject).
      Exit 77 when numpy is not importable (the C++ test then skips with a message).

  make_io_fixtures.py safetensors DIR
      Write ref.safetensors and ref_mixed.safetensors with a writer built from the Python standard
      library only (struct + json), following the reference rule (entries ordered by decreasing
      dtype rank, then name; __metadata__ first; header padded with spaces to 8 bytes), plus
      expected.json holding the decoded values the C++ reader must produce.

  make_io_fixtures.py check-safetensors FILE
      Parse FILE (written by mscl) with the standard library and check it against the ref.safetensors
      tensors (values, dtypes, shapes, metadata, ordering, padding).

Exit status: 0 ok, 1 a check failed (details on stderr), 2 usage, 77 a needed module is missing.
The value formulas are duplicated in the C++ tests on purpose; each side computes them on its own.
"""
import json
import os
import struct
import sys

# ----------------------------------------------------------------------------- shared formulas
def f4_values(n):  # rounded to float32 after double arithmetic; no multiply-add (C++ may fuse it)
    return [i / 10.0 - 1.0 for i in range(n)]

def f8_values(n):
    return [i / 3.0 - 2.5 for i in range(n)]

def i8_values(n):
    return [i * 1000003 - 2 ** 40 for i in range(n)]

NPY_ARRAYS = {
    # name: (dtype, shape, formula)
    "f4": ("<f4", (2, 3, 4), f4_values),
    "f8": ("<f8", (5,), f8_values),
    "i8": ("<i8", (3, 2), i8_values),
    "scalar": ("<f8", (), lambda n: [-0.1]),
    "empty": ("<f4", (0, 3), f4_values),
}


def prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def fail(msg):
    print("make_io_fixtures: " + msg, file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------- npy
def run_npy(d):
    try:
        import numpy as np
    except Exception as e:  # pragma: no cover - depends on the machine
        print("make_io_fixtures: numpy is not importable (%s)" % e, file=sys.stderr)
        return 77
    import io

    status = 0
    for name, (dtype, shape, formula) in NPY_ARRAYS.items():
        expected = np.array(formula(prod(shape)), dtype=np.float64 if dtype != "<i8" else np.int64)
        expected = expected.astype(np.dtype(dtype)).reshape(shape)
        path = os.path.join(d, "mscl_%s.npy" % name)
        if os.path.exists(path):
            got = np.load(path, allow_pickle=False)
            if got.dtype != np.dtype(dtype):
                status = fail("%s: dtype %s, expected %s" % (path, got.dtype.str, dtype))
            elif got.shape != shape:
                status = fail("%s: shape %s, expected %s" % (path, got.shape, shape))
            elif not np.array_equal(got, expected):
                status = fail("%s: values differ from the formula: %r vs %r" % (path, got.ravel()[:8], expected.ravel()[:8]))
            buf = io.BytesIO()
            np.save(buf, expected)
            with open(path, "rb") as f:
                mine = f.read()
            if mine != buf.getvalue():
                status = fail("%s: bytes differ from numpy.save (%d vs %d bytes; header %r vs %r)"
                              % (path, len(mine), len(buf.getvalue()), mine[:128], buf.getvalue()[:128]))
        np.save(os.path.join(d, "np_%s.npy" % name), expected)

    f4 = np.array(f4_values(24), dtype=np.float32).reshape(2, 3, 4)
    f8 = np.array(f8_values(6), dtype=np.float64).reshape(3, 2)
    with open(os.path.join(d, "np_v2.npy"), "wb") as f:
        np.lib.format.write_array(f, f4, version=(2, 0))
    with open(os.path.join(d, "np_v3.npy"), "wb") as f:
        np.lib.format.write_array(f, f8, version=(3, 0))
    np.save(os.path.join(d, "np_fortran.npy"), np.asfortranarray(f8))        # must be rejected
    np.save(os.path.join(d, "np_bigendian.npy"), f4.astype(">f4"))           # unsupported dtype
    np.save(os.path.join(d, "np_i4.npy"), np.arange(6, dtype="<i4"))         # unsupported dtype
    return status


# ----------------------------------------------------------------------------- safetensors
# Reference Dtype enum order (increasing alignment); the writer sorts by decreasing rank.
ST_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
            "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]
ST_PACK = {"F32": "f", "F64": "d", "I64": "q", "F16": "e", "I32": "i", "U8": "B", "I8": "b",
           "I16": "h", "U16": "H", "U32": "I", "U64": "Q", "BOOL": "?"}
ST_SIZE = {"F32": 4, "F64": 8, "I64": 8, "F16": 2, "BF16": 2, "I32": 4, "U8": 1, "I8": 1, "I16": 2,
           "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E5M2": 1, "F8_E4M3": 1}


def st_encode(dtype, values):
    if dtype == "BF16":  # values chosen exactly representable: take the top half of the float32
        return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in values)
    if dtype.startswith("F8_"):  # raw bytes given directly
        return bytes(values)
    return struct.pack("<%d%s" % (len(values), ST_PACK[dtype]), *values)


def st_serialize(tensors, metadata):
    """tensors: {name: (dtype, shape, raw_bytes)} -> file bytes, following the reference rule."""
    names = sorted(tensors, key=lambda n: (-ST_ORDER.index(tensors[n][0]), n.encode("utf-8")))
    header = {}
    if metadata:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    offset = 0
    for n in names:
        dtype, shape, raw = tensors[n]
        header[n] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(tensors[n][2] for n in names)


def f32_round(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def ref_tensors():
    """Tensors the C++ writer can also produce (F32 / F64 / I64): name -> (dtype, shape, values)."""
    return {
        "stem.0.weight": ("F32", [2, 3], [f32_round(v) for v in f4_values(6)]),
        "stem.1.running_var": ("F64", [4], f8_values(4)),
        "stem.1.num_batches_tracked": ("I64", [], [7]),
        "layer1.0.idx": ("I64", [3], i8_values(3)),
        "fc.bias": ("F32", [], [f32_round(-0.1)]),
        "fc.empty": ("F32", [0, 2], []),
        "a\"quote\\back": ("F64", [1], [1.0]),
    }


REF_METADATA = {"format": "pt", "arch": "r3d_18", "layout": "NCTHW"}


def mixed_tensors():
    """Every decodable dtype, with the values the reader must produce."""
    return {
        # name: (dtype, shape, stored values or bytes, expected decoded values)
        "h": ("F16", [2, 3], [-2.5, 0.0, 1.5, 65504.0, 2.0 ** -14, 2.0 ** -24],
              [-2.5, 0.0, 1.5, 65504.0, 2.0 ** -14, 2.0 ** -24]),
        "bf": ("BF16", [4], [1.0, -3.5, 256.0, 2.0 ** -126], [1.0, -3.5, 256.0, 2.0 ** -126]),
        "i32": ("I32", [3], [-2147483648, 0, 2147483647], [-2147483648, 0, 2147483647]),
        "u8": ("U8", [2, 2], [0, 1, 128, 255], [0, 1, 128, 255]),
        "i8": ("I8", [2], [-128, 127], [-128, 127]),
        "i16": ("I16", [2], [-32768, 32767], [-32768, 32767]),
        "u16": ("U16", [1], [65535], [65535]),
        "u32": ("U32", [1], [4294967295], [4294967295]),
        "u64": ("U64", [1], [12345678901], [12345678901]),
        "b": ("BOOL", [3], [True, False, True], [1, 0, 1]),
        # E4M3fn: 0x38 = 1.0, 0x7e = 448 (largest), 0x01 = 2^-9 (smallest subnormal), 0xb8 = -1.0
        "e4m3": ("F8_E4M3", [4], [0x38, 0x7E, 0x01, 0xB8], [1.0, 448.0, 2.0 ** -9, -1.0]),
        # E5M2: 0x3c = 1.0, 0x7b = 57344 (largest), 0x01 = 2^-16, 0xc0 = -2.0
        "e5m2": ("F8_E5M2", [4], [0x3C, 0x7B, 0x01, 0xC0], [1.0, 57344.0, 2.0 ** -16, -2.0]),
        "i64": ("I64", [2], [-(2 ** 62), 2 ** 53], [-(2 ** 62), 2 ** 53]),
    }


def run_safetensors(d):
    ref = ref_tensors()
    blob = st_serialize({n: (t, s, st_encode(t, v)) for n, (t, s, v) in ref.items()}, REF_METADATA)
    with open(os.path.join(d, "ref.safetensors"), "wb") as f:
        f.write(blob)
    mixed = mixed_tensors()
    blob = st_serialize({n: (t, s, st_encode(t, v)) for n, (t, s, v, _) in mixed.items()}, {"source": "mixed"})
    with open(os.path.join(d, "ref_mixed.safetensors"), "wb") as f:
        f.write(blob)
    expected = {n: {"dtype": t, "shape": s, "values": e} for n, (t, s, _, e) in mixed.items()}
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f)
    return 0


def check_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        return fail("%s: shorter than 8 bytes" % path)
    (n,) = struct.unpack("<Q", data[:8])
    if n % 8 != 0:
        return fail("%s: header length %d is not a multiple of 8" % (path, n))
    text = data[8:8 + n].decode("utf-8")
    if text.rstrip(" ") != text.rstrip() or not text.startswith("{"):
        return fail("%s: header must start with '{' and be padded with spaces only" % path)
    pairs = json.loads(text, object_pairs_hook=lambda p: p)
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        return fail("%s: duplicate keys" % path)
    header = dict(pairs)
    body = data[8 + n:]
    meta = dict(header.pop("__metadata__", []))
    if meta != REF_METADATA:
        return fail("%s: metadata %r, expected %r" % (path, meta, REF_METADATA))
    if keys[0] != "__metadata__":
        return fail("%s: __metadata__ is not the first key" % path)
    names = keys[1:]
    want_order = sorted(names, key=lambda k: (-ST_ORDER.index(dict(header[k])["dtype"]), k.encode("utf-8")))
    if names != want_order:
        return fail("%s: entry order %r, expected %r" % (path, names, want_order))
    ref = ref_tensors()
    if sorted(names) != sorted(ref):
        return fail("%s: names %r, expected %r" % (path, sorted(names), sorted(ref)))
    cursor = 0
    for name in names:
        info = dict(header[name])
        dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        rdtype, rshape, rvalues = ref[name]
        if (dtype, shape) != (rdtype, rshape):
            return fail("%s: %s is %s%r, expected %s%r" % (path, name, dtype, shape, rdtype, rshape))
        if b != cursor or e - b != prod(shape) * ST_SIZE[dtype]:
            return fail("%s: %s has offsets [%d, %d), expected to start at %d" % (path, name, b, e, cursor))
        cursor = e
        values = list(struct.unpack("<%d%s" % (prod(shape), ST_PACK[dtype]), body[b:e]))
        if values != rvalues:
            return fail("%s: %s values %r, expected %r" % (path, name, values, rvalues))
    if cursor != len(body):
        return fail("%s: data section has %d bytes, tensors cover %d" % (path, len(body), cursor))
    return 0


def main(argv):
    if len(argv) != 3 or argv[1] not in ("npy", "safetensors", "check-safetensors"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "npy":
        return run_npy(argv[2])
    if argv[1] == "safetensors":
        return run_safetensors(argv[2])
    return check_safetensors(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
