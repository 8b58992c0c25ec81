#!/usr/bin/python3
"""Compare vtrain's Gorgonia gradients with PyTorch's on identical weights and batch.

Reads the safetensors file written by `go run ./benchmarks/gradcheck`, loads
the weights into the PyTorch twin of the model (float64, so PyTorch's own
rounding does not count against vtrain), recomputes the mean cross-entropy
loss and its gradients, and prints the relative L2 error per tensor and
overall. Exits 1 if any error exceeds --tol.
"""
import argparse
import json
import sys

import numpy as np
import torch

import vtrain_torch


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("file")
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    t, meta = vtrain_torch.load_safetensors(args.file)
    model = vtrain_torch.build(meta["model"], meta.get("hidden", "256")).double()
    state = {k: torch.from_numpy(v).double() for k, v in t.items() if k in model.state_dict()}
    model.load_state_dict(state, strict=True)
    x = torch.from_numpy(t["batch.x"]).double()
    y = torch.from_numpy(t["batch.y"]).long()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    worst, num, den, rows = 0.0, 0.0, 0.0, {}
    for name, p in model.named_parameters():
        g_ref = p.grad.numpy()
        g_vt = t["grad." + name].astype(np.float64)
        e = np.linalg.norm(g_vt - g_ref) / np.linalg.norm(g_ref)
        rows[name] = e
        worst = max(worst, e)
        num += np.sum((g_vt - g_ref) ** 2)
        den += np.sum(g_ref ** 2)
    total = float(np.sqrt(num / den))
    loss_err = abs(float(t["loss"]) - loss.item()) / abs(loss.item())
    print(json.dumps({"model": meta["model"], "data": meta.get("data"), "loss_rel_err": loss_err,
                      "grad_rel_l2": total, "worst_tensor_rel_l2": worst,
                      "per_tensor": rows, "tol": args.tol, "ok": worst <= args.tol and loss_err <= args.tol}))
    return 0 if worst <= args.tol and loss_err <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
