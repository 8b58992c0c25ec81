#!/usr/bin/python3
"""Dense all-reduce baseline: PyTorch gloo on loopback, the same model size.

Starts N processes that all-reduce a float32 vector of the model's size
(203,530 for the MLP 784-256-10) --rounds times, as a synchronous data-
parallel step would each round, and reports the time per all-reduce and
the bytes each peer sent: measured on the loopback interface
(/proc/net/dev, all traffic while the benchmark runs, divided by peers and
rounds) and the ring algorithm's 2(N-1)/N x 4d.
"""
import argparse
import json
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def lo_bytes():
    with open("/proc/net/dev") as f:
        for line in f:
            if line.strip().startswith("lo:"):
                return int(line.split(":")[1].split()[8])  # transmitted bytes
    return 0


def worker(rank, n, d, rounds, port, q):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n)
    x = torch.randn(d)
    for _ in range(3):
        dist.all_reduce(x)
    dist.barrier()
    b0 = lo_bytes()
    t0 = time.perf_counter()
    for _ in range(rounds):
        dist.all_reduce(x)
    dist.barrier()
    dt = time.perf_counter() - t0
    b1 = lo_bytes()
    if rank == 0:
        q.put((dt, b1 - b0))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--params", type=int, default=203530)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--port", type=int, default=29511)
    a = ap.parse_args()
    q = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(worker, args=(a.peers, a.params, a.rounds, a.port, q), nprocs=a.peers, start_method="spawn")
    dt, lo = q.get()
    print(json.dumps({
        "engine": "pytorch-gloo", "peers": a.peers, "params": a.params, "rounds": a.rounds,
        "ms_per_allreduce": dt / a.rounds * 1e3,
        "wire_bytes_per_peer_round": lo / a.peers / a.rounds,
        "ring_bytes_per_peer_round": 2 * (a.peers - 1) / a.peers * 4 * a.params,
        "dense_bytes": 4 * a.params,
    }))


if __name__ == "__main__":
    main()
