#!/usr/bin/env python3
"""Reference timing of NT-Xent forward + backward in PyTorch with lightly.

The counterpart of `parallax bench-loss`: the same loss (lightly's
NTXentLoss(temperature=0.5), memory bank off), the same shapes (N x D random
normal embeddings for each of the two views), the same JSON line:

    {"impl":"pytorch+lightly","loss":"nt_xent","n":..,"d":..,"step_s":..,"pairs_per_s":..}

step_s is the mean wall time of one forward + backward over --steps timed
steps after --warmup untimed ones; pairs_per_s is n / step_s.

Needs: pip install torch lightly   (CPU is enough; --threads matches the
number of threads Parallax uses, e.g. the machine's cores).

Usage: python3 scripts/bench_loss_ref.py [--n 4096] [--d 128] [--steps 10]
       [--warmup 2] [--threads T] [--device cpu|cuda]
"""

import argparse
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4096, help="batch size N (pairs)")
    parser.add_argument("--d", type=int, default=128, help="embedding dimension D")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.n < 1 or args.d < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("n, d and steps must be at least 1, warmup at least 0")

    try:
        import torch
        from lightly.loss import NTXentLoss
    except ImportError as e:
        print(f"bench_loss_ref.py: {e}; install with `pip install torch lightly`", file=sys.stderr)
        return 2

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    loss_fn = NTXentLoss(temperature=0.5, memory_bank_size=0)
    z0 = torch.randn(args.n, args.d, device=device, requires_grad=True)
    z1 = torch.randn(args.n, args.d, device=device, requires_grad=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        z0.grad = None
        z1.grad = None
        loss = loss_fn(z0, z1)
        loss.backward()
        value = loss.item() + z0.grad.sum().item()
        if value != value:  # NaN
            raise RuntimeError("non-finite loss or gradient")

    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    step_s = (time.perf_counter() - start) / args.steps
    line = {
        "impl": "pytorch+lightly",
        "loss": "nt_xent",
        "n": args.n,
        "d": args.d,
        "step_s": step_s,
        "pairs_per_s": args.n / step_s,
    }
    print(json.dumps(line, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
