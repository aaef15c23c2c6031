"""Every norm's ResNet training step against torch_bn's, in one memory layout and compile mode.

Last measured 2026-11-30 (2-core AMD EPYC VM, torch 2.13.0+cpu, 1 thread, shared with two
training runs; `--threads 1 --repeats 5 --inner 2`): compiled NHWC, every norm 0.99-1.01x
`torch_bn` (265 ms/step), `nn` 0.80x. Details: benchmarks/README.md.

The trainer's default on CPU compiles the model and uses NHWC (channels_last); this script
races a training step (forward, cross-entropy, backward, SGD step) of ResNet-14 with each
norm, in one process with samples interleaved, and prints each one's time as a ratio to
``torch_bn`` (``nn.BatchNorm2d``) in the same layout and mode, and the implied seconds of a
full-data epoch (40,000 images).

    .venv/bin/python benchmarks/layouts.py                          # compiled, NHWC (the default)
    .venv/bin/python benchmarks/layouts.py --layout nchw            # compiled, NCHW
    .venv/bin/python benchmarks/layouts.py --no-compile --layout nchw --batch 8
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _race import race  # noqa: E402

from normlab.models.resnet import ResNet  # noqa: E402
from normlab.norms import DEFAULT_GN_GROUPS  # noqa: E402


def step_fn(norm: str, batch: int, channels_last: bool, compile_: bool, device: torch.device):
    torch.manual_seed(0)
    model = ResNet(2, 10, norm=norm, norm_kwargs={"num_groups": DEFAULT_GN_GROUPS} if norm == "gn" else {}).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = torch.compile(model) if compile_ else model
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--norms", default="torch_bn,bn,in,bin,ln,gn,nn", type=lambda s: s.split(","),
                    help="norms to race; the first is the reference (default: all, torch_bn first)")
    ap.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc", help="memory layout (default nhwc)")
    ap.add_argument("--no-compile", action="store_true", help="eager instead of torch.compile")
    ap.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved samples per norm (default 5)")
    ap.add_argument("--inner", type=int, default=3, help="steps per sample (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fns = {n: step_fn(n, args.batch, args.layout == "nhwc", not args.no_compile, device) for n in args.norms}
    times = race(fns, repeats=args.repeats, inner=args.inner, device=device)
    ref = times[args.norms[0]]
    mode = "eager" if args.no_compile else "compiled"
    print(f"ResNet-14 training step, batch {args.batch}, {args.layout}, {mode}, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}")
    for n in args.norms:
        print(f"{n:9s} {times[n] * 1000:8.1f} ms/step  {times[n] / ref:5.2f}x {args.norms[0]}  "
              f"epoch of 40,000 images {times[n] * 40000 / args.batch:7.1f} s")


if __name__ == "__main__":
    main()
