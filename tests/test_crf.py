"""LinearChainCRF against brute-force enumeration and against pytorch-crf."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torchcrf import CRF

from normlab.models.crf import IMPOSSIBLE, LinearChainCRF

BIO = ["O", "B-per", "I-per", "B-geo", "I-geo"]


def random_crf(K: int, seed: int, dtype=torch.float32) -> LinearChainCRF:
    torch.manual_seed(seed)
    crf = LinearChainCRF(K).to(dtype)
    with torch.no_grad():
        for p in (crf.transitions, crf.start, crf.end):
            p.normal_()
    return crf


def ragged_mask(lengths, T: int) -> torch.Tensor:
    return torch.arange(T) < torch.as_tensor(lengths).unsqueeze(1)  # shape: (B, T)


def path_score(crf: LinearChainCRF, em: torch.Tensor, path) -> float:
    """s(X, y) of one sentence, written out term by term from the effective scores."""
    A = (crf.transitions + crf.transition_constraint).tolist()
    start = (crf.start + crf.start_constraint).tolist()
    end = crf.end.tolist()
    em = em.tolist()
    s = start[path[0]] + end[path[-1]]
    for t, tag in enumerate(path):
        s += em[t][tag]
        if t:
            s += A[path[t - 1]][tag]
    return s


def brute_force(crf, em, lengths):
    """Per sentence: log partition, best path and its score, by enumerating every path."""
    K = crf.num_tags
    out = []
    for b, n in enumerate(lengths):
        scores = {p: path_score(crf, em[b], p) for p in itertools.product(range(K), repeat=int(n))}
        best = max(scores, key=scores.get)
        m = max(scores.values())
        logz = m + math.log(sum(math.exp(v - m) for v in scores.values()))
        out.append((logz, best, scores[best]))
    return out


@pytest.mark.parametrize("K,constrained", [(3, False), (4, False), (5, True)])
def test_matches_brute_force_enumeration(K, constrained):
    crf = random_crf(K, seed=K)
    if constrained:
        crf.apply_bio_constraints(BIO)
    lengths = [5, 1, 3, 4, 2, 5]
    B, T = len(lengths), 5
    mask = ragged_mask(lengths, T)
    em = torch.randn(B, T, K) * 2
    tags = torch.randint(0, K, (B, T)).masked_fill(~mask, -1)  # padding holds -1: must be ignored
    if constrained:  # gold paths that obey BIO (O, B-per, B-geo), so their score is not -1e4
        tags = torch.tensor([0, 1, 3])[torch.randint(0, 3, (B, T))].masked_fill(~mask, -1)
    ref = brute_force(crf, em, lengths)

    logz = crf.log_partition(em, mask)
    gold = crf.score(em, tags, mask)
    nll = crf.nll(em, tags, mask)
    decoded = crf.decode(em, mask)
    assert decoded.dtype == torch.long and decoded.shape == (B, T)
    for b, n in enumerate(lengths):
        want_logz, want_path, want_best = ref[b]
        assert logz[b].item() == pytest.approx(want_logz, abs=1e-4)
        want_gold = path_score(crf, em[b], tags[b, :n].tolist())
        assert gold[b].item() == pytest.approx(want_gold, abs=1e-4)
        assert nll[b].item() == pytest.approx(want_logz - want_gold, abs=1e-4)
        assert decoded[b, :n].tolist() == list(want_path)
        assert (decoded[b, n:] == -1).all()
        assert path_score(crf, em[b], decoded[b, :n].tolist()) == pytest.approx(want_best, abs=1e-4)
    assert (nll > 0).all()  # a probability below 1 (several paths, random scores)


def test_padding_values_never_matter():
    crf = random_crf(4, seed=1)
    lengths = [4, 2, 1]
    mask = ragged_mask(lengths, 4)
    em = torch.randn(3, 4, 4)
    tags = torch.randint(0, 4, (3, 4))
    noisy_em = em.masked_fill(~mask.unsqueeze(2), float("nan")).requires_grad_()
    noisy_tags = tags.masked_fill(~mask, -1)
    nll = crf.nll(noisy_em, noisy_tags, mask)
    torch.testing.assert_close(nll, crf.nll(em, tags, mask))
    torch.testing.assert_close(crf.decode(noisy_em, mask), crf.decode(em, mask))
    nll.sum().backward()
    assert torch.isfinite(noisy_em.grad).all() and (noisy_em.grad[~mask] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in crf.parameters())


def test_mask_none_means_full_length():
    crf = random_crf(3, seed=2)
    em = torch.randn(2, 4, 3)
    tags = torch.randint(0, 3, (2, 4))
    full = torch.ones(2, 4, dtype=torch.bool)
    torch.testing.assert_close(crf.nll(em, tags), crf.nll(em, tags, full))
    torch.testing.assert_close(crf.decode(em), crf.decode(em, full.long()))  # 0/1 integers accepted


def test_extreme_scores_keep_exact_log_partition_and_finite_gradients():
    # Constrained BIO, and emissions that make B-per at t=1 e^-300 less likely than O,
    # while I-per at t=2 (reachable only through B-per / I-per) is strongly favoured.
    # The fast exp-space step underflows here and must fall back to the exact one.
    crf = LinearChainCRF.for_bio(BIO)
    em = torch.zeros(1, 4, 5)
    em[0, 1, 0] = 300.0  # O at t=1
    em[0, 2, 2] = 600.0  # I-per at t=2
    em = em.requires_grad_()
    logz = crf.log_partition(em)
    want = brute_force(crf, em.detach(), [4])[0][0]
    assert logz.item() == pytest.approx(want, rel=1e-6)
    logz.sum().backward()
    assert torch.isfinite(em.grad).all() and torch.isfinite(crf.transitions.grad).all()
    # The marginals (gradient w.r.t. emissions) are probabilities: each step sums to 1.
    torch.testing.assert_close(em.grad.sum(dim=2), torch.ones(1, 4))


def test_against_pytorch_crf_on_a_large_ragged_batch():
    torch.manual_seed(0)
    B, T, K = 64, 30, 17
    ours = random_crf(K, seed=3)
    theirs = CRF(K, batch_first=True)
    with torch.no_grad():
        theirs.transitions.copy_(ours.transitions)
        theirs.start_transitions.copy_(ours.start)
        theirs.end_transitions.copy_(ours.end)
    lengths = torch.randint(1, T + 1, (B,))
    lengths[:3] = torch.tensor([T, 1, 2])
    mask = ragged_mask(lengths, T)
    em = (torch.randn(B, T, K) * 3).requires_grad_()
    tags = torch.randint(0, K, (B, T))

    nll = ours.nll(em, tags.masked_fill(~mask, -1), mask)
    ref = -theirs(em, tags, mask, reduction="none")
    torch.testing.assert_close(nll, ref, rtol=1e-5, atol=1e-3)

    grads = torch.autograd.grad(nll.sum(), [em, ours.transitions, ours.start, ours.end])
    ref_grads = torch.autograd.grad(
        ref.sum(), [em, theirs.transitions, theirs.start_transitions, theirs.end_transitions]
    )
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)

    decoded = ours.decode(em, mask)
    for b, path in enumerate(theirs.decode(em, mask)):
        assert decoded[b, : len(path)].tolist() == path
        assert (decoded[b, len(path) :] == -1).all()


def test_gradcheck_float64():
    crf = random_crf(3, seed=4, dtype=torch.float64)
    mask = ragged_mask([3, 1, 2], 3)
    tags = torch.randint(0, 3, (3, 3))
    em = torch.randn(3, 3, 3, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in (crf.transitions, crf.start, crf.end)]
    assert torch.autograd.gradcheck(lambda em, A, s, e: _nll_with(crf, em, tags, mask, A, s, e), [em, *params])


def _nll_with(crf, em, tags, mask, A, s, e):
    """crf.nll with the parameters replaced by the given tensors (for gradcheck)."""
    return torch.func.functional_call(crf, {"transitions": A, "start": s, "end": e}, (em, tags, mask))


def test_bio_constraints_forbid_invalid_paths_that_the_plain_crf_takes():
    # Emissions that favour I-geo right after O, and I-per right after B-geo.
    em = torch.full((2, 4, 5), -1.0)
    em[0, 0, 0] = em[0, 1, 4] = em[0, 2, 4] = em[0, 3, 0] = 5.0  # O I-geo I-geo O
    em[1, 0, 2] = em[1, 1, 3] = em[1, 2, 2] = em[1, 3, 0] = 5.0  # I-per B-geo I-per O
    plain = LinearChainCRF.for_bio(BIO, constrain=False)
    constrained = LinearChainCRF.for_bio(BIO, constrain=True)
    assert _invalid_bio(plain.decode(em), BIO) > 0
    assert _invalid_bio(constrained.decode(em), BIO) == 0
    # And in bulk: random adversarial scores, many sentences.
    torch.manual_seed(5)
    em = torch.randn(200, 8, 5) * 4
    em[..., 2] += 3  # I-per everywhere looks likely
    em[..., 4] += 3
    assert _invalid_bio(plain.decode(em), BIO) > 0
    assert _invalid_bio(constrained.decode(em), BIO) == 0


def _invalid_bio(paths: torch.Tensor, names) -> int:
    """Count I-x tags not preceded by B-x or I-x (sentence start counts as O)."""
    bad = 0
    for row in paths.tolist():
        prev = "O"
        for k in row:
            if k < 0:
                break
            name = names[k]
            if name.startswith("I-") and prev[2:] != name[2:]:
                bad += 1
            prev = name
    return bad


def test_bio_constraints_are_buffers_that_training_cannot_undo():
    crf = LinearChainCRF.for_bio(BIO)
    names = dict(crf.named_parameters())
    assert set(names) == {"transitions", "start", "end"}
    assert crf.transition_constraint[0, 2] == IMPOSSIBLE  # O -> I-per
    assert crf.transition_constraint[1, 4] == IMPOSSIBLE  # B-per -> I-geo
    assert crf.transition_constraint[4, 2] == IMPOSSIBLE  # I-geo -> I-per
    assert crf.transition_constraint[1, 2] == 0 and crf.transition_constraint[2, 2] == 0  # B-per/I-per -> I-per
    assert crf.transition_constraint[2, 0] == 0 and crf.transition_constraint[2, 3] == 0  # I-x -> O, B-y
    assert crf.start_constraint.tolist() == [0, 0, IMPOSSIBLE, 0, IMPOSSIBLE]
    assert (crf.transitions == 0).all() and (crf.start == 0).all() and (crf.end == 0).all()  # zero init
    # Gold data that breaks BIO (O -> I-per) pushes the O -> I-per score up...
    opt = torch.optim.SGD(crf.parameters(), lr=10.0)
    em = torch.zeros(1, 2, 5)
    for _ in range(5):
        opt.zero_grad()
        crf.nll(em, torch.tensor([[0, 2]])).sum().backward()
        opt.step()
    assert crf.transitions[0, 2] > 0
    # ...yet the effective score stays hopeless, and decoding never takes it.
    assert crf.transitions[0, 2] + crf.transition_constraint[0, 2] < -9000
    em = torch.zeros(1, 2, 5)
    em[0, 1, 2] = 20.0
    assert _invalid_bio(crf.decode(em), BIO) == 0
    # The constraints travel with the state dict.
    fresh = LinearChainCRF(5)
    fresh.load_state_dict(crf.state_dict())
    assert fresh.transition_constraint[0, 2] == IMPOSSIBLE


@pytest.mark.parametrize(
    "names,match",
    [(["O", "B-per"], "expected 5 tag names"), (["O", "B-per", "X-per", "B-geo", "I-geo"], "BIO tag names.*X-per"),
     (["O", "B-", "I-per", "B-geo", "I-geo"], "BIO tag names.*'B-'")],
)
def test_bio_tag_name_errors(names, match):
    with pytest.raises(ValueError, match=match):
        LinearChainCRF(5).apply_bio_constraints(names)


def test_num_tags_error():
    with pytest.raises(ValueError, match="num_tags to be a positive int, got 0"):
        LinearChainCRF(0)


def test_empty_sentence_error_says_what_and_how_to_fix():
    crf = LinearChainCRF(3)
    mask = ragged_mask([2, 0, 3, 0], 3)
    with pytest.raises(ValueError) as info:
        crf.decode(torch.randn(4, 3, 3), mask)
    msg = str(info.value)
    assert "mask[:, 0] must be all True" in msg
    assert "batch index [1, 3]" in msg
    assert "pad on the right" in msg


def test_mask_not_left_aligned_names_the_row():
    crf = LinearChainCRF(3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match=r"left-aligned.*row\(s\) \[1\]"):
        crf.log_partition(torch.randn(3, 3, 3), mask)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda c: c.decode(torch.randn(2, 3)), r"emissions of shape \(B, T, K\), got \(2, 3\)"),
        (lambda c: c.decode(torch.randn(2, 3, 4)), r"K = num_tags = 3 .* got 4"),
        (lambda c: c.decode(torch.randn(2, 0, 3)), "at least one time step"),
        (lambda c: c.decode(torch.randint(0, 3, (2, 3, 3))), "floating-point emissions"),
        (lambda c: c.decode(torch.randn(2, 3, 3), torch.ones(2, 4, dtype=torch.bool)), r"mask of shape .*\(2, 3\).*\(2, 4\)"),
        (lambda c: c.decode(torch.randn(2, 3, 3), torch.ones(2, 3)), "bool .* mask, got torch.float32"),
        (lambda c: c.nll(torch.randn(2, 3, 3), torch.zeros(2, 2, dtype=torch.long)), r"tags of shape .*\(2, 3\).*\(2, 2\)"),
        (lambda c: c.nll(torch.randn(2, 3, 3), torch.zeros(2, 3)), "integer tags, got torch.float32"),
        (lambda c: c.score(torch.randn(2, 3, 3), torch.full((2, 3), 3)), r"tags in \[0, 3\) .* from 3 to 3"),
        (lambda c: c.nll(torch.randn(2, 3, 3), torch.full((2, 3), -1)), r"tags in \[0, 3\) .* from -1 to -1"),
    ],
)
def test_input_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(LinearChainCRF(3))
