#!/usr/bin/python3
"""Time one training step of a vtrain model in PyTorch (CPU).

Builds the same model as vtrain (same layer shapes, float32, mean
cross-entropy), runs warm-up steps, then times --steps steps of
forward + backward + optimizer update on a fixed random batch, and prints one
JSON object with ms_per_step and gflops (counted as vtrain counts them:
6 FLOPs per multiply-accumulate of the matrix products and convolutions).
"""
import argparse
import json
import time

import torch
from torch import nn

import vtrain_torch


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="mlp", choices=["logreg", "mlp", "cnn"])
    ap.add_argument("--hidden", default="256")
    ap.add_argument("--channels", default="8,16")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = vtrain_torch.build(args.model, args.hidden, args.channels).to(args.device)
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 784, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    lossf = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    # CPU time of this thread only: with one thread, PyTorch computes the
    # step here, and helper threads that only wait (spinning) are left out.
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(args.steps):
        step()
    sync()
    sec = (time.perf_counter() - t0) / args.steps
    cpu = (time.thread_time() - c0) / args.steps
    flops = vtrain_torch.flops_per_sample(args.model, args.hidden, args.channels) * args.batch
    print(json.dumps({
        "engine": "pytorch", "version": torch.__version__, "threads": torch.get_num_threads(),
        "model": args.model, "batch": args.batch, "steps": args.steps,
        "ms_per_step": sec * 1e3, "cpu_ms_per_step": cpu * 1e3, "gflops": flops / sec / 1e9,
    }))


if __name__ == "__main__":
    main()
