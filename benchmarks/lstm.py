"""Race normlab's BiLSTM (LayerNormLSTMCell, with and without layer norm) against nn.LSTM.

Last measured 2026-11-30 on a 2-core AMD EPYC VM (CPU, torch 2.13.0, 1 thread, machine
shared with two training runs and other jobs, load average 5-8), forward+backward, three
races: our BiLSTM(layer_norm=False) 0.45-0.57x nn.LSTM's time (packed), BiLSTM(layer_norm=True)
0.73-1.02x (1.44x before issue 17's packed loop). Details: benchmarks/README.md.

    .venv/bin/python benchmarks/lstm.py [--runs 11] [--threads 1]

Sizes of the NER tagger: input 150 (50-d GloVe + 2 x 25 character features),
hidden 100 each way, B=128 sentences, T=50, ragged lengths (longest 50).
nn.LSTM(bidirectional=True) runs over a packed sequence. Times forward +
backward of ``out.sum()``; prints medians and the ratios to nn.LSTM.
"""

from __future__ import annotations

import argparse

import torch
from _race import race  # benchmarks/_race.py: the shared timing loop
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from normlab.models.lstm import BiLSTM


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=11)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the bench machine is shared)")
    p.add_argument("-B", type=int, default=128)
    p.add_argument("-T", type=int, default=50)
    p.add_argument("--input", type=int, default=150)
    p.add_argument("--hidden", type=int, default=100)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T = args.B, args.T

    lengths = torch.randint(1, T + 1, (B,))
    lengths[0] = T
    x = torch.randn(B, T, args.input, requires_grad=True)
    ref = nn.LSTM(args.input, args.hidden, batch_first=True, bidirectional=True)
    ln = BiLSTM(args.input, args.hidden, layer_norm=True)
    plain = BiLSTM(args.input, args.hidden, layer_norm=False)

    def run_ref():
        x.grad = None
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=T)
        out.sum().backward()

    def run(model):
        def go():
            x.grad = None
            model(x, lengths=lengths)[0].sum().backward()
        return go

    t = race({"nn.LSTM (packed)": run_ref, "BiLSTM layer_norm=False": run(plain), "BiLSTM layer_norm=True": run(ln)}, args.runs)
    base = t["nn.LSTM (packed)"]
    rows = list(t.items())
    print(
        f"B={B} T={T} input={args.input} hidden={args.hidden}x2, ragged lengths, forward+backward, "
        f"{args.threads} thread(s), median of {args.runs} runs, torch {torch.__version__}"
    )
    print(f"{'':26s} {'ms':>9s} {'vs nn.LSTM':>11s}")
    for name, t in rows:
        print(f"{name:26s} {t * 1e3:9.2f} {t / base:10.2f}x")


if __name__ == "__main__":
    main()
