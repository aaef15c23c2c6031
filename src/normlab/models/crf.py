"""A vectorized linear-chain CRF (batch-first), with optional BIO constraints.

Lample et al. 2016, "Neural Architectures for Named Entity Recognition", §2.2:
a sentence ``X`` with emission scores ``P[t, y]`` and a tag sequence ``y`` score

    s(X, y) = start[y_0] + sum_t P[t, y_t] + sum_{t>=1} A[y_{t-1}, y_t] + end[y_{n-1}]

and the loss is eq. 1 negated,

    -log p(y | X) = log sum_{y'} exp s(X, y') - s(X, y),

the log partition computed by the forward algorithm (logsumexp, numerically
stable) and the best path by Viterbi. Every operation runs on the whole batch at
once: the only Python loop is over time steps, the Viterbi backtrace included.

Sentences are right-padded: ``mask[b, t]`` is True for the first ``len_b``
positions of sentence ``b`` and False after them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# Score added to impossible transitions. Finite rather than -inf: exp(-1e4)
# underflows to exactly 0 in float32 (so such paths have probability 0 and
# Viterbi never takes them), yet a gold sequence that breaks a constraint
# (a data error) gives a huge finite loss, not inf/NaN gradients.
IMPOSSIBLE = -1e4


def _host_reads_are_cheap(t: torch.Tensor) -> bool:
    """On the CPU reading a value back to Python costs nothing; on a GPU it waits for its queue."""
    return t.device.type == "cpu"


class LinearChainCRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags (Lample et al. 2016, §2.2, eq. 1).

    Parameters: ``transitions[K, K]`` (score of moving from the row tag to the
    column tag), ``start[K]`` (score of the first tag), ``end[K]`` (score of the
    last tag).

    Initialization (the study asks: "CRF layer is very sensitive to the
    initialization of the transition matrix. What would be an appropriate
    initialization for sequence tagging tasks?"). Our answer, in the code:

    * Allowed transitions start at **zero**. The CRF is then exactly a per-token
      softmax over the emissions, so early training is led by the BiLSTM and the
      transition scores grow only as the data supports them. No random noise is
      needed: the loss is convex in the transition scores, there is no symmetry
      to break, and a random matrix is only a prior that has to be unlearnt.
    * Transitions that BIO forbids are fixed at a large negative score
      (``IMPOSSIBLE`` = -1e4): ``O -> I-x``, ``B-x -> I-y`` and ``I-x -> I-y``
      with ``y != x``, and ``start -> I-x``. They live in non-trainable buffers
      (``transition_constraint``, ``start_constraint``) *added* to the trainable
      parameters, so training cannot re-enable them, and Viterbi never outputs
      an invalid BIO sequence whatever the emissions say (``tests/test_crf.py``
      shows it; the plain CRF does output one). Use
      ``LinearChainCRF.for_bio(tag_names, constrain=True)``, or
      ``constrain=False`` for the plain CRF the study compares it with.

    All entry points take ``emissions[B, T, K]`` (float) and ``mask[B, T]``
    (bool, or 0/1 integers; ``None`` means every position is a token).
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"expected num_tags to be a positive int, got {num_tags!r}")
        self.num_tags = num_tags
        # The checks of the mask's and tags' *values* (left-aligned, non-empty, tags in range) read
        # them on the host: on a GPU a sync per call. A caller that builds them itself (the
        # tagger's collate) turns them off; shapes and dtypes are checked either way.
        self.check_values = True
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        # Zero unless apply_bio_constraints() was called. Buffers: saved with the
        # state dict, never touched by the optimizer.
        self.register_buffer("transition_constraint", torch.zeros(num_tags, num_tags))
        self.register_buffer("start_constraint", torch.zeros(num_tags))

    # ------------------------------------------------------------------ set-up
    @classmethod
    def for_bio(cls, tag_names: Sequence[str], constrain: bool = True) -> "LinearChainCRF":
        """A CRF over BIO tags (``O``, ``B-x``, ``I-x``); ``constrain`` forbids the
        transitions BIO does not allow (see the class docstring)."""
        crf = cls(len(tag_names))
        if constrain:
            crf.apply_bio_constraints(tag_names)
        return crf

    def apply_bio_constraints(self, tag_names: Sequence[str]) -> None:
        """Fix ``O -> I-x``, ``B-x/I-x -> I-y`` (``y != x``) and ``start -> I-x`` at
        ``IMPOSSIBLE``. ``tag_names[k]`` names tag index ``k``."""
        tag_names = list(tag_names)
        if len(tag_names) != self.num_tags:
            raise ValueError(f"expected {self.num_tags} tag names (num_tags), got {len(tag_names)}")
        kinds = []  # (prefix, entity type) per tag
        for name in tag_names:
            if name == "O":
                kinds.append(("O", None))
            elif isinstance(name, str) and name[:2] in ("B-", "I-") and len(name) > 2:
                kinds.append((name[0], name[2:]))
            else:
                raise ValueError(f"expected BIO tag names ('O', 'B-x' or 'I-x'), got {name!r}")
        trans = torch.zeros(self.num_tags, self.num_tags)
        start = torch.zeros(self.num_tags)
        for j, (prefix_j, type_j) in enumerate(kinds):
            if prefix_j != "I":
                continue  # any tag may precede O or B-x
            start[j] = IMPOSSIBLE  # a sentence cannot open inside an entity
            for i, (prefix_i, type_i) in enumerate(kinds):
                if prefix_i == "O" or type_i != type_j:
                    trans[i, j] = IMPOSSIBLE  # I-x only continues B-x or I-x
        self.transition_constraint.copy_(trans)
        self.start_constraint.copy_(start)

    # ------------------------------------------------------------- validation
    def _validate(
        self, emissions: torch.Tensor, mask: torch.Tensor | None, tags: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Check shapes and the mask; return the mask as a bool tensor ``(B, T)``."""
        if not torch.is_tensor(emissions) or emissions.dim() != 3:
            shape = tuple(emissions.shape) if torch.is_tensor(emissions) else type(emissions).__name__
            raise ValueError(f"expected emissions of shape (B, T, K), got {shape}")
        B, T, K = emissions.shape
        if K != self.num_tags:
            raise ValueError(
                f"expected emissions with K = num_tags = {self.num_tags} scores in the last dim, "
                f"got {K} (emissions shape {tuple(emissions.shape)})"
            )
        if T == 0:
            raise ValueError(f"expected at least one time step, got emissions shape {tuple(emissions.shape)}")
        if not emissions.is_floating_point():
            raise ValueError(f"expected floating-point emissions, got {emissions.dtype}")
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=emissions.device)
        else:
            if not torch.is_tensor(mask) or tuple(mask.shape) != (B, T):
                shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
                raise ValueError(f"expected mask of shape (B, T) = {(B, T)} like emissions, got {shape}")
            if mask.is_floating_point() or mask.is_complex():
                raise ValueError(f"expected a bool (or 0/1 integer) mask, got {mask.dtype}")
            mask = mask.bool()
        if not self.check_values:  # the caller built mask and tags (see ``check_values``)
            return mask
        empty = (~mask[:, 0]).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                "mask[:, 0] must be all True: sentences are right-padded and every sentence must have "
                f"at least one token; found empty sentence(s) at batch index {empty[:10]}"
                f"{' ...' if len(empty) > 10 else ''}. Drop empty sentences from the batch, and pad "
                "on the right (mask[b, t] True for t < length of sentence b)."
            )
        if T > 1:
            gaps = (mask[:, 1:] & ~mask[:, :-1]).any(dim=1).nonzero().flatten().tolist()
            if gaps:
                raise ValueError(
                    "expected left-aligned masks (True for the first tokens, then only False), "
                    f"got a True after a False in row(s) {gaps[:10]}{' ...' if len(gaps) > 10 else ''}"
                )
        if tags is not None:
            if not torch.is_tensor(tags) or tuple(tags.shape) != (B, T):
                shape = tuple(tags.shape) if torch.is_tensor(tags) else type(tags).__name__
                raise ValueError(f"expected tags of shape (B, T) = {(B, T)} like emissions, got {shape}")
            if tags.is_floating_point() or tags.dtype == torch.bool:
                raise ValueError(f"expected integer tags, got {tags.dtype}")
            real = tags[mask]
            if real.numel() and (real.min() < 0 or real.max() >= K):
                raise ValueError(
                    f"expected tags in [0, {K}) at unmasked positions, got values from "
                    f"{int(real.min())} to {int(real.max())}"
                )
        return mask

    # ------------------------------------------------------------- the model
    def _scores(self, dtype: torch.dtype):
        """Effective (constrained) transition, start and end scores."""
        trans = (self.transitions + self.transition_constraint).to(dtype)  # shape: (K, K)
        start = (self.start + self.start_constraint).to(dtype)  # shape: (K,)
        return trans, start, self.end.to(dtype)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Same as ``nll``: the loss per sentence, ``(B,)``."""
        return self.nll(emissions, tags, mask)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood per sentence, ``(B,)``: log partition minus gold score.

        ``tags[B, T]`` (long); values at masked positions are ignored (may be -1).
        """
        mask = self._validate(emissions, mask, tags)
        return self._log_partition(emissions, mask) - self._score(emissions, tags, mask)

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``log sum_y exp s(X, y)`` per sentence, ``(B,)``."""
        return self._log_partition(emissions, self._validate(emissions, mask))

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``s(X, y)`` of the given tags per sentence, ``(B,)``."""
        mask = self._validate(emissions, mask, tags)
        return self._score(emissions, tags, mask)

    def _score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        trans, start, end = self._scores(emissions.dtype)
        tags = tags.long().masked_fill(~mask, 0)  # shape: (B, T); padding may hold -1
        lengths = mask.sum(dim=1)  # shape: (B,)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # shape: (B, T)
        step = trans[tags[:, :-1], tags[:, 1:]]  # shape: (B, T-1); step into position t+1
        zero = emit.new_zeros(())
        total = torch.where(mask, emit, zero).sum(dim=1) + torch.where(mask[:, 1:], step, zero).sum(dim=1)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # shape: (B,)
        return total + start[tags[:, 0]] + end[last]

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Forward algorithm, one step per time step for the whole batch.

        A step is ``alpha'[b, j] = logsumexp_i(alpha[b, i] + A[i, j]) + P[b, t, j]``.
        We compute it as a small matrix product in exp space, shifted so nothing
        overflows: ``log(exp(alpha - max_i alpha) @ exp(A - max_i A)) + both
        maxima``; on a CPU that is several times faster than a logsumexp over a
        ``(B, K, K)`` tensor. Only underflow could lose accuracy (a sum below
        ``tiny / eps``: some tag reachable only from tags far less likely than
        the best one); a step where that happens is redone with the exact
        ``torch.logsumexp``. Both shifts are constants to autograd (they cancel
        exactly), and every ``log`` sees a sum of at least ``tiny / eps``, so
        the gradients stay finite.
        """
        trans, start, end = self._scores(emissions.dtype)
        B, T, K = emissions.shape
        # Padding is zeroed so the recursion stays finite past each sentence's
        # end; those steps are computed but never read (no per-step masking).
        # unbind, not em[t]: each em[t]'s backward would fill a zero (T, B, K) tensor.
        em = emissions.masked_fill(~mask.unsqueeze(2), 0).transpose(0, 1).unbind(0)  # T x (B, K)
        col_max = trans.detach().amax(dim=0)  # shape: (K,)
        exp_trans = torch.exp(trans - col_max)  # shape: (K, K); entries in [0, 1], a 1 per column
        floor = torch.finfo(emissions.dtype).tiny / torch.finfo(emissions.dtype).eps
        alphas = [start + em[0]]  # alphas[t][b, k]: log-sum of paths over 0..t ending in tag k
        for t in range(1, T):
            alpha = alphas[-1]  # shape: (B, K)
            shift = alpha.detach().amax(dim=1, keepdim=True)  # shape: (B, 1)
            total = torch.exp(alpha - shift) @ exp_trans  # shape: (B, K)
            if not _host_reads_are_cheap(total):  # a GPU: no host read per step; both paths, exact where needed
                exact = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1)
                nxt = torch.where(total < floor, exact, torch.log(total.clamp_min(floor)) + shift + col_max)
            elif bool((total < floor).any()):  # rare: exact, slower step
                nxt = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1)
            else:
                nxt = torch.log(total) + shift + col_max
            alphas.append(nxt + em[t])
        last = _at_last_step(torch.stack(alphas), mask.sum(dim=1))  # shape: (B, K)
        return torch.logsumexp(last + end, dim=1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Viterbi: the best tag sequence per sentence, ``LongTensor[B, T]``, -1 past each length.

        The forward pass keeps only the best scores (``amax``, no back-pointers:
        on a CPU a max *with* indices over ``(B, K, K)`` costs more than
        recomputing one ``(B, K)`` argmax per step of the backtrace).
        """
        mask = self._validate(emissions, mask)
        trans, start, end = self._scores(emissions.dtype)
        B, T, K = emissions.shape
        em = emissions.masked_fill(~mask.unsqueeze(2), 0).transpose(0, 1)  # shape: (T, B, K)
        lengths = mask.sum(dim=1)  # shape: (B,)
        deltas = [start + em[0]]  # deltas[t][b, k]: best score of a path over 0..t ending in tag k
        for t in range(1, T):
            # Positions past a sentence's end are computed too (on padding) but never read.
            deltas.append((deltas[-1].unsqueeze(2) + trans).amax(dim=1) + em[t])  # shape: (B, K)
        last_tag = (_at_last_step(torch.stack(deltas), lengths) + end).argmax(dim=1)  # shape: (B,)
        # Backtrace, all sentences at once; a sentence joins at its own last token.
        trans_into = trans.t()  # trans_into[j, i] = A[i, j]
        ends_here = (lengths - 1).unsqueeze(0) == torch.arange(T, device=em.device).unsqueeze(1)  # shape: (T, B)
        cur = last_tag  # shape: (B,); the tag at step t+1 (garbage past a sentence's end, masked below)
        path = [cur]
        for t in range(T - 2, -1, -1):
            # The best predecessor, recomputed from the same sums as the amax above (ties: lowest tag).
            prev = (deltas[t] + trans_into[cur]).argmax(dim=1)  # shape: (B,)
            cur = torch.where(ends_here[t], last_tag, prev)
            path.append(cur)
        path.reverse()
        return torch.stack(path, dim=1).masked_fill_(~mask, -1)  # shape: (B, T)

def _at_last_step(per_step: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``per_step[lengths[b] - 1, b]`` for each ``b``: ``(T, B, K), (B,) -> (B, K)``.

    A flat ``index_select`` (advanced indexing with two index tensors is
    needlessly slow on CPU).
    """
    T, B, K = per_step.shape
    rows = (lengths - 1) * B + torch.arange(B, device=per_step.device)  # shape: (B,)
    return per_step.reshape(T * B, K).index_select(0, rows)
