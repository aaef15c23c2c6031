"""Race normlab's from-scratch normalization layers against PyTorch's built-in ones.

Last measured 2026-11-25 on the 2-core AMD EPYC VM (torch 2.13.0+cpu, 2 threads, shared with
~6 other jobs): see "Normalization layers and the ResNet training step" in benchmarks/README.md
for each layer's ratio; in the trainer's default mode (compiled NHWC) `benchmarks/layouts.py`
is the race that decides. Run from the repository root:

    .venv/bin/python benchmarks/norms.py                 # layers + ResNet n=2 step, eager and compiled
    .venv/bin/python benchmarks/norms.py --quick         # smaller batch, fewer repeats, one shape compiled
    .venv/bin/python benchmarks/norms.py --no-compile --repeats 9

Two parts, each printing ours/reference time ratios (median of ``--repeats`` samples, each
sample the mean of ``--inner`` calls; the two contenders alternate, so load spikes hit both):

1. per layer, forward + backward on ResNet-sized activations (B, C, H, W) =
   (B, 16, 32, 32), (B, 32, 16, 16), (B, 64, 8, 8): bn vs nn.BatchNorm2d, in vs
   nn.InstanceNorm2d(affine=True), ln vs nn.GroupNorm(1, C), gn vs nn.GroupNorm(G, C),
   and bin (no PyTorch counterpart: raced against nn.BatchNorm2d for scale);
2. one training step (forward, cross-entropy, backward, SGD step) of ResNet n=2 on a
   (B, 3, 32, 32) batch, norm="bn" against norm="torch_bn".

A ratio below 1 means ours is faster.
"""

from __future__ import annotations

import argparse
import platform
from typing import Callable

import torch
import torch.nn.functional as F
from _race import race  # benchmarks/_race.py: the shared timing loop
from torch import nn

from normlab.norms import DEFAULT_GN_GROUPS, make_norm

SHAPES = [(16, 32), (32, 16), (64, 8)]  # (channels, pixels) of the three ResNet stages




def layer_pairs(c: int) -> dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module]]]:
    g = DEFAULT_GN_GROUPS
    return {
        "bn": (lambda: make_norm("bn", c), lambda: nn.BatchNorm2d(c)),
        "in": (lambda: make_norm("in", c), lambda: nn.InstanceNorm2d(c, affine=True)),
        "ln": (lambda: make_norm("ln", c), lambda: nn.GroupNorm(1, c)),
        f"gn(G={g})": (lambda: make_norm("gn", c, num_groups=g), lambda: nn.GroupNorm(g, c)),
        "bin": (lambda: make_norm("bin", c), lambda: nn.BatchNorm2d(c)),
    }


def fwd_bwd(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        for p in module.parameters():
            p.grad = None
        module(x).backward(grad)

    return step


def bench_layers(args, device: torch.device, compiled: bool) -> None:
    shapes = SHAPES[1:2] if (compiled and args.quick) else SHAPES
    print(f"\n## layers, forward+backward, {'torch.compile' if compiled else 'eager'}, batch {args.batch}")
    print(f"{'norm':<9} {'shape':<18} {'ours ms':>9} {'torch ms':>9} {'ratio':>6}")
    for c, px in shapes:
        x = torch.randn(args.batch, c, px, px, device=device, requires_grad=True)
        grad = torch.randn_like(x)
        for name, (ours_f, ref_f) in layer_pairs(c).items():
            ours, ref = ours_f().to(device).train(), ref_f().to(device).train()
            if compiled:
                torch._dynamo.reset()  # fresh caches: a module class's forward recompiles per shape
                ours, ref = torch.compile(ours), torch.compile(ref)
            t = race({"ours": fwd_bwd(ours, x, grad), "ref": fwd_bwd(ref, x, grad)}, args.repeats, args.inner, device)
            shape = f"({args.batch},{c},{px},{px})"
            print(f"{name:<9} {shape:<18} {t['ours'] * 1e3:9.2f} {t['ref'] * 1e3:9.2f} {t['ours'] / t['ref']:6.2f}", flush=True)


def bench_train_step(args, device: torch.device, compiled: bool) -> None:
    from normlab.models.resnet import (
        ResNet,  # written alongside; imported only when needed
    )

    print(f"\n## ResNet n={args.n} training step (fwd, loss, bwd, SGD), {'torch.compile' if compiled else 'eager'}, batch {args.batch}")
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    steps = {}
    # Compiled runs also race eager torch_bn, interleaved, for the compiled/eager comparison.
    contenders = [(norm, compiled) for norm in args.step_norms] + ([("torch_bn", False)] if compiled else [])
    for norm, compile_it in contenders:
        torch.manual_seed(0)
        model = ResNet(args.n, 10, norm=norm).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        fwd = torch.compile(model) if compile_it else model

        def step(fwd=fwd, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(fwd(x), y).backward()
            opt.step()

        steps[norm if compile_it == compiled else f"{norm} (eager)"] = step
    t = race(steps, args.repeats, max(1, args.inner // 4), device)
    base = t.get("torch_bn")
    for norm, sec in t.items():
        ratio = f"{sec / base:6.2f}" if base else "     -"
        print(f"{norm:<16} {sec * 1e3:9.1f} ms/step  ratio vs torch_bn {ratio}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    ap.add_argument("--batch", type=int, default=128, help="batch size (default: 128, the training default)")
    ap.add_argument("--repeats", type=int, default=7, help="timed samples per contender; the median is reported")
    ap.add_argument("--inner", type=int, default=8, help="calls per sample for layers (a quarter of it for train steps)")
    ap.add_argument("--n", type=int, default=2, help="ResNet depth parameter (6n+2 layers)")
    ap.add_argument("--step-norms", default="bn,torch_bn", type=lambda s: s.split(","),
                    help="comma-separated norms raced in the training step (default: bn,torch_bn)")
    ap.add_argument("--only", choices=["layers", "step"], help="run one part only")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager runs")
    ap.add_argument("--quick", action="store_true", help="batch 32, 3 repeats, 2 inner calls, one shape compiled")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.inner = min(args.batch, 32), 3, 2
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    modes = ([False] if not args.no_eager else []) + ([True] if not args.no_compile else [])
    for compiled in modes:
        if args.only in (None, "layers"):
            bench_layers(args, device, compiled)
        if args.only in (None, "step"):
            bench_train_step(args, device, compiled)


if __name__ == "__main__":
    main()
