"""The exercise graders accept right answers, however written, and name the wrong ones."""
import functools
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from normlab import exercises as E
from normlab import inference, mistakes, numerics, style

NAMES = E.names()
SIGNATURES = {
    "batchnorm_forward": "fn(x, gamma, beta, eps) -> out",
    "batchnorm_backward": "fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)",
    "running_stats_update": "fn(running_mean, running_var, x, momentum) -> (mean, var)",
    "batchnorm2d_forward": "fn(x, gamma, beta, eps) -> out",
    "layernorm_backward": "fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)",
    "groupnorm_forward": "fn(x, num_groups, gamma, beta, eps) -> out",
    "groupnorm_backward": "fn(dout, x, num_groups, gamma, eps) -> (dx, dgamma, dbeta)",
    "adain": "fn(content, style, eps) -> out",
    "fold_batchnorm":
        "fn(conv_weight, conv_bias, gamma, beta, running_mean, running_var, eps) -> (weight, bias)",
    "welford_variance": "fn(x) -> (mean, var)",
    "adaptive_grad_clip": "fn(weight, grad, clipping, eps) -> clipped_grad",
    "renorm_correction":
        "fn(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax) -> (r, d)",
    "parallel_variance": "fn(counts, means, m2s) -> (count, mean, var)",
}


def rejects(name, fn, *fragments):
    """``check`` raises AssertionError and its message contains every fragment, literally."""
    with pytest.raises(AssertionError) as info:
        E.check(name, fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return message


# ------------------------------------------------------------------------------ the API
def test_names_and_signatures():
    assert NAMES == list(SIGNATURES)
    for name, signature in SIGNATURES.items():
        assert signature in E.describe(name)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid names: batchnorm_forward, batchnorm_backward"):
        E.check("batchnorm", E.solution("batchnorm_forward"))


@pytest.mark.parametrize("name", NAMES)
def test_the_shown_solution_passes_with_one_line(name, capsys):
    source = E.solution_source(name)
    assert source.startswith(f"def {name}(")
    namespace = {"np": np}
    exec(source, namespace)  # the text a chapter shows, not only the function behind it
    assert E.check(name, namespace[name]) is None
    tolerance = "0.001" if name == "welford_variance" else "1e-10"
    assert re.fullmatch(rf"{name}: (\d+)/\1 cases match to {tolerance}\n",
                        capsys.readouterr().out)


def test_success_line_is_the_same_on_every_run(capsys):
    for _ in range(2):
        E.check("batchnorm_backward", E.solution("batchnorm_backward"))
    assert capsys.readouterr().out == "batchnorm_backward: 6/6 cases match to 1e-10\n" * 2


# ------------------------------------------------- every grader: generic wrong answers
def _edited(name, edit):
    """The reference solution with ``edit(outputs, args) -> outputs`` applied."""
    solve = E.solution(name)

    def fn(*args):
        out = solve(*args)
        return edit(list(out) if isinstance(out, tuple) else [out], args)
    return fn


def _first_with_nan(outs, args):
    first = np.array(outs[0], copy=True)         # 0-d for a scalar output
    first.flat[0] = np.nan
    return [first if first.ndim else first[()]] + outs[1:]


def _first_is_input(outs, args):
    same = [a for a in args if isinstance(a, np.ndarray) and a.shape == outs[0].shape]
    return [same[0]] + outs[1:]


def _single(outs):
    return outs[0] if len(outs) == 1 else tuple(outs)


@pytest.mark.parametrize("name", NAMES)
def test_nan_is_named(name):
    rejects(name, _edited(name, lambda o, a: _single(_first_with_nan(o, a))),
            "contains NaN", "case 1/")


# No output of these has the shape of an input (welford_variance: x (N,) -> two scalars;
# parallel_variance: (R,), (R, C) -> a scalar and two (C,)), so an input returned as an output
# is a shape error, which test_wrong_shape_* and the graders' own tests cover.
_NO_INPUT_SHAPED_OUTPUT = ("welford_variance", "parallel_variance")


@pytest.mark.parametrize("name", [n for n in NAMES if n not in _NO_INPUT_SHAPED_OUTPUT])
def test_input_returned_unchanged_is_named(name):
    rejects(name, _edited(name, lambda o, a: _single(_first_is_input(o, a))),
            "returned unchanged")


@pytest.mark.parametrize("name", NAMES)
def test_starter_stub_is_reported_not_raised(name, capsys):
    # a chapter's stub must not stop a notebook's Run All: one line, no exception
    def stub(*args):
        raise NotImplementedError("write this function")
    assert E.check(name, stub) is None
    assert capsys.readouterr().out == (
        f"{name}: not implemented yet -- replace the `raise NotImplementedError` in stub with "
        "your code and run this cell again\n")


def test_not_implemented_raised_deeper_propagates(capsys):
    # the reader's function ran and called something that is missing: that is a real error
    def missing(x):
        raise NotImplementedError("no kernel for this backend")

    def attempt(x, gamma, beta, eps):
        return missing(x)
    with pytest.raises(NotImplementedError, match="^no kernel for this backend$"):
        E.check("batchnorm_forward", attempt)
    assert capsys.readouterr().out == ""


def test_not_implemented_from_a_torch_operation_propagates(capsys):
    # raised in C: no Python frame of its own, so the last frame is the reader's, stopped at a
    # call (not at a raise statement)
    def attempt(x, gamma, beta, eps):
        return torch.sort(torch.from_numpy(x).to_sparse())
    with pytest.raises(NotImplementedError, match="SparseCPU"):
        E.check("batchnorm_forward", attempt)
    assert capsys.readouterr().out == ""


def test_not_implemented_on_a_later_case_propagates(capsys):
    # the reader's own raise, hit only once their function has answered a case: not a stub
    solve, answered = E.solution("batchnorm_forward"), []

    def partial_support(x, gamma, beta, eps):
        if answered:
            raise NotImplementedError("only the first shape")
        answered.append(True)
        return solve(x, gamma, beta, eps)
    with pytest.raises(NotImplementedError, match="^only the first shape$"):
        E.check("batchnorm_forward", partial_support)
    assert capsys.readouterr().out == ""


def test_wrapped_and_callable_stubs_are_reported(capsys):
    def stub(x, gamma, beta, eps, scale):
        raise NotImplementedError

    class Stub:
        def __call__(self, x, gamma, beta, eps):
            raise NotImplementedError("your code here")
    for fn, shown in [(functools.partial(stub, scale=1), "stub"), (Stub(), "Stub")]:
        assert E.check("batchnorm_forward", fn) is None
        assert capsys.readouterr().out.startswith(
            f"batchnorm_forward: not implemented yet -- replace the `raise NotImplementedError` "
            f"in {shown} with")


def test_other_exceptions_propagate_unprefixed():
    def broken(x, gamma, beta, eps):
        raise ValueError("operands could not be broadcast")
    with pytest.raises(ValueError) as info:
        E.check("batchnorm_forward", broken)
    assert str(info.value) == "operands could not be broadcast"


@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_inputs_reach_the_function(name):
    seen = []

    def spy(*args):
        seen.append(all(a.flags.c_contiguous for a in args if isinstance(a, np.ndarray)))
        return E.solution(name)(*args)
    E.check(name, spy)
    assert not all(seen)


# ------------------------------------------------------- structure before numbers
def test_wrong_shape_names_both_shapes():
    rejects("batchnorm2d_forward", lambda x, gamma, beta, eps: x.mean(axis=(2, 3)),
            "returned out of shape (4, 3), expected (4, 3, 5, 5)")


def test_wrong_arity_counts_the_arrays():
    bwd = E.solution("batchnorm_backward")
    rejects("batchnorm_backward", lambda *a: bwd(*a)[:2],
            "returned 2 arrays, expected 3 (dx, dgamma, dbeta)")
    fwd = E.solution("batchnorm_forward")
    rejects("batchnorm_forward", lambda *a: (fwd(*a), {}), "tuple of 2", "not (out, cache)")
    rejects("batchnorm_forward", lambda *a: None, "returned None")


def test_type_and_dtype_are_checked():
    fwd = E.solution("batchnorm_forward")
    rejects("batchnorm_forward", lambda *a: torch.tensor(fwd(*a)),
            "returned out as Tensor, expected a NumPy ndarray")
    rejects("batchnorm_forward", lambda *a: fwd(*a).astype(np.float32),
            "returned out with dtype float32, expected float64")
    welford = E.solution("welford_variance")
    rejects("welford_variance", lambda x: tuple(float(v) for v in welford(x)),
            "returned mean as float, expected a NumPy float32 scalar")


def test_a_later_shape_problem_is_not_hidden_behind_an_earlier_numeric_one():
    def wrong_everywhere(x, gamma, beta, eps):
        out = gamma * (x - x.mean(0)) / (x.std(0) + eps) + beta   # numerically off everywhere
        return out[:1] if len(x) == 2 else out                      # wrong shape for N = 2
    rejects("batchnorm_forward", wrong_everywhere,
            "case 2/6 'batch of two'", "returned out of shape (1, 6), expected (2, 6)")


# ------------------------------------------------- known mistakes, written by hand
def _affine(normalize):
    """A forward pass from a torch normalizer without parameters."""
    return lambda x, gamma, beta, eps: (
        E._per_channel(gamma, x.ndim) * normalize(torch.tensor(x), eps).numpy()
        + E._per_channel(beta, x.ndim))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # 0/0 on purpose
def test_batchnorm_forward_mistakes():
    name = "batchnorm_forward"
    rejects(name, lambda x, g, b, eps: g * (x - x.mean(0)) / (x.std(0) + eps) + b,
            "looks like std + eps in the denominator")
    rejects(name, _affine(mistakes.batch_norm_std_plus_eps), "std + eps in the denominator")
    rejects(name, _affine(mistakes.batch_norm_unbiased), "looks like the unbiased variance")
    rejects(name, lambda x, g, b, eps: g * (x - x.mean(0)) / x.std(0) + b,
            "contains NaN", "a constant feature", "looks like eps left out")
    rejects(name, lambda x, g, b, eps: g * (x - x.mean(0)) / np.sqrt(
        (x ** 2).mean(0) - x.mean(0) ** 2 + eps) + b,
        "large mean", "looks like the one-pass E[x^2] - E[x]^2 formula")
    rejects(name, lambda x, g, b, eps: g * (x - x.mean(1, keepdims=True)) / np.sqrt(
        x.var(1, keepdims=True) + eps) + b, "wrong axes: (1,) instead of (0,)")


def test_batchnorm2d_forward_mistakes():
    name = "batchnorm2d_forward"
    for axes, what in (((0,), "(0,) instead of (0, 2, 3)"),
                       ((2, 3), "(2, 3) instead of (0, 2, 3) -- that is instance norm"),
                       ((0, 2), "(0, 2) instead of (0, 2, 3)")):
        rejects(name, _affine(lambda x, eps, axes=axes: mistakes.batch_norm_over(x, axes, eps)),
                f"looks like statistics taken over the wrong axes: {what}")
    rejects(name, _affine(mistakes.batch_norm_std_plus_eps), "std + eps in the denominator")


def _bn_parts(x, eps, axis=0):
    mean = x.mean(axis, keepdims=True)
    std = np.sqrt(x.var(axis, keepdims=True) + eps)
    return (x - mean) / std, std


def test_batchnorm_backward_mistakes():
    name = "batchnorm_backward"
    solve = E.solution(name)

    def per_sample(dout, x, gamma, eps):
        xhat, _ = _bn_parts(x, eps)
        return solve(dout, x, gamma, eps)[0], dout * xhat, dout
    rejects(name, per_sample, "returned dgamma of shape (8, 5), expected (5,)",
            "looks like dgamma is missing the sum over the batch")

    def constants(dout, x, gamma, eps):
        xhat, std = _bn_parts(x, eps)
        return dout * gamma / std, (dout * xhat).sum(0), dout.sum(0)
    rejects(name, constants, "looks like dx treats the mean and variance as constants")


def test_batchnorm_backward_accepts_the_staged_derivation():
    """The step-by-step chain rule (CS231n's graph) rounds differently: still within 1e-10."""
    def staged(dout, x, gamma, eps):
        n = len(x)
        mu = x.mean(0)
        xmu = x - mu
        var = (xmu ** 2).mean(0)
        ivar = 1 / np.sqrt(var + eps)
        dxhat = dout * gamma
        dvar = np.sum(dxhat * xmu, 0) * -0.5 * ivar ** 3
        dmu = np.sum(-dxhat * ivar, 0) + dvar * np.mean(-2 * xmu, 0)
        dx = dxhat * ivar + dvar * 2 * xmu / n + dmu / n
        return dx, np.sum(dout * xmu * ivar, 0), dout.sum(0)
    E.check("batchnorm_backward", staged)


def test_running_stats_mistakes():
    name = "running_stats_update"

    def keras(rm, rv, x, m):
        return m * rm + (1 - m) * x.mean(0), m * rv + (1 - m) * x.var(0, ddof=1)
    rejects(name, keras, "looks like momentum applied to the old value instead of the new one",
            "Keras convention, not PyTorch's")

    def biased(rm, rv, x, m):
        return (1 - m) * rm + m * x.mean(0), (1 - m) * rv + m * x.var(0)
    rejects(name, biased, "var differs", "looks like the running variance is the biased one")

    def no_complement(rm, rv, x, m):
        t = lambda a: torch.tensor(a)  # noqa: E731
        return tuple(mistakes.running_average_without_complement(t(r), t(b), m).numpy()
                     for r, b in ((rm, x.mean(0)), (rv, x.var(0, ddof=1))))
    rejects(name, no_complement, "the (1 - momentum) factor is missing")


def test_layernorm_backward_mistakes():
    name = "layernorm_backward"
    solve = E.solution(name)

    def per_sample(dout, x, gamma, eps):
        xhat, _ = _bn_parts(x, eps, axis=1)
        return solve(dout, x, gamma, eps)[0], dout * xhat, dout
    rejects(name, per_sample, "dgamma is missing the sum over the batch")

    def over_features(dout, x, gamma, eps):
        xhat, _ = _bn_parts(x, eps, axis=1)
        return solve(dout, x, gamma, eps)[0], (dout * xhat).sum(1), dout.sum(1)
    rejects(name, over_features, "returned dgamma of shape (6,), expected (10,)",
            "summed over the features (axis 1)")

    def constants(dout, x, gamma, eps):
        _, std = _bn_parts(x, eps, axis=1)
        return (dout * gamma / std,) + solve(dout, x, gamma, eps)[1:]
    rejects(name, constants, "treats the mean and variance as constants")


def _gn_by(view, axes):
    """Group norm with x reshaped to ``view(x, G)`` and reduced over ``axes``."""
    def fn(x, num_groups, gamma, beta, eps):
        v = x.reshape(view(x, num_groups))
        v = (v - v.mean(axes, keepdims=True)) / np.sqrt(v.var(axes, keepdims=True) + eps)
        return gamma[:, None, None] * v.reshape(x.shape) + beta[:, None, None]
    return fn


def test_groupnorm_forward_mistakes():
    name = "groupnorm_forward"
    rejects(name, _gn_by(lambda x, g: (x.shape[0], x.shape[1], -1), 2),
            "per channel instead of per group -- that is instance norm")
    rejects(name, _gn_by(lambda x, g: (x.shape[0], -1), 1), "that is layer norm")
    rejects(name, _gn_by(lambda x, g: (g, -1), 1), "looks like the reshape mixes samples")

    def published(x, num_groups, gamma, beta, eps):
        y = mistakes.group_norm_mixed_reshape(torch.tensor(x), num_groups, eps).numpy()
        return gamma[:, None, None] * y + beta[:, None, None]
    rejects(name, published, "the reshape mixes samples")


def test_groupnorm_backward_mistakes():
    name = "groupnorm_backward"
    solve = E.solution(name)

    def gamma_outside(dout, x, num_groups, gamma, eps):
        dx_without_gamma = solve(dout, x, num_groups, np.ones_like(gamma), eps)[0]
        return (dx_without_gamma * gamma[:, None, None],) + solve(dout, x, num_groups, gamma,
                                                                  eps)[1:]
    rejects(name, gamma_outside, "gamma multiplied in after the group sums")

    def per_sample(dout, x, num_groups, gamma, eps):
        dx, _, _ = solve(dout, x, num_groups, gamma, eps)
        xhat = E._forward(x, np.ones(x.shape[1]), np.zeros(x.shape[1]), eps,
                          E._gn_layout(x, num_groups))
        return dx, (dout * xhat).sum((2, 3)), dout.sum((2, 3))
    rejects(name, per_sample, "dgamma is missing the sum over the batch")


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # 0/0 on purpose
def test_adain_mistakes():
    name = "adain"

    def stats(a, axes, eps, ddof=0):
        return a.mean(axes, keepdims=True), np.sqrt(a.var(axes, ddof=ddof, keepdims=True) + eps)

    def content_over(axes):
        def fn(content, style_, eps):
            (mc, sc), (ms, ss) = stats(content, axes, eps), stats(style_, (2, 3), eps)
            return (content - mc) / sc * ss + ms
        return fn
    rejects(name, content_over((0, 2, 3)),
            "looks like the content's statistics taken over the wrong axes: (0, 2, 3)")

    def no_eps(content, style_, eps):
        return E.solution(name)(content, style_, 0.0)
    rejects(name, no_eps, "contains NaN", "without eps")

    def torch_std(content, style_, eps):   # torch.std is unbiased by default
        c, s = torch.tensor(content), torch.tensor(style_)
        sc = (c.std((2, 3), keepdim=True) ** 2 + eps).sqrt()
        ss = (s.std((2, 3), keepdim=True) ** 2 + eps).sqrt()
        return ((c - c.mean((2, 3), keepdim=True)) / sc * ss + s.mean((2, 3), keepdim=True)
                ).numpy()
    rejects(name, torch_std, "the unbiased standard deviations")


def test_fold_batchnorm_mistakes():
    name = "fold_batchnorm"

    def fold(bias_rule, with_eps=True):
        def fn(w, b, gamma, beta, mean, var, eps):
            scale = gamma / np.sqrt(var + (eps if with_eps else 0.0))
            return w * scale[:, None, None, None], bias_rule(scale, b, mean, beta)
        return fn
    rejects(name, fold(lambda s, b, mean, beta: beta - s * mean), "the conv bias forgotten")
    rejects(name, fold(lambda s, b, mean, beta: s * (b - mean) + beta, with_eps=False),
            "std without eps")
    rejects(name, fold(lambda s, b, mean, beta: b - s * mean + beta), "conv bias not scaled")


# ------------------------------------------------------------------ welford in float32
def _numerics_welford(x):
    return E.solution("welford_variance")(x)[0], numerics.variance_welford(x)


def _welford_textbook(x):   # M2 += (k - 1) / k * delta^2, then the mean
    mean, m2 = np.float32(0), np.float32(0)
    for k, v in enumerate(x, start=1):
        delta = v - mean
        m2 += np.float32((k - 1) / k) * delta * delta
        mean += delta / k
    return mean, m2 / np.float32(len(x))


@pytest.mark.parametrize("fn", [_numerics_welford, _welford_textbook])
def test_welford_tolerance_has_margin(fn):
    """Correct float32 Welfords pass, with at least 2x to spare under the tolerance."""
    E.check("welford_variance", fn)
    for case in E._welford_variance(np.random.default_rng(E._SEED)):
        x = case.args["x"]
        for got, want in zip(fn(x), E._ref_welford_variance(x)):
            assert E._max_error(got, want)[0] < E._TOL_WELFORD / 2


def test_welford_one_pass_is_named():
    one_pass = "looks like the one-pass E[x^2] - E[x]^2 formula, which cancels when the mean " \
               "is large"
    rejects("welford_variance", lambda x: (np.mean(x), np.mean(x * x) - np.mean(x) ** 2),
            "large mean", one_pass)
    rejects("welford_variance", lambda x: (np.mean(x), numerics.variance_one_pass(x)), one_pass)


# --------------------------------------------- every known mistake is named as itself
MISTAKES = [(name, m) for name in NAMES for m in E._GRADERS[name].mistakes]


@pytest.mark.parametrize("name, mistake", MISTAKES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(MISTAKES)])
def test_every_known_mistake_is_rejected_and_named(name, mistake):
    """No mistake passes, and none is shadowed by an earlier one in its grader's table."""
    with pytest.raises(AssertionError) as info:
        with np.errstate(all="ignore"):
            E.check(name, mistake.fn)
    pattern = re.escape("looks like " + mistake.name).replace(re.escape("{output}"), r"\w+")
    assert re.search(pattern, str(info.value)), str(info.value)


# --------------------------------------- the references against independent versions
def _torch_grads(fn, dout, *arrays):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(*ts).backward(torch.tensor(dout))
    return tuple(t.grad.numpy() for t in ts)


def _torch_fold(w, b, gamma, beta, mean, var, eps):
    conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:]).double()
    bn = torch.nn.BatchNorm2d(w.shape[0], eps=eps).double().eval()
    with torch.no_grad():
        for p, a in ((conv.weight, w), (conv.bias, b), (bn.weight, gamma), (bn.bias, beta),
                     (bn.running_mean, mean), (bn.running_var, var)):
            p.copy_(torch.tensor(a))
    fused = inference.fold_batchnorm(conv, bn)
    return fused.weight.detach().numpy(), fused.bias.detach().numpy()


def _torch_running(rm, rv, x, m):
    mean, var = torch.tensor(rm), torch.tensor(rv)
    TF.batch_norm(torch.tensor(x), mean, var, training=True, momentum=m)
    return mean.numpy(), var.numpy()


def _t(*arrays):
    return [torch.tensor(a) for a in arrays]


INDEPENDENT = {
    "batchnorm_forward": lambda x, g, b, eps: TF.batch_norm(
        *_t(x), None, None, *_t(g, b), training=True, eps=eps).numpy(),
    "batchnorm2d_forward": lambda x, g, b, eps: TF.batch_norm(
        *_t(x), None, None, *_t(g, b), training=True, eps=eps).numpy(),
    "batchnorm_backward": lambda dout, x, g, eps: _torch_grads(
        lambda x, g, b: TF.batch_norm(x, None, None, g, b, training=True, eps=eps),
        dout, x, g, np.zeros_like(g)),
    "layernorm_backward": lambda dout, x, g, eps: _torch_grads(
        lambda x, g, b: TF.layer_norm(x, g.shape, g, b, eps=eps), dout, x, g, np.zeros_like(g)),
    "groupnorm_forward": lambda x, G, g, b, eps: TF.group_norm(
        *_t(x), G, *_t(g, b), eps=eps).numpy(),
    "groupnorm_backward": lambda dout, x, G, g, eps: _torch_grads(
        lambda x, g, b: TF.group_norm(x, G, g, b, eps=eps), dout, x, g, np.zeros_like(g)),
    "running_stats_update": _torch_running,
    "adain": lambda c, s, eps: style.adain(*_t(c, s), eps).numpy(),
    "fold_batchnorm": _torch_fold,
}


@pytest.mark.parametrize("name", list(INDEPENDENT))
def test_torch_and_normlab_versions_pass(name, capsys):
    """PyTorch's own layers (and style.adain, inference.fold_batchnorm) pass the graders."""
    E.check(name, INDEPENDENT[name])
    assert "cases match" in capsys.readouterr().out


def _unchanged_reference(name, fn):
    """Each mistake table's helper, with no keyword, reproduces the grader's reference (to
    1e-11: at mean 1e4 a different rounding of the mean alone moves dgamma by ~5e-12)."""
    grader = E._GRADERS[name]
    for case in grader.cases(np.random.default_rng(E._SEED)):
        want = E._as_tuple(grader.reference(*case.fresh_args()))
        for got, w in zip(E._as_tuple(fn(*case.fresh_args())), want):
            assert E._max_error(got, w)[0] <= grader.rtol / 10


@pytest.mark.parametrize("name, fn", [
    ("batchnorm_forward", E._bn_forward), ("batchnorm2d_forward", E._bn_forward),
    ("batchnorm_backward", E._bn_backward), ("layernorm_backward", E._ln_backward),
    ("groupnorm_forward", E._gn_forward), ("groupnorm_backward", E._gn_backward),
    ("running_stats_update", E._running_stats), ("adain", E._adain),
    ("fold_batchnorm", E._fold)])
def test_mistakes_are_one_change_from_the_reference(name, fn):
    _unchanged_reference(name, fn)
