"""BiLSTM sequence tagger with optional character features and CRF head.

The architecture of Lample et al. (2016), "Neural Architectures for Named
Entity Recognition", §2 and §4.1:

* a word embedding (random, or a pretrained matrix that is fine-tuned),
* optionally character features: 25-d character embeddings run through a
  BiLSTM of 25 units each way over each word's original characters; the final
  states of both directions are concatenated to the word embedding (§4.1),
* dropout (0.5) on that input and on the BiLSTM output (§4.3),
* a word-level BiLSTM, 100 units each way (``nn.LSTM``, or our LayerNorm LSTM
  of Ba et al. 2016 with ``layer_norm=True``),
* a linear layer to tag scores ``P`` (the emissions of eq. 1),
* a softmax cross-entropy head, or a linear-chain CRF head (§2.2).

Losses are the per-sentence negative log likelihood, summed over a sentence's
tokens (the CRF's eq. 1 is per sentence; the softmax head sums its token
cross-entropies so that both heads have the same scale) and averaged over the
sentences of the batch. Padding never counts: the character BiLSTM runs on the
distinct real words only, padding never reaches a real position of the word
BiLSTM, and losses and predictions use the mask.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normlab.data.sentence_batches import TaggerBatch
from normlab.models.lstm import Direction


class CharFeatures(nn.Module):
    """Final states of a character BiLSTM per word (Lample et al. §4.1).

    Each distinct word of a batch is run once (a batch of 128 sentences holds about 2.3
    real words per distinct one); padding words are never run and get zeros. The words run
    in PyTorch's fused LSTM kernel (oneDNN on a CPU, cuDNN on a GPU) on ``nn.LSTM``'s own
    weights (same state dict), in a few buckets of similar length (``_length_buckets``):
    each bucket is one kernel call per direction over its words padded to its longest, the
    backward direction over every word reversed within its own length, so padding only
    ever follows a word's characters and never reaches its final states.
    """

    def __init__(self, num_chars: int, char_dim: int = 25, hidden: int = 25, pad_index: int = 0):
        super().__init__()
        self.pad_index = pad_index
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=pad_index)
        self.lstm = nn.LSTM(char_dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """chars: (B, T, L) ids, mask: (B, T) -> features (B, T, 2*hidden)."""
        B, T, _ = chars.shape
        words = chars[mask]  # shape: (N, L), the N real words of the batch
        first, inverse = _distinct_rows(words)  # shapes: (U,), (N,)
        feats = self.of_words(words.index_select(0, first))  # shape: (U, 2H), each distinct word once
        out = feats.new_zeros(B, T, self.out_dim)
        out[mask] = feats.index_select(0, inverse)
        return out

    def of_words(self, words: torch.Tensor) -> torch.Tensor:
        """words: (N, L) char ids, 0-padded (a word of no characters reads one padding) -> (N, 2*hidden)."""
        N = words.shape[0]
        if N == 0:
            return self.embed.weight.new_zeros(0, self.out_dim)
        lengths = (words != self.pad_index).sum(dim=1).clamp(min=1)  # shape: (N,)
        sorted_len, order = lengths.sort(stable=True)  # shortest first
        words = words.index_select(0, order)
        feats = torch.cat([self._final_states(words[a:b, :L], sorted_len[a:b])
                           for a, b, L in _length_buckets(sorted_len)])  # shape: (N, 2H), sorted order
        rank = torch.empty_like(order)
        rank[order] = torch.arange(N, device=order.device)
        return feats.index_select(0, rank)

    def _final_states(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """words: (n, L) ids, lengths: (n,) in [1, L] -> (n, 2H): the forward direction's state at
        each word's last character, the backward direction's at its first. Two fused-kernel calls."""
        n, L = words.shape
        H = self.lstm.hidden_size
        pos = torch.arange(L, device=words.device)
        inside = pos < lengths.unsqueeze(1)  # shape: (n, L)
        rev = torch.where(inside, lengths.unsqueeze(1) - 1 - pos, pos)  # each word reversed within its length
        ids = torch.stack([words, words.gather(1, rev)]).transpose(1, 2)  # shape: (2, L, n), time-major
        xs = self.embed(ids).unbind(0)  # 2 x (L, n, C); reversing ids, not vectors: no float gather
        zeros = xs[0].new_zeros(1, n, H)
        last = (lengths - 1) * n + torch.arange(n, device=words.device)  # shape: (n,); row of (L * n) read
        out = []
        for x, d in zip(xs, ("", "_reverse")):
            w = [getattr(self.lstm, f"{k}_l0{d}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h = torch.lstm(x, (zeros, zeros), w, True, 1, 0.0, self.training, False, False)[0]  # shape: (L, n, H)
            out.append(h.reshape(L * n, H).index_select(0, last))
        return torch.cat(out, dim=1)  # shape: (n, 2H)


# The cost of one more fused-kernel call, in word-steps (one word through one character step).
# On the 2-core EPYC VM, one thread, shared, the distinct words of real batches (about 1,300 of
# 1 to 20 characters) took, forward+backward, against the step-by-step ``packed_bilstm``:
# 0.79x at 300 and 0.81x at 600 (4-6 buckets), 0.85x at 1200, 0.98x in 4 equal-count buckets,
# 1.07x in one bucket per length, 2.6x in one padded call. 600 rather than 300: fewer shapes,
# and each new shape costs oneDNN a primitive (benchmarks/README.md, "character BiLSTM").
_CALL_COST = 600


def _length_buckets(sorted_lengths: torch.Tensor, call_cost: int = _CALL_COST) -> list[tuple[int, int, int]]:
    """Cut ``sorted_lengths[N]`` (ascending) into buckets ``(start, end, longest)`` that
    minimize ``sum(count * longest) + call_cost * buckets``, the padded work of one fused call
    per bucket plus the calls' overhead: an exact dynamic programme over the distinct
    lengths (at most a few dozen). One host sync."""
    values, counts = torch.unique_consecutive(sorted_lengths, return_counts=True)
    values, counts = values.tolist(), counts.tolist()
    ends = [0]  # ends[j]: words with one of the first j distinct lengths
    for c in counts:
        ends.append(ends[-1] + c)
    best, cut = [0] + [math.inf] * len(values), [0] * (len(values) + 1)
    for j in range(1, len(values) + 1):
        for i in range(j):  # the last bucket holds lengths values[i:j]
            cost = best[i] + (ends[j] - ends[i]) * values[j - 1] + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    buckets, j = [], len(values)
    while j > 0:
        buckets.append((ends[cut[j]], ends[j], values[j - 1]))
        j = cut[j]
    return buckets[::-1]


def _distinct_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, inverse)`` for ``rows[N, L]``: ``rows[first]`` are the distinct rows (in no
    particular order) and ``rows[first][inverse] == rows``. On a CPU ``np.unique`` over each
    row's bytes (0.8 ms for 3,000 words, where ``torch.unique(dim=0)`` takes 9 ms)."""
    if rows.device.type != "cpu":
        uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
        first = torch.empty(len(uniq), dtype=torch.long, device=rows.device)
        first.scatter_(0, inverse, torch.arange(len(rows), device=rows.device))  # any occurrence will do
        return first, inverse
    a = np.ascontiguousarray(rows.numpy())
    keys = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1])))[:, 0]  # shape: (N,), a row's bytes
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return torch.from_numpy(first), torch.from_numpy(inverse.reshape(-1))


def _directions(lstm: nn.LSTM) -> list[Direction]:
    """The two directions' weights of a one-layer bidirectional ``nn.LSTM``, for ``packed_bilstm``:
    the step-by-step path ``CharFeatures`` took before it ran in the fused kernel, kept as the
    reference its tests and benchmarks compare with."""
    return [Direction(getattr(lstm, f"weight_ih_l0{s}"), getattr(lstm, f"weight_hh_l0{s}"),
                      getattr(lstm, f"bias_ih_l0{s}") + getattr(lstm, f"bias_hh_l0{s}")) for s in ("", "_reverse")]


class _PackedBiLSTM(nn.Module):
    """``nn.LSTM`` over a right-padded batch; padding never reaches a real position.

    Not over a packed sequence: ``nn.LSTM``'s packed path steps through time with a matrix
    product of the input per step, and its backward fills a zero tensor of the whole packed
    input per step. Each direction instead is one call of the fused (oneDNN / cuDNN) kernel
    over the padded batch, the backward one over every sequence reversed within its own
    length: padding comes after every real token in both, so it is computed (a batch of
    similar lengths has little) but never read. Same weights, same state dict.
    """

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D), mask: (B, T) -> (B, T, 2H), zeros at padding."""
        B, T, _ = x.shape
        lengths = mask.sum(dim=1, keepdim=True)  # shape: (B, 1)
        pos = torch.arange(T, device=x.device)
        # rev[b, t] = lengths[b] - 1 - t inside the sentence, t on padding: its own inverse. As a
        # row index into (B * T, ...): index_select of whole rows is 2-8x faster than a gather.
        rev = torch.where(mask, lengths - 1 - pos, pos) + T * torch.arange(B, device=x.device).unsqueeze(1)
        rev = rev.view(-1)  # shape: (B * T,)
        reverse = lambda t: t.reshape(B * T, -1).index_select(0, rev).view(B, T, -1)  # noqa: E731
        w = [getattr(self.lstm, f"{k}_l0{d}") for d in ("", "_reverse")
             for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        zeros = x.new_zeros(1, B, self.lstm.hidden_size)
        run = lambda inp, weights: torch.lstm(  # noqa: E731  one direction, batch first, no dropout
            inp, (zeros, zeros), weights, True, 1, 0.0, self.training, False, True)[0]
        fwd = run(x, w[:4])  # shape: (B, T, H)
        bwd = reverse(run(reverse(x), w[4:]))  # back in reading order
        return torch.cat([fwd, bwd], dim=2).masked_fill(~mask.unsqueeze(2), 0)  # shape: (B, T, 2H)


class _LayerNormBiLSTM(nn.Module):
    """Our BiLSTM of ``LayerNormLSTMCell`` (Ba et al. 2016), same call as ``_PackedBiLSTM``."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        from normlab.models.lstm import BiLSTM

        self.lstm = BiLSTM(input_size, hidden, layer_norm=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D), mask: (B, T) -> (B, T, 2H), zeros at padding."""
        out, _ = self.lstm(x, mask=mask)
        return out


class BiLSTMTagger(nn.Module):
    """BiLSTM(-CRF) tagger of Lample et al. (2016) §2.

    Args:
        num_words: size of the word vocabulary (ignored when ``pretrained`` is given).
        num_tags: K, the number of tags.
        num_chars: size of the character vocabulary; > 0 turns on character
            features (index 0 is the character padding).
        pretrained: optional (V, D) word embedding matrix, fine-tuned.
        word_dim: D of the random word embedding (the study's 100).
        hidden: units of the word BiLSTM in each direction.
        char_dim, char_hidden: character embedding size and character BiLSTM
            units each way (Lample et al.: 25 and 25).
        dropout: applied to the BiLSTM's input and output.
        layer_norm: use our LayerNorm LSTM (Ba et al. 2016) for the word BiLSTM.
        crf: CRF head instead of a per-token softmax.
        tag_names: names of the tags, needed for BIO constraints of the CRF.
        crf_constraints: forbid transitions invalid in BIO (see ``normlab.models.crf``).
    """

    def __init__(
        self,
        num_words: int,
        num_tags: int,
        *,
        num_chars: int = 0,
        pretrained: Optional[torch.Tensor] = None,
        word_dim: int = 100,
        hidden: int = 100,
        char_dim: int = 25,
        char_hidden: int = 25,
        dropout: float = 0.5,
        layer_norm: bool = False,
        crf: bool = False,
        tag_names: Optional[Sequence[str]] = None,
        crf_constraints: bool = True,
    ):
        super().__init__()
        if pretrained is not None:
            pretrained = torch.as_tensor(pretrained, dtype=torch.float32)
            num_words, word_dim = pretrained.shape
        self.word_embed = nn.Embedding(num_words, word_dim)
        with torch.no_grad():
            if pretrained is not None:
                self.word_embed.weight.copy_(pretrained)
            else:
                # Lample et al.'s code: uniform in +-sqrt(3/D), i.e. unit variance per vector.
                bound = math.sqrt(3.0 / word_dim)
                self.word_embed.weight.uniform_(-bound, bound)
        self.chars = CharFeatures(num_chars, char_dim, char_hidden) if num_chars > 0 else None
        in_dim = word_dim + (self.chars.out_dim if self.chars is not None else 0)
        self.dropout = nn.Dropout(dropout)
        self.lstm = _LayerNormBiLSTM(in_dim, hidden) if layer_norm else _PackedBiLSTM(in_dim, hidden)
        self.proj = nn.Linear(2 * hidden, num_tags)
        self.num_tags = num_tags
        self.crf = None
        if crf:
            self.crf = _make_crf(num_tags, tag_names, crf_constraints)
            self.crf.check_values = False  # collate() builds masks and tags: no host sync per batch

    def emissions(self, batch: TaggerBatch, char_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Tag scores P of Lample et al. eq. 1: (B, T, K), arbitrary at padding.

        ``char_features`` (B, T, 2C): the character features, computed beforehand (evaluation
        computes each distinct word's once, ``CharFeatures.of_words``); ``None``: from ``batch.chars``.
        """
        mask = batch.mask
        x = self.word_embed(batch.words)  # shape: (B, T, D)
        if self.chars is not None:
            if char_features is None:
                if batch.chars is None:
                    raise ValueError("expected a batch with chars for a tagger with character features, got chars=None")
                char_features = self.chars(batch.chars, mask)
            x = torch.cat([x, char_features], dim=-1)  # shape: (B, T, D + 2C)
        h = self.lstm(self.dropout(x), mask)  # shape: (B, T, 2H)
        return self.proj(self.dropout(h))  # shape: (B, T, K)

    def loss(self, batch: TaggerBatch, emissions: Optional[torch.Tensor] = None,
             reduction: str = "mean") -> torch.Tensor:
        """The sentences' negative log likelihoods (a scalar): their mean, or their sum.

        ``reduction="sum"`` is what training uses: the gradient of a batch of B sentences is
        the sum of B per-sentence gradients, so a step of lr 0.01 is the step Lample et al.'s
        per-sentence SGD takes for each of them (the mean would make it B times smaller).
        """
        if batch.tags is None:
            raise ValueError("expected a batch with gold tags for the loss, got tags=None")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"expected reduction 'mean' or 'sum', got {reduction!r}")
        em = self.emissions(batch) if emissions is None else emissions
        if self.crf is not None:
            total = self.crf.nll(em, batch.tags, batch.mask).sum()
        else:
            total = F.cross_entropy(em[batch.mask], batch.tags[batch.mask], reduction="sum")
        return total if reduction == "sum" else total / batch.mask.shape[0]

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best tags (B, T) from emissions (B, T, K); -1 at padding."""
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        return emissions.argmax(dim=-1).masked_fill(~mask, -1)

    @torch.no_grad()
    def predict(self, batch: TaggerBatch) -> torch.Tensor:
        """Best tag ids (B, T), -1 at padding (call ``eval()`` first for deterministic output)."""
        return self.decode(self.emissions(batch), batch.mask)


def _make_crf(num_tags: int, tag_names: Optional[Sequence[str]], constrain: bool) -> nn.Module:
    from normlab.models.crf import LinearChainCRF

    if not constrain:
        return LinearChainCRF(num_tags)
    if tag_names is None or len(tag_names) != num_tags:
        raise ValueError(f"expected {num_tags} tag names for BIO constraints, got {tag_names!r}")
    return LinearChainCRF.for_bio(list(tag_names), constrain=True)
