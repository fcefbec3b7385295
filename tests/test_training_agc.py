"""train(..., clip_grads=...): a hook between backward() and the optimizer step (for AGC)."""
import functools

import pytest
import torch
from torch import nn

from normlab import data, models, training


def _split(n=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 5, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    return data.Split(X, y, X[:12], y[:12])


def _net(seed=0):
    training.set_seed(seed)
    return models.resnet("none", depth=2, width=4, num_classes=3, skip_init=False).double()


def test_clip_grads_equals_a_hand_loop_doing_the_same():
    """float64, a few steps, momentum: same batches, same clipping, same parameters."""
    split, steps, lr, bs = _split(), 5, 0.5, 8
    agc = functools.partial(training.adaptive_grad_clip_, clipping=0.01)
    model = _net()
    hist = training.train(model, split, steps=steps, lr=lr, batch_size=bs, momentum=0.9,
                          seed=3, clip_grads=agc)

    by_hand = _net()
    opt = torch.optim.SGD(by_hand.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(3)
    losses = []
    for idx in training.minibatches(len(split.y_train), bs, gen):
        if len(losses) == steps:
            break
        loss = nn.functional.cross_entropy(by_hand(split.X_train[idx]), split.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        agc(by_hand.parameters())
        opt.step()
        losses.append(loss.item())
    assert hist.loss == losses
    for p, q in zip(model.parameters(), by_hand.parameters()):
        assert torch.equal(p, q)
    # ...and the clipping mattered: without it the run ends elsewhere
    unclipped = _net()
    training.train(unclipped, split, steps=steps, lr=lr, batch_size=bs, momentum=0.9, seed=3)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), unclipped.parameters()))


def test_clip_grads_is_called_every_step_after_backward_before_the_step():
    split, steps = _split(), 7
    model = _net()
    calls = []

    def spy(params):
        params = list(params)
        assert [id(p) for p in params] == [id(p) for p in model.parameters()]
        assert all(p.grad is not None for p in params)        # after backward()
        # before the optimizer step: the parameters are those the last on_step saw
        assert all(torch.equal(p, s) for p, s in zip(params, snapshot))
        calls.append(len(calls) + 1)

    snapshot = [p.detach().clone() for p in model.parameters()]

    def on_step(step, m):
        snapshot[:] = [p.detach().clone() for p in m.parameters()]

    hist = training.train(model, split, steps=steps, lr=0.1, batch_size=8, clip_grads=spy,
                          on_step=on_step)
    assert calls == list(range(1, steps + 1)) and len(hist.loss) == steps


def test_clip_grads_may_zero_the_update():
    split = _split()
    model = _net()
    before = [p.detach().clone() for p in model.parameters()]

    def zero(params):
        for p in params:
            p.grad.zero_()
    training.train(model, split, steps=3, lr=0.1, batch_size=8, clip_grads=zero)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_without_clip_grads_nothing_changes():
    split = _split()
    a, b = _net(), _net()
    ha = training.train(a, split, steps=4, lr=0.1, batch_size=8, momentum=0.9)
    hb = training.train(b, split, steps=4, lr=0.1, batch_size=8, momentum=0.9, clip_grads=None)
    assert ha.loss == hb.loss


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_bad_clipping_is_refused_at_the_first_step(bad):
    with pytest.raises(ValueError, match="clipping must be a positive finite number"):
        training.train(_net(), _split(), steps=2, lr=0.1, batch_size=8,
                       clip_grads=functools.partial(training.adaptive_grad_clip_, clipping=bad))
