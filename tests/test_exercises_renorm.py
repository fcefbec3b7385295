"""The renorm_correction grader (chapter 08): accepts batch renormalization's r and d however
written, and names the usual mistakes."""
import re

import numpy as np
import pytest
import torch

from normlab import exercises as E
from normlab import functional as F

NAME = "renorm_correction"
SIGNATURE = "fn(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax) -> (r, d)"


def rejects(fn, *fragments):
    """``check`` raises AssertionError and its message contains every fragment, literally."""
    with pytest.raises(AssertionError) as info:
        with np.errstate(all="ignore"):
            E.check(NAME, fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return message


def test_registered_with_its_signature():
    assert NAME in E.names()
    assert SIGNATURE in E.describe(NAME)


def test_the_shown_solution_passes(capsys):
    source = E.solution_source(NAME)
    assert source.startswith(f"def {NAME}(")
    namespace = {"np": np}
    exec(source, namespace)
    assert E.check(NAME, namespace[NAME]) is None
    assert re.fullmatch(rf"{NAME}: (\d+)/\1 cases match to 1e-10\n", capsys.readouterr().out)


def test_other_correct_versions_pass(capsys):
    def with_torch(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        t = [torch.tensor(a) for a in (batch_mean, batch_std, running_mean, running_var)]
        r, d = F.batch_renorm_correction(*t, eps, rmax, dmax)
        return r.numpy(), d.numpy()

    def with_min_max(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        inv_sigma = 1.0 / np.sqrt(running_var + eps)
        r = np.minimum(np.maximum(batch_std * inv_sigma, 1 / rmax), rmax)
        d = np.maximum(np.minimum((batch_mean - running_mean) * inv_sigma, dmax), -dmax)
        return r, d

    for fn in (with_torch, with_min_max):
        E.check(NAME, fn)
    assert capsys.readouterr().out.count("cases match") == 2


def test_the_cases_cover_the_bounds():
    """Both clip bounds of r and d are reached, the warm-up gives exactly r = 1, d = 0, and at
    least one case is non-contiguous."""
    grader = E._GRADERS[NAME]
    cases = grader.cases(np.random.default_rng(E._SEED))
    first = cases[0].args
    r, d = grader.reference(*cases[0].fresh_args())
    assert np.isclose(r.min(), 1 / first["rmax"]) and np.isclose(r.max(), first["rmax"])
    assert np.isclose(d.min(), -first["dmax"]) and np.isclose(d.max(), first["dmax"])
    warm = next(c for c in cases if c.args["rmax"] == 1.0)
    r, d = grader.reference(*warm.fresh_args())
    assert np.all(r == 1.0) and np.all(d == 0.0)
    assert any(not a.flags.c_contiguous for c in cases for a in c.args.values()
               if isinstance(a, np.ndarray))


# ------------------------------------------------- the named mistakes, written by hand
def _solution(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
    return E.solution(NAME)(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax)


def test_swapped_bounds_are_named():
    def swapped(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        sigma = np.sqrt(running_var + eps)
        r = np.clip(batch_std / sigma, rmax, 1 / rmax)
        return r, np.clip((batch_mean - running_mean) / sigma, -dmax, dmax)
    rejects(swapped, "case 1/8 'both bounds reached", "r differs from the reference",
            "looks like the clip bounds of r swapped")


def test_no_lower_bound_is_named():
    def only_above(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        sigma = np.sqrt(running_var + eps)
        r = np.minimum(batch_std / sigma, rmax)
        return r, np.clip((batch_mean - running_mean) / sigma, -dmax, dmax)

    def like_d(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        sigma = np.sqrt(running_var + eps)
        r = np.clip(batch_std / sigma, -rmax, rmax)
        return r, np.clip((batch_mean - running_mean) / sigma, -dmax, dmax)
    for fn in (only_above, like_d):
        rejects(fn, "looks like r not clipped from below at 1/rmax")


def test_inverted_r_is_named():
    def inverted(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        sigma = np.sqrt(running_var + eps)
        r = np.clip(sigma / batch_std, 1 / rmax, rmax)
        return r, np.clip((batch_mean - running_mean) / sigma, -dmax, dmax)
    rejects(inverted, "looks like r inverted: sigma / sigma_B")


def test_sigma_without_eps_is_named():
    def no_eps(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        sigma = np.sqrt(running_var)
        r = np.clip(batch_std / sigma, 1 / rmax, rmax)
        return r, np.clip((batch_mean - running_mean) / sigma, -dmax, dmax)
    rejects(no_eps, "looks like the running sigma without eps")


def test_d_over_batch_std_is_named():
    def d_over_batch(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        r, _ = _solution(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax)
        return r, np.clip((batch_mean - running_mean) / batch_std, -dmax, dmax)
    rejects(d_over_batch, "d differs from the reference",
            "looks like d divided by the batch's sigma_B instead of the running sigma")


def test_d_sign_is_named():
    def flipped(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        r, d = _solution(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax)
        return r, -d
    rejects(flipped, "looks like d with the wrong sign")


def test_no_clipping_is_named():
    def unclipped(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        sigma = np.sqrt(running_var + eps)
        return batch_std / sigma, (batch_mean - running_mean) / sigma
    rejects(unclipped, "looks like r and d not clipped at all")


@pytest.mark.parametrize("mistake", E._GRADERS[NAME].mistakes, ids=lambda m: m.name[:30])
def test_every_table_mistake_is_named_as_itself(mistake):
    rejects(mistake.fn, "looks like " + mistake.name)


def test_the_mistake_helper_without_keywords_is_the_reference():
    grader = E._GRADERS[NAME]
    for case in grader.cases(np.random.default_rng(E._SEED)):
        for got, want in zip(E._renorm(*case.fresh_args()),
                             grader.reference(*case.fresh_args())):
            assert E._max_error(got, want)[0] <= grader.rtol / 10


# ------------------------------------------------------------- structure before numbers
def test_wrong_shape_is_named():
    def keepdims(*args):
        r, d = _solution(*args)
        return r[None, :], d
    rejects(keepdims, "returned r of shape (1, 12), expected (12,)")


def test_wrong_arity_and_type_are_named():
    rejects(lambda *a: _solution(*a)[0], "returned one ndarray, expected a tuple of 2 (r, d)")
    rejects(lambda *a: tuple(torch.tensor(v) for v in _solution(*a)),
            "returned r as Tensor, expected a NumPy ndarray")
    rejects(lambda *a: tuple(v.astype(np.float32) for v in _solution(*a)),
            "returned r with dtype float32, expected float64")


def test_input_returned_unchanged_is_named():
    def ratio_forgotten(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
        _, d = _solution(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax)
        return batch_std, d
    rejects(ratio_forgotten, "r is the input batch_std, returned unchanged")
