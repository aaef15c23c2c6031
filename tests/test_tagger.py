"""BiLSTMTagger: shapes, masks (padding never matters), heads, vectorised character features."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from normlab.models.tagger import BiLSTMTagger, TaggerBatch

TAGS = ["O", "B-geo", "B-per", "I-geo", "I-per"]
V, C, K = 30, 12, len(TAGS)


def make_batch(lengths, seed=0, L=6):
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    words = torch.randint(2, V, (B, T), generator=g).masked_fill(~mask, 0)
    word_len = torch.randint(1, L + 1, (B, T), generator=g)
    chars = torch.randint(2, C, (B, T, L), generator=g)
    chars = chars.masked_fill(torch.arange(L)[None, None, :] >= word_len[..., None], 0)
    chars = chars.masked_fill(~mask[..., None], 0)
    tags = torch.randint(0, K, (B, T), generator=g).masked_fill(~mask, 0)
    return TaggerBatch(words=words, mask=mask, chars=chars, tags=tags)


def make_model(char=True, crf=False, layer_norm=False, seed=0, **kw):
    torch.manual_seed(seed)
    return BiLSTMTagger(V, K, num_chars=C if char else 0, word_dim=8, hidden=6, char_dim=5, char_hidden=4,
                        layer_norm=layer_norm, crf=crf, tag_names=TAGS, **kw)


VARIANTS = list(itertools.product([False, True], [False, True], [False, True]))  # char, crf, layer_norm


@pytest.mark.parametrize("char,crf,layer_norm", VARIANTS)
def test_shapes_and_padding_marker(char, crf, layer_norm):
    model = make_model(char, crf, layer_norm).eval()
    batch = make_batch([5, 2, 7, 1])
    em = model.emissions(batch)
    assert em.shape == (4, 7, K)
    loss = model.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    pred = model.predict(batch)
    assert pred.shape == (4, 7) and pred.dtype == torch.long
    assert (pred[~batch.mask] == -1).all()
    assert ((pred[batch.mask] >= 0) & (pred[batch.mask] < K)).all()


def _scramble_padding(batch, seed=1):
    g = torch.Generator().manual_seed(seed)
    pad = ~batch.mask
    words = torch.where(pad, torch.randint(0, V, batch.words.shape, generator=g), batch.words)
    tags = torch.where(pad, torch.randint(0, K, batch.tags.shape, generator=g), batch.tags)
    chars = torch.where(pad[..., None], torch.randint(1, C, batch.chars.shape, generator=g), batch.chars)
    return TaggerBatch(words=words, mask=batch.mask, chars=chars, tags=tags)


@pytest.mark.parametrize("char,crf,layer_norm", VARIANTS)
def test_padding_never_changes_loss_gradients_or_predictions(char, crf, layer_norm):
    model = make_model(char, crf, layer_norm)
    batch = make_batch([6, 3, 1, 4])
    other = _scramble_padding(batch)
    assert not torch.equal(other.words, batch.words)
    model.eval()
    torch.testing.assert_close(model.loss(other), model.loss(batch), rtol=0, atol=1e-6)
    assert torch.equal(model.predict(other), model.predict(batch))
    # Training mode: same dropout masks (same seed), same loss and gradients.
    model.train()
    grads = []
    for b in (batch, other):
        torch.manual_seed(5)
        model.zero_grad()
        model.loss(b).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("char,crf,layer_norm", VARIANTS)
def test_a_sentence_gets_the_same_scores_alone_and_in_a_longer_batch(char, crf, layer_norm):
    model = make_model(char, crf, layer_norm).eval()
    batch = make_batch([3, 9, 5])
    em = model.emissions(batch)
    for b, n in enumerate([3, 9, 5]):
        alone = TaggerBatch(words=batch.words[b: b + 1, :n], mask=batch.mask[b: b + 1, :n],
                            chars=batch.chars[b: b + 1, :n], tags=batch.tags[b: b + 1, :n])
        torch.testing.assert_close(model.emissions(alone)[0], em[b, :n], rtol=1e-5, atol=1e-6)
        assert torch.equal(model.predict(alone)[0], model.predict(batch)[b, :n])


def test_softmax_head_is_summed_token_cross_entropy_averaged_over_sentences():
    model = make_model(crf=False).eval()
    batch = make_batch([4, 2, 6])
    em = model.emissions(batch)
    want = sum(F.cross_entropy(em[b, :n], batch.tags[b, :n], reduction="sum") for b, n in enumerate([4, 2, 6])) / 3
    torch.testing.assert_close(model.loss(batch), want)
    assert torch.equal(model.predict(batch)[batch.mask], em.argmax(-1)[batch.mask])


def test_crf_head_uses_crf_nll_and_viterbi():
    model = make_model(crf=True, crf_constraints=False).eval()
    batch = make_batch([4, 2, 6])
    em = model.emissions(batch)
    torch.testing.assert_close(model.loss(batch), model.crf.nll(em, batch.tags, batch.mask).mean())
    assert torch.equal(model.predict(batch), model.crf.decode(em, batch.mask))


def test_crf_constraints_make_predictions_valid_bio():
    from seqeval.metrics.sequence_labeling import get_entities  # noqa: F401  (seqeval present)

    model = make_model(crf=True, crf_constraints=True).eval()
    # Push the emissions towards I- tags, which an unconstrained model would emit after O.
    with torch.no_grad():
        model.proj.bias[:] = torch.tensor([0.0, 0.0, 0.0, 3.0, 3.0])
    batch = make_batch([6, 7, 5, 3], seed=3)
    pred = model.predict(batch)
    soft = model.emissions(batch).argmax(-1)
    assert any(TAGS[t].startswith("I-") for t in soft[batch.mask].tolist())
    for b in range(pred.shape[0]):
        prev = "O"
        for t in pred[b][batch.mask[b]].tolist():
            name = TAGS[t]
            if name.startswith("I-"):
                assert prev in (f"B-{name[2:]}", name), (prev, name)
            prev = name


def test_char_features_equal_a_per_word_reference():
    model = make_model(char=True).eval()
    batch = make_batch([5, 2, 7, 1], seed=7)
    feats = model.chars(batch.chars, batch.mask)
    assert feats.shape == (4, 7, 8)
    lstm, embed = model.chars.lstm, model.chars.embed
    for b, t in zip(*torch.nonzero(batch.mask, as_tuple=True)):
        ids = batch.chars[b, t]
        ids = ids[ids != 0]
        x = embed(ids)[None]  # (1, n, c)
        out, _ = lstm(x)  # (1, n, 2H): forward state at the end, backward state at the start
        want = torch.cat([out[0, -1, :4], out[0, 0, 4:]])
        torch.testing.assert_close(feats[b, t], want, rtol=1e-5, atol=1e-6)
    assert (feats[~batch.mask] == 0).all()


def test_char_features_run_each_distinct_word_once_with_the_gradients_of_every_word():
    """Repeated words share one run; the gradients equal those of nn.LSTM over every word, packed."""
    from torch.nn.utils.rnn import pack_padded_sequence

    from normlab.models.tagger import _distinct_rows

    model = make_model(char=True)
    batch = make_batch([5, 2, 7, 1], seed=7)
    batch.chars[1, :2] = batch.chars[0, 3]  # the same word three times, in two sentences
    rows = batch.chars[batch.mask]
    first, inverse = _distinct_rows(rows)
    assert len(first) == len(torch.unique(rows, dim=0)) < len(rows)
    assert torch.equal(rows[first][inverse], rows)
    feats = model.chars(batch.chars, batch.mask)
    torch.testing.assert_close(feats[1, 0], feats[0, 3])
    lstm, embed = model.chars.lstm, model.chars.embed
    lengths = (rows != 0).sum(dim=1)
    _, (h_n, _) = lstm(pack_padded_sequence(embed(rows), lengths, batch_first=True, enforce_sorted=False))
    want = torch.cat([h_n[0], h_n[1]], dim=1)
    torch.testing.assert_close(feats[batch.mask], want, rtol=1e-5, atol=1e-6)
    w = torch.randn_like(want)
    params = [embed.weight, lstm.weight_ih_l0, lstm.weight_hh_l0_reverse, lstm.bias_hh_l0]
    got = torch.autograd.grad((feats[batch.mask] * w).sum(), params)
    ref = torch.autograd.grad((want * w).sum(), params)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_fused_char_bilstm_equals_the_step_by_step_path_with_gradients(training):
    """``CharFeatures.of_words`` (fused kernel, length buckets) against ``packed_bilstm`` (the Python
    loop over time it replaced) on the same weights: features in float32 (the training dtype),
    then features and the gradients of every parameter and of the character embedding in float64,
    on words of 0 to 23 characters. The gradients sum thousands of terms, so in float32 the
    two summation orders differ by up to a few 1e-6 depending on the CPU's kernels (one
    AVX-512 Xeon gave 1.6e-6 on an element of 1.1e-3); in float64 the paths agree to about 1e-14,
    so a real difference cannot hide under the tolerance."""
    from normlab.models.lstm import packed_bilstm
    from normlab.models.tagger import CharFeatures, _directions

    torch.manual_seed(5)
    feats = CharFeatures(40, char_dim=7, hidden=6).train(training)
    g = torch.Generator().manual_seed(6)
    N, L = 300, 23
    lengths = torch.cat([torch.tensor([0, 1, L]), torch.randint(1, L + 1, (N - 3,), generator=g)])
    words = torch.randint(1, 40, (N, L), generator=g).masked_fill(torch.arange(L) >= lengths[:, None], 0)
    got = feats.of_words(words)
    ref = packed_bilstm(feats.embed(words), lengths.clamp(min=1), _directions(feats.lstm))[1]
    assert got.shape == (N, 12) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)

    feats = feats.double()
    got = feats.of_words(words)
    ref = packed_bilstm(feats.embed(words), lengths.clamp(min=1), _directions(feats.lstm))[1]
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    w = torch.randn(N, 12, generator=g, dtype=torch.float64)
    params = [feats.embed.weight, *feats.lstm.parameters()]
    got_grads = torch.autograd.grad((got * w).sum(), params)
    ref_grads = torch.autograd.grad((ref * w).sum(), params)
    for name, a, b in zip(["embed.weight"] + [n for n, _ in feats.lstm.named_parameters()], got_grads, ref_grads):
        assert a.abs().max() > 1e-3, f"{name}: a vanishing gradient tests nothing"
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")


def test_char_features_keep_nn_lstm_parameter_names():
    """Checkpoints of runs before the fused path still load: the state dict keys are nn.LSTM's."""
    model = make_model(char=True)
    keys = [k for k in model.state_dict() if k.startswith("chars.")]
    assert keys == ["chars.embed.weight"] + [f"chars.lstm.{k}_l0{d}" for d in ("", "_reverse")
                                            for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def _brute_force_buckets(lengths, call_cost):
    """The cheapest cut of sorted ``lengths`` into buckets by trying every cut between distinct lengths."""
    cuts = [i for i in range(1, len(lengths)) if lengths[i] != lengths[i - 1]]
    best = None
    for r in range(len(cuts) + 1):
        for chosen in itertools.combinations(cuts, r):
            bounds = [0, *chosen, len(lengths)]
            cost = sum((b - a) * lengths[b - 1] + call_cost for a, b in zip(bounds, bounds[1:]))
            if best is None or cost < best[0]:
                best = (cost, [(a, b, lengths[b - 1]) for a, b in zip(bounds, bounds[1:])])
    return best


@pytest.mark.parametrize("call_cost", [0, 3, 10, 40, 1000])
def test_length_buckets_are_the_cheapest_cut(call_cost):
    from normlab.models.tagger import _length_buckets

    g = torch.Generator().manual_seed(call_cost)
    for _ in range(20):
        lengths = torch.randint(1, 9, (int(torch.randint(1, 30, (1,), generator=g)),), generator=g).sort().values
        buckets = _length_buckets(lengths, call_cost)
        assert buckets[0][0] == 0 and buckets[-1][1] == len(lengths)
        assert all(b[1] == c[0] for b, c in zip(buckets, buckets[1:]))
        assert all(int(lengths[a:b].max()) == longest for a, b, longest in buckets)
        cost = sum((b - a) * longest + call_cost for a, b, longest in buckets)
        assert cost == _brute_force_buckets(lengths.tolist(), call_cost)[0]
    assert len(_length_buckets(torch.tensor([1, 2, 3, 4]), 0)) == 4  # free calls: one per length
    assert len(_length_buckets(torch.tensor([1, 2, 3, 4]), 1000)) == 1  # dear calls: one for all


def test_word_bilstm_equals_nn_lstm_over_a_packed_sequence_with_gradients():
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    model = make_model(char=False)
    lstm = model.lstm.lstm
    mask = torch.arange(7)[None, :] < torch.tensor([5, 2, 7, 1])[:, None]
    x = torch.randn(4, 7, 8).masked_fill(~mask[..., None], 1e3).requires_grad_()  # padding must not leak
    out = model.lstm(x, mask)
    packed = pack_padded_sequence(x, mask.sum(dim=1), batch_first=True, enforce_sorted=False)
    ref, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=7)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    w = torch.randn_like(ref)
    params = [x, lstm.weight_ih_l0, lstm.weight_hh_l0_reverse, lstm.bias_ih_l0_reverse]
    for g, r in zip(torch.autograd.grad((out * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


def test_pretrained_matrix_is_copied_and_fine_tuned():
    matrix = torch.randn(V, 11)
    model = BiLSTMTagger(999, K, pretrained=matrix, hidden=6, tag_names=TAGS)
    assert model.word_embed.weight.shape == (V, 11)
    assert torch.equal(model.word_embed.weight.detach(), matrix)
    assert model.word_embed.weight.requires_grad
    batch = make_batch([3, 2])
    model.loss(batch).backward()
    assert model.word_embed.weight.grad.abs().sum() > 0


def test_random_embedding_is_uniform_with_unit_variance_per_vector():
    model = BiLSTMTagger(2000, K, word_dim=100, hidden=4)
    w = model.word_embed.weight.detach()
    bound = (3.0 / 100) ** 0.5
    assert w.abs().max() <= bound
    assert abs(float((w ** 2).sum(1).mean()) - 1.0) < 0.05


def test_bad_inputs_are_value_errors():
    model = make_model(char=True)
    batch = make_batch([3, 2])
    with pytest.raises(ValueError, match="expected a batch with chars"):
        model.emissions(TaggerBatch(words=batch.words, mask=batch.mask, tags=batch.tags))
    with pytest.raises(ValueError, match="expected a batch with gold tags"):
        model.loss(TaggerBatch(words=batch.words, mask=batch.mask, chars=batch.chars))
    with pytest.raises(ValueError, match="tag names for BIO constraints"):
        BiLSTMTagger(V, K, crf=True, crf_constraints=True, tag_names=None)
