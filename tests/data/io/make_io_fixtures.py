#!/usr/bin/python3
"""Writes the fixtures of tests/test_io.cpp into this script's folder, with
numpy only (results were made with numpy 1.24.2):

    /usr/bin/python3 tests/data/io/make_io_fixtures.py

- mixed.safetensors: one tensor of each dtype the reader converts (F32, F16,
  BF16, F64) plus I64, an empty and a 0-d tensor, and a 1-byte U8 tensor
  first so that every other tensor starts at an odd address. The values
  cover the special cases: half subnormals, +-0, +-inf, NaN, the extremes;
  float64 values past the float32 range. The safetensors bytes are written
  by hand below (the format is 8 + n bytes of JSON header + raw data).
  mixed.<name>.npy: numpy's float32 value of each floating tensor
  (`astype(np.float32)`; bfloat16, which numpy lacks, is the upper half of a
  float32, so its value is those bits shifted up).
- sharded/: a Mamba config.json, model.safetensors.index.json and two shards;
  tensor k (in index order) holds arange(numel) + 100 k, stored as F32 or F16
  (exact in both: all below 2048, or multiples of 1/4 below 512).
- npy_*.npy: numpy.save of small arrays whose values are arange(n) (scaled
  for floats, see NPY below), including numpy's version 2.0, Fortran order,
  big-endian and float16 files, which the reader must accept or reject.
- tiny_expected.json: for every tensor of ../mamba-tiny and ../mamba2-tiny
  and every .npy beside them: shape, dtype, the float64 sums of its values
  and of their magnitudes, and its first and last value, as numpy reads them.
Numbers in JSON are Python reprs (shortest round-trip).
"""

import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw bytes), in file order."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # as safetensors pads its header
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def bfloat16_bits(x):
    """float32 -> bfloat16 bits, rounded to nearest even (NaN kept quiet)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(x, np.float32))
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


def mixed():
    rng = np.random.default_rng(20240601)
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    half_bits = np.array(
        [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0200, 0x0400, 0x3C00,
         0xBC00, 0x3555, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0xFE01,
         0x7C01, 0x1234, 0x8ABC, 0x4248, 0x5640, 0x0155, 0x3BFF, 0xC000],
        np.uint16)
    f16 = np.concatenate([half_bits.view(np.float16),
                          rng.standard_normal(4).astype(np.float16)]).reshape(4, 7)
    bf16_src = np.concatenate([
        np.array([0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, np.nan, 3.0e38,
                  1e-40, -1e-39, 65504.0, 1.0 / 3.0], np.float32),
        rng.standard_normal(12).astype(np.float32)]).reshape(2, 3, 4)
    bf16 = bfloat16_bits(bf16_src)
    fmax = float(np.finfo(np.float32).max)
    f64 = np.array([np.pi, -1e-310, 1e39, -1e39, fmax, np.nextafter(fmax, np.inf),
                    fmax + 2.0 ** 103, np.nextafter(fmax + 2.0 ** 103, 0), np.nan,
                    -np.inf, 1e-46, 0.1], np.float64)
    tensors = [
        ("odd", "U8", (1,), b"\x07"),  # shifts everything after it off alignment
        ("f32", "F32", f32.shape, f32.tobytes()),
        ("f16", "F16", f16.shape, f16.tobytes()),
        ("bf16", "BF16", bf16.shape, bf16.tobytes()),
        ("f64", "F64", f64.shape, f64.tobytes()),
        ("i64", "I64", (3,), np.array([-1, 0, 2**40], np.int64).tobytes()),
        ("empty", "F32", (0, 4), b""),
        ("scalar", "F32", (), np.float32(-7.25).tobytes()),
    ]
    write_safetensors(os.path.join(HERE, "mixed.safetensors"), tensors,
                      {"format": "pt", "note": "ssm io fixture"})
    with np.errstate(over="ignore"):
        expected = {
            "f32": f32, "f16": f16.astype(np.float32),
            "bf16": (bf16.astype(np.uint32) << 16).view(np.float32),
            "f64": f64.astype(np.float32), "scalar": np.float32(-7.25),
        }
    for name, value in expected.items():
        np.save(os.path.join(HERE, f"mixed.{name}.npy"), np.asarray(value, np.float32))


def sharded():
    folder = os.path.join(HERE, "sharded")
    os.makedirs(folder, exist_ok=True)
    config = {"architectures": ["MambaForCausalLM"], "model_type": "mamba",
              "hidden_size": 8, "intermediate_size": 16, "state_size": 4,
              "num_hidden_layers": 1, "vocab_size": 10, "conv_kernel": 3,
              "time_step_rank": "auto", "use_bias": False, "use_conv_bias": True,
              "layer_norm_epsilon": 1e-6, "tie_word_embeddings": True}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shards = {
        "model-00001-of-00002.safetensors": [
            ("backbone.embeddings.weight", "F32", (10, 8)),
            ("backbone.layers.0.mixer.A_log", "F16", (16, 4)),
        ],
        "model-00002-of-00002.safetensors": [
            ("backbone.layers.0.mixer.conv1d.weight", "F32", (16, 1, 3)),
            ("backbone.norm_f.weight", "F16", (8,)),
        ],
    }
    weight_map, k = {}, 0
    for shard, entries in shards.items():
        tensors = []
        for name, dtype, shape in entries:
            values = np.arange(np.prod(shape), dtype=np.float64) + 100 * k
            np_type = np.float32 if dtype == "F32" else np.float16
            tensors.append((name, dtype, shape, values.astype(np_type).tobytes()))
            weight_map[name] = shard
            k += 1
        # A tensor the index does not list: present in the file, ignored.
        tensors.append(("unlisted", "F32", (1,), np.float32(1).tobytes()))
        write_safetensors(os.path.join(folder, shard), tensors, {"format": "pt"})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)


# name: (array, numpy.save options)
NPY = {
    "npy_f4": np.arange(6, dtype=np.float32).reshape(2, 3) * 0.25,
    "npy_f4_1d": np.arange(7, dtype=np.float32) - 3,
    "npy_f4_0d": np.array(2.5, np.float32),
    "npy_f8": np.arange(5, dtype=np.float64) / 3,
    "npy_i8": np.arange(12, dtype=np.int64).reshape(2, 2, 3) - 5,
    "npy_i4": np.arange(4, dtype=np.int32) * 1000,
    "npy_i8_empty": np.zeros((0, 3), np.int64),
    "npy_fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
    "npy_big": np.arange(3, dtype=">f4"),
    "npy_f2": np.arange(3, dtype=np.float16),
}


def npys():
    for name, a in NPY.items():
        np.save(os.path.join(HERE, name + ".npy"), a)
    with open(os.path.join(HERE, "npy_v2.npy"), "wb") as f:  # version 2.0 header
        a = np.arange(6, dtype=np.float32).reshape(3, 2) * 0.25
        np.lib.format.write_array(f, a, version=(2, 0))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    types = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        a = np.frombuffer(raw[8 + n + b:8 + n + end], types[e["dtype"]])
        out[name] = (e["dtype"], a.reshape(e["shape"]))
    return out


def summary(dtype, a):
    flat = a.reshape(-1)
    return {"dtype": dtype, "shape": list(a.shape),
            "sum": float(flat.astype(np.float64).sum()),
            "abs_sum": float(np.abs(flat.astype(np.float64)).sum()),
            "first": flat[0].item() if flat.size else None,
            "last": flat[-1].item() if flat.size else None}


def tiny_expected():
    out = {}
    for case in ("mamba-tiny", "mamba2-tiny"):
        folder = os.path.join(DATA, case)
        tensors = {n: summary(d, a) for n, (d, a) in
                   read_safetensors(os.path.join(folder, "model.safetensors")).items()}
        arrays = {f: summary(np.load(os.path.join(folder, f)).dtype.str,
                             np.load(os.path.join(folder, f)))
                  for f in sorted(os.listdir(folder)) if f.endswith(".npy")}
        out[case] = {"tensors": tensors, "npy": arrays}
    with open(os.path.join(HERE, "tiny_expected.json"), "w") as f:
        json.dump({"numpy": np.__version__, "cases": out}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    mixed()
    sharded()
    npys()
    tiny_expected()
