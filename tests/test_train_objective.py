"""rho.train.objective: token weights and normalisation per objective and selection scope."""

from __future__ import annotations

import pytest
import torch

from rho.loss import slm_loss, token_loss
from rho.selection import SelectionConfig, keep_count, select_combined, topk_mask
from rho.train.batches import Batch
from rho.train.distributed import DistContext
from rho.train.objective import Objective, StepSelector

CTX = DistContext()


def _batches(n_micro: int, b: int = 2, L: int = 8, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_micro):
        ids = torch.randint(0, 50, (b, L), generator=g)
        labels = torch.cat([ids[:, 1:], torch.full((b, 1), -100)], 1)
        ref = torch.rand(b, L, generator=g) * 4
        ref[:, -1] = float("nan")
        ent = torch.rand(b, L, generator=g) * 3
        ent[:, -1] = float("nan")
        out.append(Batch(ids, labels, ref, ent))
    return out


def _losses(batches: list[Batch], seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b.labels.shape, generator=g) * 5 for b in batches]


def test_global_scope_over_micro_batches_equals_one_topk_on_the_concatenation() -> None:
    batches, losses = _batches(3), _losses(_batches(3))
    obj = Objective("slm", SelectionConfig(ratio=0.3, scope="global"))
    sel = StepSelector(obj, batches, CTX)
    assert sel.needs_scoring_pass
    sel.prepare(losses)
    got = torch.cat([sel.weights(m, losses[m])[0] for m in range(3)])
    ref = torch.cat([b.ref_loss for b in batches])
    labels = torch.cat([b.labels for b in batches])
    want = topk_mask(torch.cat(losses) - ref, 0.3, labels != -100)
    assert torch.equal(got.bool(), want)
    n_valid = 3 * 2 * 7
    assert sel.weights(0, losses[0])[1] == keep_count(n_valid, 0.3) == int(want.sum())


def test_micro_scope_selects_and_normalises_each_micro_batch() -> None:
    batches = _batches(2)
    losses = _losses(batches)
    sel = StepSelector(Objective("slm", SelectionConfig(ratio=0.5, scope="micro")), batches, CTX)
    assert not sel.needs_scoring_pass
    for m in range(2):
        w, denom = sel.weights(m, losses[m])
        want = topk_mask(losses[m] - batches[m].ref_loss, 0.5, batches[m].labels != -100)
        assert torch.equal(w.bool(), want)
        assert denom == int(want.sum()) * 2  # its own count times grad_accum: the mean of micro means


def test_accumulated_global_loss_has_the_gradient_of_one_slm_loss_on_the_whole_batch() -> None:
    torch.manual_seed(0)
    batches = _batches(2)
    head = torch.nn.Linear(5, 50)
    feats = [torch.randn(b.labels.shape + (5,)) for b in batches]
    obj = Objective("slm", SelectionConfig(ratio=0.4, scope="global"))
    sel = StepSelector(obj, batches, CTX)
    sel.prepare([token_loss(head(f), b.labels).detach() for f, b in zip(feats, batches, strict=True)])
    for m, (f, b) in enumerate(zip(feats, batches, strict=True)):
        tl = token_loss(head(f), b.labels)
        w, denom = sel.weights(m, tl.detach())
        ((w * tl).sum() / denom).backward()
    grad_accum = head.weight.grad.clone()
    head.zero_grad()
    whole = torch.cat(feats)
    loss, _ = slm_loss(
        head(whole), torch.cat([b.labels for b in batches]), torch.cat([b.ref_loss for b in batches]), 0.4
    )
    loss.backward()
    torch.testing.assert_close(grad_accum, head.weight.grad, rtol=1e-5, atol=1e-7)


def test_ratio_one_slm_weights_equal_clm_weights() -> None:
    batches = _batches(2)
    losses = _losses(batches)
    slm = StepSelector(Objective("slm", SelectionConfig(ratio=1.0)), batches, CTX)
    clm = StepSelector(Objective("clm"), batches, CTX)
    slm.prepare(losses)
    for m in range(2):
        ws, ds = slm.weights(m, losses[m])
        wc, dc = clm.weights(m, losses[m])
        assert torch.equal(ws, wc) and ds == dc == 2 * 2 * 7


def test_reference_only_scores_need_no_train_loss_and_combine_like_table4() -> None:
    batches = _batches(2)
    losses = _losses(batches)
    obj = Objective(
        "slm",
        SelectionConfig(
            ratio=0.7,
            score="ref_loss",
            score2="ref_entropy",
            ratio2=0.7,
            op="intersection",
        ),
    )
    sel = StepSelector(obj, batches, CTX)
    assert not obj.needs_train_loss and not sel.needs_scoring_pass
    w = torch.cat([sel.weights(m, losses[m])[0] for m in range(2)])
    ref = torch.cat([b.ref_loss for b in batches])
    ent = torch.cat([b.ref_entropy for b in batches])
    want, eff = select_combined(-ref, 0.7, -ent, 0.7, "intersection")
    assert torch.equal(w.bool(), want) and 0 < eff < 0.7


def test_reweight_weights_sum_to_valid_count() -> None:
    batches = _batches(2)
    losses = _losses(batches)
    sel = StepSelector(Objective("reweight", SelectionConfig(temperature=0.5)), batches, CTX)
    sel.prepare(losses)
    ws = [sel.weights(m, losses[m]) for m in range(2)]
    total = sum(float(w.sum()) for w, _ in ws)
    assert total == pytest.approx(28, rel=1e-5) and ws[0][1] == pytest.approx(28, rel=1e-5)
    assert all(float(w[:, -1].abs().sum()) == 0 for w, _ in ws)  # no weight on the unlabeled column


def test_global_excess_without_all_losses_is_refused() -> None:
    batches = _batches(2)
    sel = StepSelector(Objective("slm", SelectionConfig(ratio=0.5)), batches, CTX)
    with pytest.raises(ValueError, match="train loss of every micro-batch"):
        sel.weights(0, _losses(batches)[0])
