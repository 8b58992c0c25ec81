#!/usr/bin/python3
"""Train vtrain's MLP/logreg/CNN twin in PyTorch on Fashion-MNIST, as the accuracy reference.

Same recipe as `vtrain train`: pixels scaled to [0, 1], Adam(W) at --lr,
batch --batch, shuffled each epoch, mean cross-entropy; prints one JSON line.
"""
import argparse
import gzip
import json
import struct
import time

import numpy as np
import torch

import vtrain_torch


def idx(path):
    with gzip.open(path) as f:
        raw = f.read()
    nd = raw[3]
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--hidden", default="256")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    d = args.data
    xtr = torch.from_numpy(idx(f"{d}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    ytr = torch.from_numpy(idx(f"{d}/train-labels-idx1-ubyte.gz").astype(np.int64))
    xte = torch.from_numpy(idx(f"{d}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    yte = torch.from_numpy(idx(f"{d}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = vtrain_torch.build(args.model, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    lossf = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    accs = []
    for _ in range(args.epochs):
        perm = torch.randperm(len(ytr))
        for i in range(0, len(ytr) - args.batch + 1, args.batch):
            b = perm[i:i + args.batch]
            opt.zero_grad()
            lossf(model(xtr[b]), ytr[b]).backward()
            opt.step()
        with torch.no_grad():
            out = model(xte)
            accs.append((out.argmax(1) == yte).float().mean().item())
    with torch.no_grad():
        out = model(xte)
        acc = (out.argmax(1) == yte).float().mean().item()
        loss = lossf(out, yte).item()
    print(json.dumps({"engine": "pytorch", "model": args.model, "seed": args.seed, "epochs": args.epochs,
                      "test_accuracy": acc, "test_loss": loss, "per_epoch_accuracy": accs,
                      "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
