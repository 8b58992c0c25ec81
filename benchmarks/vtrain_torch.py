"""PyTorch twins of vtrain's models, and a reader/writer for safetensors.

The modules use vtrain's parameter names (fc1.weight, conv1.bias, ...) so
that a vtrain checkpoint's model.safetensors loads with load_state_dict.
The safetensors functions implement the published format (an 8-byte
little-endian header length, a JSON header, raw little-endian data) with
numpy alone, since Debian ships no python3-safetensors.
"""
import json
import struct

import numpy as np
import torch
from torch import nn


def _ints(s):
    return [int(v) for v in s.split(",") if v.strip()]


class MLP(nn.Module):
    def __init__(self, hidden, classes=10, inputs=784):
        super().__init__()
        widths = [inputs] + hidden + [classes]
        self.n = len(widths) - 1
        for i in range(self.n):
            setattr(self, f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1]))

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        for i in range(self.n):
            x = getattr(self, f"fc{i + 1}")(x)
            if i < self.n - 1:
                x = torch.relu(x)
        return x


class CNN(nn.Module):
    def __init__(self, channels, classes=10):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.fc1 = nn.Linear(c2 * 7 * 7, classes)

    def forward(self, x):
        x = x.reshape(x.shape[0], 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc1(x.flatten(1))


def build(kind, hidden="256", channels="8,16"):
    if kind == "logreg":
        return MLP([])
    if kind == "mlp":
        return MLP(_ints(hidden))
    if kind == "cnn":
        return CNN(_ints(channels))
    raise ValueError(f"unknown model {kind}")


def flops_per_sample(kind, hidden="256", channels="8,16"):
    macs = 0
    if kind == "cnn":
        c1, c2 = _ints(channels)
        macs += c1 * 28 * 28 * 1 * 25 + c2 * 14 * 14 * c1 * 25 + c2 * 49 * 10
    else:
        widths = [784] + (_ints(hidden) if kind == "mlp" else []) + [10]
        macs += sum(a * b for a, b in zip(widths, widths[1:]))
    return 6 * macs


_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def load_safetensors(path):
    """Returns ({name: numpy array}, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(raw[base + b:base + e], dtype=_DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).copy()
    return out, meta


def save_safetensors(path, tensors, metadata=None):
    names = {np.float32: "F32", np.float64: "F64", np.int64: "I64", np.int32: "I32", np.uint8: "U8"}
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": names[arr.dtype.type], "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
