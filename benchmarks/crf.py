"""Race normlab's LinearChainCRF against pytorch-crf (`torchcrf.CRF`).

Measured 2026-11-25 on a 2-core AMD EPYC VM (CPU, torch 2.13.0, 1 thread, machine
shared with other jobs): nll forward+backward 3.3x and decode 2.9x faster than
pytorch-crf 0.7.2 (52.7 vs 173.7 ms; 35.3 vs 102.5 ms). Details: benchmarks/README.md.

    .venv/bin/python benchmarks/crf.py [--runs 21] [--threads 1]

B=128 sentences, T=50, K=17 tags, ragged lengths (1..50, longest = 50), same
parameters in both. Times ``nll`` forward+backward (pytorch-crf: ``-forward``
with reduction='sum') and ``decode``; prints medians and the ratios.
"""

from __future__ import annotations

import argparse

import torch
from _race import race  # benchmarks/_race.py: the shared timing loop
from torchcrf import CRF

from normlab.models.crf import LinearChainCRF


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=21)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the bench machine is shared)")
    p.add_argument("-B", type=int, default=128)
    p.add_argument("-T", type=int, default=50)
    p.add_argument("-K", type=int, default=17)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T, K = args.B, args.T, args.K

    ours = LinearChainCRF(K)
    theirs = CRF(K, batch_first=True)
    with torch.no_grad():
        ours.transitions.normal_()
        ours.start.normal_()
        ours.end.normal_()
        theirs.transitions.copy_(ours.transitions)
        theirs.start_transitions.copy_(ours.start)
        theirs.end_transitions.copy_(ours.end)
    lengths = torch.randint(1, T + 1, (B,))
    lengths[0] = T
    mask = torch.arange(T) < lengths.unsqueeze(1)  # shape: (B, T)
    emissions = torch.randn(B, T, K, requires_grad=True)
    tags = torch.randint(0, K, (B, T))

    def ours_nll():
        ours.zero_grad(set_to_none=True)
        emissions.grad = None
        ours.nll(emissions, tags, mask).sum().backward()

    def theirs_nll():
        theirs.zero_grad(set_to_none=True)
        emissions.grad = None
        (-theirs(emissions, tags, mask, reduction="sum")).backward()

    nll = race({"ours": ours_nll, "theirs": theirs_nll}, args.runs)
    dec = race({"ours": lambda: ours.decode(emissions, mask), "theirs": lambda: theirs.decode(emissions, mask)}, args.runs)
    rows = [("nll forward+backward", nll["ours"], nll["theirs"]), ("decode (Viterbi)", dec["ours"], dec["theirs"])]
    print(f"B={B} T={T} K={K}, ragged lengths, {args.threads} thread(s), median of {args.runs} runs, torch {torch.__version__}")
    print(f"{'':24s} {'normlab ms':>11s} {'pytorch-crf ms':>15s} {'speed-up':>9s}")
    for name, a, b in rows:
        print(f"{name:24s} {a * 1e3:11.2f} {b * 1e3:15.2f} {b / a:8.1f}x")


if __name__ == "__main__":
    main()
