"""The adaptive_grad_clip grader: accepts right answers, names the known wrong ones."""
import re

import numpy as np
import pytest
import torch

from normlab import exercises as E
from normlab import training

NAME = "adaptive_grad_clip"


def rejects(fn, *fragments):
    """``check`` raises AssertionError and its message contains every fragment, literally."""
    with pytest.raises(AssertionError) as info:
        E.check(NAME, fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return message


def _norms(x, axes):
    return np.sqrt((x * x).sum(axis=axes, keepdims=True))


def test_listed_with_its_signature():
    assert NAME in E.names()
    assert "fn(weight, grad, clipping, eps) -> clipped_grad" in E.describe(NAME)


def test_the_shown_solution_passes_with_one_line(capsys):
    source = E.solution_source(NAME)
    assert source.startswith(f"def {NAME}(")
    namespace = {"np": np}
    exec(source, namespace)
    assert E.check(NAME, namespace[NAME]) is None
    assert re.fullmatch(rf"{NAME}: (\d+)/\1 cases match to 1e-10\n", capsys.readouterr().out)


def _torch_agc(weight, grad, clipping, eps):
    """An independent version on torch tensors, with torch's own per-row norms."""
    w, g = torch.tensor(weight), torch.tensor(grad)
    w_norm = w.flatten(1).norm(dim=1).clamp_min(eps) * clipping
    g_norm = g.flatten(1).norm(dim=1)
    factor = torch.where(g_norm > w_norm, w_norm / g_norm, torch.ones_like(g_norm))
    return (g * factor.view(-1, *([1] * (g.dim() - 1)))).numpy()


def _in_place_on_the_grad(weight, grad, clipping, eps):
    """The library's own function, applied to a parameter whose .grad is the reader's array."""
    param = torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(weight)))
    param.grad = torch.from_numpy(np.array(grad))
    training.adaptive_grad_clip_([param], clipping=clipping, eps=eps)
    return param.grad.numpy()


@pytest.mark.parametrize("fn", [_torch_agc, _in_place_on_the_grad])
def test_other_correct_versions_pass(fn, capsys):
    E.check(NAME, fn)
    assert "cases match" in capsys.readouterr().out


def test_the_mistake_helper_without_a_keyword_is_the_reference():
    grader = E._GRADERS[NAME]
    for case in grader.cases(np.random.default_rng(E._SEED)):
        want = grader.reference(*case.fresh_args())
        assert E._max_error(E._agc(*case.fresh_args()), want)[0] <= grader.rtol / 10


def test_the_cases_cover_what_the_mistakes_need():
    """Units over and under the bound in one tensor, a zero-weight unit, 2-D and 4-D weights,
    a non-contiguous input, and a grad the reference leaves exactly as it was."""
    cases = E._adaptive_grad_clip(np.random.default_rng(E._SEED))
    ndims = {c.args["weight"].ndim for c in cases}
    assert ndims == {2, 4}
    assert any(not c.args["grad"].flags.c_contiguous for c in cases)
    mixed = zero_unit = untouched = False
    for c in cases:
        w, g, lam, eps = (c.args[k] for k in ("weight", "grad", "clipping", "eps"))
        axes = tuple(range(1, w.ndim))
        ratio = (_norms(g, axes) / (lam * np.maximum(_norms(w, axes), eps))).ravel()
        assert np.all((ratio < 0.6) | (ratio > 1.9)), "a unit too close to the bound"
        mixed |= bool(ratio.max() > 1 and ratio.min() < 1)
        zero_unit |= bool((_norms(w, axes) == 0).any())
        out = E._GRADERS[NAME].reference(*c.fresh_args())
        untouched |= bool(np.array_equal(out, g))
    assert mixed and zero_unit and untouched


def test_known_mistakes_written_by_hand_are_named():
    def agc(weight, grad, clipping, eps, axes=None, floor=True, every_unit=False):
        axes = tuple(range(1, weight.ndim)) if axes is None else axes(weight.ndim)
        w_norm = _norms(weight, axes)
        bound = clipping * (np.maximum(w_norm, eps) if floor else w_norm)
        g_norm = _norms(grad, axes)
        if every_unit:
            return grad * bound / g_norm
        return np.where(g_norm > bound, grad * bound / np.maximum(g_norm, 1e-300), grad)

    rejects(lambda w, g, lam, eps: agc(w, g, lam, eps, axes=lambda n: tuple(range(n))),
            "case 1/6", "looks like one norm for the whole tensor")
    rejects(lambda w, g, lam, eps: agc(w, g, lam, eps, every_unit=True),
            "case 1/6", "looks like every unit rescaled to the bound")
    rejects(lambda w, g, lam, eps: agc(w, g, lam, eps, floor=False),
            "case 3/6 'a zero-initialized unit", "looks like the weight norm not floored at eps")
    rejects(lambda w, g, lam, eps: agc(w, g, lam, eps, axes=lambda n: (0,) + tuple(range(2, n))),
            "case 1/6", "looks like norms over the wrong axes: one per input unit")
    # the NumPy habit of reducing over the last axis, from JAX's (in, out) layout
    rejects(lambda w, g, lam, eps: agc(w, g, lam, eps, axes=lambda n: tuple(range(n - 1))),
            "case 1/6", "looks like norms over the wrong axes")


def test_no_clipping_at_all_is_named_as_the_input_returned():
    rejects(lambda weight, grad, clipping, eps: grad, "case 1/6",
            "clipped_grad is the input grad, returned unchanged")


def test_every_table_mistake_is_rejected_and_named_as_itself():
    for mistake in E._GRADERS[NAME].mistakes:
        with np.errstate(all="ignore"):
            rejects(mistake.fn, "looks like " + mistake.name)


def test_wrong_shape_is_reported_with_both_shapes():
    solve = E.solution(NAME)
    rejects(lambda w, g, lam, eps: solve(w, g, lam, eps).reshape(len(w), -1),
            "case 2/6 'conv weight (out, in, 3, 3)'",
            "returned clipped_grad of shape (4, 27), expected (4, 3, 3, 3)")
    rejects(lambda w, g, lam, eps: _norms(g, tuple(range(1, g.ndim))),
            "returned clipped_grad of shape (6, 1), expected (6, 5)")
