r"""Graders for the chapters' exercises: ``check(name, fn)`` runs a reader's function.

A chapter asks the reader to write, say, the batch-norm backward pass in NumPy, then runs ::

    from normlab import exercises
    exercises.check("batchnorm_backward", batchnorm_backward)

which prints one line, ``batchnorm_backward: 6/6 cases match to 1e-10``, or raises an
``AssertionError`` that says what is wrong with the first case that fails. The chapters' starter
stubs (a function whose body is ``raise NotImplementedError(...)``) are not an error: ``check``
prints ``batchnorm_backward: not implemented yet ...`` and returns, so running a whole notebook
goes through its exercises instead of stopping at the first one.

How a function is graded
------------------------
``fn`` is called on a fixed list of cases (random float64 arrays drawn from a fixed seed, so the
verdict is the same on every run; shapes vary, and there are edge cases: a batch of two, a
constant channel, a non-contiguous strided view, a large mean). Its answers are compared with
normlab's verified implementations (:mod:`normlab.numpy_ref`, :mod:`normlab.functional`,
:mod:`normlab.numerics`) in four stages, each over every case before the next begins, so that a
shape or dtype problem is never hidden behind a numeric one:

1. structure -- the number of returned values, their type (``ndarray``), shape and dtype;
2. finiteness -- no NaN or inf;
3. an output that is one of the inputs, unchanged;
4. values -- element-wise relative error
   :math:`|y - y_{ref}| / (|y_{ref}| + \mathrm{rms}(y_{ref}))` at most ``1e-10`` (``1e-3`` for
   the float32 ``welford_variance``). The rms floor judges elements that cancel to about zero
   on the scale of the whole output.

When a stage fails, the message names the case (its description and input shape), the output
(``dx``, ``dgamma``, ...), the largest error and where it is. Each grader also knows the
mistakes people make in that exercise, as concrete wrong implementations (the ``_Mistake``
tables below): if the reader's failing output equals one of them on the same case, the message
says so, e.g. ``looks like std + eps in the denominator instead of sqrt(var + eps)``.

What counts as a starter stub: on the first case, ``fn``'s own code executes a ``raise``
statement of ``NotImplementedError``. Every other exception from ``fn`` propagates unchanged. So
does a ``NotImplementedError`` raised by something ``fn`` calls (PyTorch raises one for an
operation a backend lacks, from C, with no Python frame of its own: the ``raise`` check tells
the two apart), or raised by ``fn`` itself only on a later case (say, for a strided input it
chose not to handle): the reader's function *ran* and failed, and the traceback is what they
need.

Public functions: :func:`names`, :func:`describe`, :func:`check`, :func:`solution`,
:func:`solution_source` (a readable reference solution, for a chapter's dropdown).
"""
from __future__ import annotations

import dis
import inspect
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from . import functional, numerics
from . import numpy_ref as R

__all__ = ["names", "describe", "check", "solution", "solution_source"]

_SEED = 19        # every grader draws its cases from this seed: the same verdict on every run
_TOL64 = 1e-10    # float64 graders: a few ulps of accumulated rounding, with a wide margin


# ============================================================================ public API
def names() -> list[str]:
    """The exercises that can be checked, in the order of the chapters."""
    return list(_GRADERS)


def describe(name: str) -> str:
    """The exercise's docstring: the exact signature ``fn`` must have, and the math."""
    return inspect.getdoc(_grader(name).cases)


def check(name: str, fn: Callable) -> None:
    """Grade ``fn`` for the exercise ``name``; see the module docstring.

    Prints ``"<name>: <n>/<n> cases match to <tolerance>"`` and returns ``None`` if every case
    matches; raises ``AssertionError`` naming the first failing case otherwise. If ``fn`` is a
    starter stub (its own body raises ``NotImplementedError``), prints ``"<name>: not implemented
    yet ..."`` and returns ``None``.
    """
    # IPython leaves this frame out of tracebacks: a reader's failing function shows their own
    # cell and its exception, not the grader's internals (nor the path it is installed at)
    __tracebackhide__ = True
    grader = _grader(name)
    if not callable(fn):
        raise TypeError(f"check expects the function to grade, got {type(fn).__name__}")
    cases = grader.cases(np.random.default_rng(_SEED))
    # Run every case first: the stages below look at all of them in turn.
    # (a loop, not a comprehension: a comprehension's own frame would show in the traceback)
    results = []
    try:
        for case in cases:
            results.append(fn(*case.fresh_args()))
    except NotImplementedError as err:
        if results or not _raised_by_own_raise(fn, err):  # not a stub: a real error
            raise
        target = _underlying(fn)
        print(f"{name}: not implemented yet -- replace the `raise NotImplementedError` in "
              f"{getattr(target, '__name__', type(target).__name__)} with your code and run "
              "this cell again")
        return
    expected = [_as_tuple(grader.reference(*case.fresh_args())) for case in cases]
    for stage in (_structure_failure, _finiteness_failure, _unchanged_failure, _value_failure):
        for i, (case, got, want) in enumerate(zip(cases, results, expected), start=1):
            failure = stage(grader, case, got, want)
            if failure is not None:
                raise AssertionError(_report(grader, case, f"{i}/{len(cases)}", failure))
    print(f"{name}: {len(cases)}/{len(cases)} cases match to {grader.rtol:g}")


def _underlying(fn: Callable) -> Callable:
    """``fn`` without its ``functools.wraps`` decorators and ``functools.partial`` layers."""
    target = inspect.unwrap(fn)
    while isinstance(target, partial):
        target = inspect.unwrap(target.func)
    return target


def _raised_by_own_raise(fn: Callable, err: BaseException) -> bool:
    """Whether ``err`` comes from a ``raise`` statement in ``fn``'s own code (a stub's), not
    from a function it called, in Python or in C (a C function adds no frame: the last frame
    is then ``fn``'s, stopped at a call instruction instead of a ``raise``)."""
    target = _underlying(fn)
    code = getattr(target, "__code__", None) or getattr(
        getattr(type(target), "__call__", None), "__code__", None)
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if code is None or tb is None or tb.tb_frame.f_code is not code:
        return False
    return any(ins.offset == tb.tb_lasti and ins.opname == "RAISE_VARARGS"
               for ins in dis.get_instructions(code))


def solution(name: str) -> Callable:
    """A reference solution of the exercise, written as a student would (plain NumPy)."""
    _grader(name)
    return _SOLUTIONS[name]


def solution_source(name: str) -> str:
    """The source text of :func:`solution` ``(name)``, under the exercise's name."""
    source = textwrap.dedent(inspect.getsource(solution(name)))
    return re.sub(r"^def _solve_(\w+)", r"def \1", source, count=1)


def _grader(name: str) -> _Grader:
    if name not in _GRADERS:
        raise ValueError(f"unknown exercise {name!r}; valid names: {', '.join(_GRADERS)}")
    return _GRADERS[name]


# ============================================================================ machinery
@dataclass(frozen=True)
class _Case:
    """One call of the reader's function: ``args`` maps parameter names to values, in order."""

    description: str
    args: dict

    def fresh_args(self) -> list:
        """Copies of the arguments, so that in-place edits by one caller reach no other."""
        return [_fresh(a) for a in self.args.values()]


@dataclass(frozen=True)
class _Mistake:
    """A known wrong answer: ``fn`` has the exercise's signature and returns its outputs.
    ``name`` completes "looks like ..." and may say ``{output}``. ``window(args, output)``, if given, is the absolute tolerance for
    a mistake whose result is rounding noise, so depends on the order of the sums."""

    name: str
    fn: Callable
    window: Callable | None = None


@dataclass(frozen=True)
class _Grader:
    """An exercise: ``cases(rng)`` builds the cases and its docstring states the signature."""

    name: str
    outputs: tuple[str, ...]
    reference: Callable
    cases: Callable[[np.random.Generator], list[_Case]]
    mistakes: tuple[_Mistake, ...]
    main_input: str = "x"       # the argument whose shape a message quotes
    rtol: float = _TOL64
    dtype: type = np.float64


@dataclass(frozen=True)
class _Failure:
    """What a stage found; ``output``/``got`` identify a wrong output to diagnose."""

    text: str
    output: int | None = None
    got: object = None


def _fresh(a):
    """A copy of an array argument that keeps it non-contiguous if it was."""
    if not isinstance(a, np.ndarray):
        return a
    return a.copy() if a.flags.c_contiguous else _strided(a)


def _as_tuple(result) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _outputs(grader: _Grader, result) -> tuple:
    """The reader's outputs as a tuple (after the arity check)."""
    return (result,) if len(grader.outputs) == 1 else tuple(result)


def _arity_problem(grader: _Grader, result) -> str | None:
    k, listed = len(grader.outputs), ", ".join(grader.outputs)
    if result is None:
        return f"returned None, expected {listed}: is a `return` missing?"
    if k == 1:
        if isinstance(result, tuple):
            return (f"returned a tuple of {len(result)}, expected one array ({listed}); "
                    f"return the output alone, not (out, cache)")
        return None
    if not isinstance(result, (tuple, list)):
        return f"returned one {type(result).__name__}, expected a tuple of {k} ({listed})"
    if len(result) != k:
        return f"returned {len(result)} arrays, expected {k} ({listed})"
    return None


def _output_problem(k: int, name: str, got, want: np.ndarray, dtype) -> _Failure | None:
    """Type, then shape, then dtype of output ``k`` (``want`` is the reference output)."""
    dtype = np.dtype(dtype)
    if want.ndim == 0 and not isinstance(got, (np.ndarray, np.generic)):
        return _Failure(f"returned {name} as {type(got).__name__}, expected a NumPy {dtype} "
                        f"scalar, e.g. np.{dtype}(...)")
    if want.ndim > 0 and not isinstance(got, np.ndarray):
        return _Failure(f"returned {name} as {type(got).__name__}, expected a NumPy ndarray")
    if got.shape != want.shape:
        # a wrong shape can still be a known mistake (a missing sum): keep which output it is
        return _Failure(f"returned {name} of shape {got.shape}, expected {want.shape}", k, got)
    if got.dtype != dtype:
        return _Failure(f"returned {name} with dtype {got.dtype}, expected {dtype}")
    return None


def _each_output(grader, got, want, test) -> _Failure | None:
    """The first failure of ``test(k, name, got_k, want_k)`` over the outputs."""
    for k, (name, g, w) in enumerate(zip(grader.outputs, _outputs(grader, got), want)):
        failure = test(k, name, g, np.asarray(w))
        if failure is not None:
            return failure
    return None


def _structure_failure(grader, case, got, want) -> _Failure | None:
    problem = _arity_problem(grader, got)
    if problem is not None:
        return _Failure(problem)
    return _each_output(grader, got, want,
                        lambda k, name, g, w: _output_problem(k, name, g, w, grader.dtype))


def _finiteness_failure(grader, case, got, want) -> _Failure | None:
    def test(k, name, g, w):
        bad = ~np.isfinite(np.asarray(g))
        if not bad.any():
            return None
        what = "NaN" if np.isnan(g).any() else "inf"
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        return _Failure(f"{name} contains {what} ({bad.sum()} of {bad.size} elements"
                        f"{_at(first, ', the first')})", k, g)
    return _each_output(grader, got, want, test)


def _unchanged_failure(grader, case, got, want) -> _Failure | None:
    def test(k, name, g, w):
        for arg, a in case.args.items():
            if (isinstance(a, np.ndarray) and a.shape == g.shape and np.array_equal(g, a)
                    and _max_error(a, w)[0] > grader.rtol):
                return _Failure(f"{name} is the input {arg}, returned unchanged")
        return None
    return _each_output(grader, got, want, test)


def _value_failure(grader, case, got, want) -> _Failure | None:
    def test(k, name, g, w):
        err, where = _max_error(g, w)
        if err <= grader.rtol:
            return None
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        return _Failure(f"{name} differs from the reference: max relative error {err:.2e}"
                        f"{_at(where)} (got {g[where]:.10g}, expected {w[where]:.10g}; "
                        f"tolerance {grader.rtol:g})", k, g)
    return _each_output(grader, got, want, test)


def _max_error(got, want) -> tuple[float, tuple[int, ...]]:
    """Largest ``|got - want| / (|want| + rms(want))`` and the index where it occurs."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = float(np.sqrt(np.mean(want * want))) or 1.0   # all zeros: judge absolutely
    ratio = np.abs(got - want) / (np.abs(want) + scale)
    where = tuple(int(i) for i in np.unravel_index(np.argmax(ratio), ratio.shape))
    return float(ratio[where]), where


def _at(where: tuple[int, ...], prefix: str = "") -> str:
    return f"{prefix} at index {where}" if where else ""


def _report(grader: _Grader, case: _Case, number: str, failure: _Failure) -> str:
    shape = np.shape(case.args[grader.main_input])
    text = (f"{grader.name}, case {number} '{case.description}' ({grader.main_input} of shape "
            f"{shape}): {failure.text}")
    if failure.output is not None:
        mistake = _diagnose(grader, case, failure.output, failure.got)
        if mistake is not None:
            text += f" -- looks like {mistake}"
    return text


def _diagnose(grader: _Grader, case: _Case, k: int, got) -> str | None:
    """The first known mistake whose ``k``-th output matches the reader's on this case."""
    got = np.asarray(got, np.float64)
    # Some mistakes divide by zero on the edge cases: that is how they show, not a bug here.
    with np.errstate(all="ignore"):
        for mistake in grader.mistakes:
            wrong = np.asarray(_as_tuple(mistake.fn(*case.fresh_args()))[k], np.float64)
            if _matches(got, wrong, mistake, case, grader.rtol):
                return mistake.name.format(output=grader.outputs[k])
    return None


def _matches(got: np.ndarray, wrong: np.ndarray, mistake: _Mistake, case: _Case,
             rtol: float) -> bool:
    """Same shape, NaN/inf in the same places, and the finite values within tolerance."""
    if got.shape != wrong.shape:
        return False
    finite = np.isfinite(wrong)
    if not np.array_equal(np.isfinite(got), finite):
        return False
    if not finite.any():
        return True
    if mistake.window is not None:
        window = mistake.window(case.args, wrong)
        return bool(np.abs(got[finite] - wrong[finite]).max() <= window)
    return _max_error(got[finite], wrong[finite])[0] <= rtol


# ============================================================================ case inputs
def _strided(a: np.ndarray) -> np.ndarray:
    """The values of ``a`` as a non-contiguous view, with a gap after each element."""
    base = np.zeros(a.shape + (2,), a.dtype)
    base[..., 0] = a
    return base[..., 0]


def _x(rng: np.random.Generator, shape, kind: str, constant=np.s_[:, 1]) -> np.ndarray:
    """An input of one ``kind``: "random" (mean 1, std 2), "constant" (``x[constant] = 2.25``),
    "strided" (a non-contiguous view) or "large mean" (1e4 + N(0, 1))."""
    if kind == "large mean":
        return 1e4 + rng.standard_normal(shape)
    x = 1.0 + 2.0 * rng.standard_normal(shape)
    if kind == "constant":
        # 2.25 is exact in binary, and so are its sums: the mean is exact and the variance 0
        x[constant] = 2.25
    return _strided(x) if kind == "strided" else x


def _per_channel_params(rng: np.random.Generator, c: int) -> tuple[np.ndarray, np.ndarray]:
    """``gamma`` around 1 and ``beta`` around 0, shape ``(c,)``."""
    return 1.0 + 0.5 * rng.standard_normal(c), 0.5 * rng.standard_normal(c)


def _forward_cases(rng, specs, constant) -> list[_Case]:
    """Cases ``(x, gamma, beta, eps)`` from ``(description, shape, kind, eps, ...)`` rows."""
    cases = []
    for description, shape, kind, eps, *_ in specs:
        x = _x(rng, shape, kind, constant)
        gamma, beta = _per_channel_params(rng, shape[1])
        cases.append(_Case(description, {"x": x, "gamma": gamma, "beta": beta, "eps": eps}))
    return cases


def _backward_cases(rng, specs, constant) -> list[_Case]:
    """Cases ``(dout, x, gamma, eps)`` from the same rows as :func:`_forward_cases`."""
    cases = []
    for case in _forward_cases(rng, specs, constant):
        x, gamma, eps = (case.args[k] for k in ("x", "gamma", "eps"))
        dout = rng.standard_normal(x.shape)
        cases.append(_Case(case.description, {"dout": dout, "x": x, "gamma": gamma,
                                              "eps": eps}))
    return cases


def _with_groups(cases: list[_Case], specs) -> list[_Case]:
    """Insert ``num_groups``, the last column of ``specs``, after ``x`` (group norm's order)."""
    out = []
    for case, (*_, g) in zip(cases, specs):
        args = {}
        for name, value in case.args.items():
            args[name] = value
            if name == "x":
                args["num_groups"] = g
        out.append(_Case(case.description, args))
    return out


# (description, shape, kind, eps): shared by the three batch-norm exercises on (N, D)
_BN1D_SPECS = (
    ("random", (8, 5), "random", 1e-5),
    ("batch of two", (2, 6), "random", 1e-5),
    ("a constant feature (x[:, 1] = 2.25)", (16, 4), "constant", 1e-5),
    ("non-contiguous x (a strided view)", (6, 7), "strided", 1e-5),
    ("large mean (1e4 + N(0, 1))", (32, 3), "large mean", 1e-5),
    ("eps = 1e-3", (10, 4), "random", 1e-3),
)
_BN2D_SPECS = (
    ("random", (4, 3, 5, 5), "random", 1e-5),
    ("batch of two, H != W", (2, 4, 3, 2), "random", 1e-5),
    ("a constant channel (x[:, 1] = 2.25)", (3, 2, 4, 4), "constant", 1e-5),
    ("non-contiguous x (a strided view)", (3, 4, 2, 5), "strided", 1e-5),
    ("large mean (1e4 + N(0, 1))", (4, 2, 3, 3), "large mean", 1e-5),
    ("1x1 spatial, eps = 1e-3", (8, 3, 1, 1), "random", 1e-3),
)
_LN_SPECS = (
    ("random", (6, 10), "random", 1e-5),
    ("a single sample", (1, 9), "random", 1e-5),
    ("a constant sample (x[1, :] = 2.25)", (5, 8), "constant", 1e-5),
    ("non-contiguous x (a strided view)", (7, 4), "strided", 1e-5),
    ("large mean (1e4 + N(0, 1))", (4, 16), "large mean", 1e-5),
    ("batch of two, eps = 1e-3", (2, 7), "random", 1e-3),
)
# (description, shape, kind, eps, num_groups); N != num_groups where x.reshape(num_groups, -1)
# would otherwise split exactly by sample
_GN_SPECS = (
    ("random, 3 groups of 2 channels", (2, 6, 4, 4), "random", 1e-5, 3),
    ("one group (as layer norm)", (2, 4, 3, 3), "random", 1e-5, 1),
    ("one channel per group (as instance norm)", (2, 3, 4, 2), "random", 1e-5, 3),
    ("a constant group (x[0, :2] = 2.25)", (3, 6, 3, 3), "constant", 1e-5, 3),
    ("non-contiguous x (a strided view)", (2, 8, 2, 3), "strided", 1e-5, 4),
    ("large mean (1e4 + N(0, 1))", (2, 4, 4, 4), "large mean", 1e-5, 2),
    ("a single sample, eps = 1e-3", (1, 6, 2, 2), "random", 1e-3, 2),
)


# ======================================================= normalizers, right and wrong
# The mistakes are the correct computation with one thing changed, so each is one keyword of
# these functions; with no keyword they compute the reference (the tests check that).
@dataclass(frozen=True)
class _Layout:
    """Which elements share a statistic: ``x`` is reshaped to ``view``, reduced over ``axes``."""

    view: tuple[int, ...]
    axes: tuple[int, ...]


def _bn_layout(x, axes=None) -> _Layout:
    """Batch norm: per channel, over the batch and every position, ``(0, 2, 3, ...)``."""
    return _Layout(x.shape, (0,) + tuple(range(2, x.ndim)) if axes is None else axes)


def _ln_layout(x) -> _Layout:
    """Layer norm: per sample, over the features."""
    return _Layout(x.shape, tuple(range(1, x.ndim)))


def _gn_layout(x, num_groups) -> _Layout:
    """Group norm: per sample and block of ``C // num_groups`` consecutive channels."""
    return _Layout((x.shape[0], num_groups, -1), (2,))


def _per_channel_layout(x, num_groups) -> _Layout:
    """Wrong for group norm: one channel per group (instance norm)."""
    return _Layout((x.shape[0], x.shape[1], -1), (2,))


def _all_channels_layout(x, num_groups) -> _Layout:
    """Wrong for group norm: ``num_groups`` ignored, one group (layer norm)."""
    return _Layout((x.shape[0], -1), (1,))


def _mixed_samples_layout(x, num_groups) -> _Layout:
    """Wrong for group norm: ``x.reshape(num_groups, -1)`` folds the batch into the groups."""
    return _Layout((num_groups, -1), (1,))


def _interleaved_layout(x, num_groups) -> _Layout:
    """Wrong for group norm: channel ``c`` in group ``c % num_groups``."""
    n, c = x.shape[:2]
    return _Layout((n, c // num_groups, num_groups, -1), (1, 3))


_DENOMINATORS = {
    "sqrt(var + eps)": lambda var, eps: np.sqrt(var + eps),   # the right one
    "std + eps": lambda var, eps: np.sqrt(var) + eps,
    "std": lambda var, eps: np.sqrt(var),                       # eps left out
}


def _mean_and_denominator(v, axes, eps, *, ddof=0, denominator="sqrt(var + eps)",
                          one_pass=False):
    r"""Mean and :math:`\sqrt{\sigma^2+\epsilon}` of ``v`` over ``axes`` (kept), with
    :math:`\sigma^2 = \sum (v-\mu)^2 / (M - \text{ddof})` over the :math:`M` elements, or
    :math:`E[v^2] - E[v]^2` with ``one_pass``."""
    mean = v.mean(axis=axes, keepdims=True)
    if one_pass:
        var = (v * v).mean(axis=axes, keepdims=True) - mean * mean
    else:
        count = v.size // mean.size
        var = ((v - mean) ** 2).sum(axis=axes, keepdims=True) / (count - ddof)
    return mean, _DENOMINATORS[denominator](var, eps)


def _per_channel(p: np.ndarray, ndim: int) -> np.ndarray:
    """``(C,)`` -> ``(1, C, 1, ...)``, to broadcast against an ``ndim``-D ``(N, C, *)``."""
    return p.reshape((1, -1) + (1,) * (ndim - 2))


def _forward(x, gamma, beta, eps, layout: _Layout, **wrong) -> np.ndarray:
    """``gamma * (x - mean) / sqrt(var + eps) + beta``, statistics as ``layout`` says;
    ``wrong`` goes to :func:`_mean_and_denominator`."""
    v = x.reshape(layout.view)
    mean, denominator = _mean_and_denominator(v, layout.axes, eps, **wrong)
    xhat = ((v - mean) / denominator).reshape(x.shape)
    return _per_channel(gamma, x.ndim) * xhat + _per_channel(beta, x.ndim)


def _backward(dout, x, gamma, eps, layout: _Layout, *, terms=("mean", "var"),
              gamma_at="inside", param_axes=None, dgamma_of="xhat"):
    r"""``(dx, dgamma, dbeta)`` of :func:`_forward`, or a known wrong version of them.

    Over the :math:`M` elements sharing a statistic, with :math:`g = \gamma\,d_{out}`:
    :math:`dx = (M g - \sum g - \hat x \sum g\hat x) / (M\sqrt{\sigma^2+\epsilon})`.
    ``terms`` keeps the :math:`\sum g` ("mean") and :math:`\hat x\sum g\hat x` ("var") terms,
    the contributions of the mean's and the variance's dependence on ``x``. ``gamma_at``:
    "inside" (right), "outside" (multiplied after the sums) or "missing". ``dgamma``/``dbeta``
    sum over ``param_axes`` (default: all but the channel axis 1) of ``dout * x_hat``
    (``dgamma_of="x"``: of ``dout * x``).
    """
    v = x.reshape(layout.view)
    mean, denominator = _mean_and_denominator(v, layout.axes, eps)
    xhat = (v - mean) / denominator
    gamma_b = _per_channel(gamma, x.ndim)
    g = (dout * gamma_b if gamma_at == "inside" else dout).reshape(layout.view)
    m = xhat.size // denominator.size
    dx = m * g
    if "mean" in terms:
        dx = dx - g.sum(axis=layout.axes, keepdims=True)
    if "var" in terms:
        dx = dx - xhat * (g * xhat).sum(axis=layout.axes, keepdims=True)
    dx = (dx / (m * denominator)).reshape(x.shape)
    if gamma_at == "outside":
        dx = dx * gamma_b
    axes = (0,) + tuple(range(2, x.ndim)) if param_axes is None else param_axes
    times = xhat.reshape(x.shape) if dgamma_of == "xhat" else x
    return dx, (dout * times).sum(axis=axes), dout.sum(axis=axes)


def _one_pass_window(args, out) -> float:
    """The float64 one-pass variance is rounding noise at the 1e-8 level here (measured: 3e-8
    relative at mean 1e4); any order of the sums lands within 1e-6 of the output's size."""
    return 1e-6 * float(np.abs(out).max())


def _forward_mistakes(fn) -> tuple[_Mistake, ...]:
    """The mistakes in the statistics that every forward pass can make; ``fn`` takes the
    exercise's arguments plus the keywords of :func:`_mean_and_denominator`."""
    return (
        _Mistake("std + eps in the denominator instead of sqrt(var + eps)",
                 partial(fn, denominator="std + eps")),
        _Mistake("eps left out: sqrt(var) instead of sqrt(var + eps)",
                 partial(fn, denominator="std")),
        _Mistake("the unbiased variance (divided by M - 1) used to normalize; the biased one "
                 "(divided by M) is right", partial(fn, ddof=1)),
        _Mistake("the one-pass E[x^2] - E[x]^2 formula, which cancels when the mean is large",
                 partial(fn, one_pass=True), window=_one_pass_window),
    )


_MISSING_SUM = "{output} is missing the sum over the batch (it was returned per sample)"


def _dx_mistakes(fn) -> tuple[_Mistake, ...]:
    """The mistakes in ``dx`` that every backward pass can make (``fn`` as for
    :func:`_backward`'s keywords)."""
    return (
        _Mistake("dx treats the mean and variance as constants (dx = dout * gamma / std): the "
                 "terms from their dependence on x are missing", partial(fn, terms=())),
        _Mistake("dx is missing the term from the mean's dependence on x (- sum(g) / M)",
                 partial(fn, terms=("var",))),
        _Mistake("dx is missing the term from the variance's dependence on x "
                 "(- x_hat * sum(g * x_hat) / M)", partial(fn, terms=("mean",))),
        _Mistake("dx is missing the factor gamma (the gradient reaching x_hat is dout * gamma)",
                 partial(fn, gamma_at="missing")),
        _Mistake("dgamma sums dout * x instead of dout * x_hat", partial(fn, dgamma_of="x")),
    )


# ============================================================================ graders
# ---------------------------------------------------------------- batchnorm_forward
def _ref_batchnorm_forward(x, gamma, beta, eps):
    return R.batchnorm_forward(x, gamma, beta, eps)[0]


def _bn_forward(x, gamma, beta, eps, *, axes=None, **wrong):
    return _forward(x, gamma, beta, eps, _bn_layout(x, axes), **wrong)


def _batchnorm_forward(rng):
    """``fn(x, gamma, beta, eps) -> out``: batch norm in training mode.

    ``x`` is ``(N, D)``; ``gamma`` and ``beta`` are ``(D,)``; ``eps`` is a float. Returns
    ``out`` of shape ``(N, D)``: ``out = gamma * (x - mean) / sqrt(var + eps) + beta`` with the
    mean and the *biased* variance (divided by N) of each column, over the batch axis 0.
    """
    return _forward_cases(rng, _BN1D_SPECS, constant=np.s_[:, 1])


_BN1D_FORWARD_MISTAKES = _forward_mistakes(_bn_forward) + (
    _Mistake("statistics taken over the wrong axes: (1,) instead of (0,) -- that is layer "
             "norm", partial(_bn_forward, axes=(1,))),
)


# ---------------------------------------------------------------- batchnorm_backward
def _ref_batchnorm_backward(dout, x, gamma, eps):
    _, cache = R.batchnorm_forward(x, gamma, np.zeros_like(gamma), eps)
    return R.batchnorm_backward(dout, cache)


def _bn_backward(dout, x, gamma, eps, **wrong):
    return _backward(dout, x, gamma, eps, _bn_layout(x), **wrong)


def _batchnorm_backward(rng):
    r"""``fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)``: backward pass of batch norm.

    ``dout`` and ``x`` are ``(N, D)``, ``gamma`` is ``(D,)``. Returns ``dx`` ``(N, D)``,
    ``dgamma`` and ``dbeta`` ``(D,)``, for the training-mode forward pass of
    ``batchnorm_forward``. With :math:`\hat x = (x-\mu)/\sqrt{\sigma^2+\epsilon}` and
    :math:`g = \gamma\,d_{out}`, per column:
    :math:`d\beta = \sum_n d_{out}`, :math:`d\gamma = \sum_n d_{out}\hat x`,
    :math:`dx = (N g - \sum_n g - \hat x\sum_n g\hat x) / (N\sqrt{\sigma^2+\epsilon})`.
    """
    return _backward_cases(rng, _BN1D_SPECS, constant=np.s_[:, 1])


_BN_BACKWARD_MISTAKES = (
    _Mistake(_MISSING_SUM, partial(_bn_backward, param_axes=())),
) + _dx_mistakes(_bn_backward)


# ---------------------------------------------------------------- running_stats_update
def _ref_running_stats_update(running_mean, running_var, x, momentum):
    """normlab.functional.batch_norm updates the running buffers in place, PyTorch's way."""
    mean, var = torch.tensor(running_mean), torch.tensor(running_var)
    functional.batch_norm(torch.tensor(x), mean, var, training=True, momentum=momentum)
    return mean.numpy(), var.numpy()


_EMA_RULES = {
    "pytorch": lambda old, new, m: (1 - m) * old + m * new,     # the right one
    "keras": lambda old, new, m: m * old + (1 - m) * new,
    "no complement": lambda old, new, m: old + m * new,
    "keras, no complement": lambda old, new, m: m * old + new,
    "no average": lambda old, new, m: new,
}


def _running_stats(running_mean, running_var, x, momentum, *, rule="pytorch", ddof=1):
    """Both running averages by one of the ``_EMA_RULES``; the batch variance has ``ddof``."""
    ema = _EMA_RULES[rule]
    return (ema(running_mean, x.mean(axis=0), momentum),
            ema(running_var, x.var(axis=0, ddof=ddof), momentum))


def _running_stats_update(rng):
    """``fn(running_mean, running_var, x, momentum) -> (mean, var)``: one running-average update.

    ``running_mean`` and ``running_var`` are ``(D,)``, ``x`` is ``(N, D)``, ``momentum`` a
    float. Returns the new ``(D,)`` running statistics in PyTorch's convention,
    ``new = (1 - momentum) * old + momentum * batch``, where the batch statistics are the
    column means and the *unbiased* column variances (divided by N - 1).
    """
    cases = []
    for (description, shape, kind, _), momentum in zip(_BN1D_SPECS,
                                                        (0.1, 0.1, 0.1, 0.3, 0.1, 0.01)):
        d = shape[1]
        running_mean, running_var = rng.standard_normal(d), rng.uniform(0.5, 2.0, d)
        x = _x(rng, shape, kind)
        cases.append(_Case(f"{description}, momentum {momentum}",
                           {"running_mean": running_mean, "running_var": running_var,
                            "x": x, "momentum": momentum}))
    return cases


_RUNNING_STATS_MISTAKES = (
    _Mistake("momentum applied to the old value instead of the new one (Keras convention, not "
             "PyTorch's): PyTorch computes (1 - momentum) * old + momentum * batch",
             partial(_running_stats, rule="keras")),
    _Mistake("the running variance is the biased one; PyTorch averages the unbiased batch "
             "variance (divided by N - 1)", partial(_running_stats, ddof=0)),
    _Mistake("the (1 - momentum) factor is missing: old + momentum * batch",
             partial(_running_stats, rule="no complement")),
    _Mistake("the (1 - momentum) factor is missing: momentum * old + batch",
             partial(_running_stats, rule="keras, no complement")),
    _Mistake("the batch statistics returned instead of the updated running averages",
             partial(_running_stats, rule="no average")),
)


# ---------------------------------------------------------------- batchnorm2d_forward
def _batchnorm2d_forward(rng):
    """``fn(x, gamma, beta, eps) -> out``: batch norm of images, in training mode.

    ``x`` is ``(N, C, H, W)``; ``gamma`` and ``beta`` are ``(C,)``. Returns ``out`` of the
    shape of ``x``: one mean and one biased variance per channel, over the batch and all
    positions (axes ``(0, 2, 3)``), ``out = gamma * (x - mean) / sqrt(var + eps) + beta``.
    """
    return _forward_cases(rng, _BN2D_SPECS, constant=np.s_[:, 1])


_BN2D_WRONG_AXES = (
    ((0,), " (one statistic per channel and position)"),
    ((2, 3), " -- that is instance norm"),
    ((1, 2, 3), " -- that is layer norm"),
    ((0, 2), " (W omitted)"),
    ((0, 3), " (H omitted)"),
    ((0, 1, 2, 3), " (one statistic for the whole tensor)"),
)
_BN2D_FORWARD_MISTAKES = _forward_mistakes(_bn_forward) + tuple(
    _Mistake(f"statistics taken over the wrong axes: {axes} instead of (0, 2, 3){gloss}",
             partial(_bn_forward, axes=axes))
    for axes, gloss in _BN2D_WRONG_AXES)


# ---------------------------------------------------------------- layernorm_backward
def _ref_layernorm_backward(dout, x, gamma, eps):
    _, cache = R.layernorm_forward(x, gamma, np.zeros_like(gamma), eps)
    return R.layernorm_backward(dout, cache)


def _ln_backward(dout, x, gamma, eps, *, layout=_ln_layout, **wrong):
    return _backward(dout, x, gamma, eps, layout(x), **wrong)


def _layernorm_backward(rng):
    r"""``fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)``: backward pass of layer norm.

    ``dout`` and ``x`` are ``(N, D)``, normalized over D (one mean and biased variance per
    sample), ``gamma`` is ``(D,)``. Returns ``dx`` ``(N, D)``, ``dgamma`` and ``dbeta``
    ``(D,)``. Per row, with :math:`g = \gamma\,d_{out}`:
    :math:`dx = (D g - \sum_d g - \hat x\sum_d g\hat x) / (D\sqrt{\sigma^2+\epsilon})`;
    :math:`d\gamma = \sum_n d_{out}\hat x` and :math:`d\beta = \sum_n d_{out}` sum over the
    batch, since each feature has its own parameter.
    """
    return _backward_cases(rng, _LN_SPECS, constant=np.s_[1, :])


_LN_BACKWARD_MISTAKES = (
    _Mistake(_MISSING_SUM, partial(_ln_backward, param_axes=())),
    _Mistake("{output} summed over the features (axis 1) instead of over the batch (axis 0)",
             partial(_ln_backward, param_axes=(1,))),
    _Mistake("dx computed with statistics over the batch (axis 0, batch norm's) instead of "
             "over the features (axis 1)", partial(_ln_backward, layout=_bn_layout)),
) + _dx_mistakes(_ln_backward)


# ---------------------------------------------------------------- groupnorm_forward
def _ref_groupnorm_forward(x, num_groups, gamma, beta, eps):
    return R.groupnorm_forward(x, gamma, beta, num_groups, eps)[0]


def _gn_forward(x, num_groups, gamma, beta, eps, *, layout=_gn_layout, **wrong):
    return _forward(x, gamma, beta, eps, layout(x, num_groups), **wrong)


def _groupnorm_forward(rng):
    """``fn(x, num_groups, gamma, beta, eps) -> out``: group norm.

    ``x`` is ``(N, C, H, W)``, ``num_groups`` divides C, ``gamma`` and ``beta`` are ``(C,)``.
    Returns ``out`` of the shape of ``x``: the channels of each sample are split into
    ``num_groups`` blocks of ``C // num_groups`` consecutive channels, and each (sample, block)
    is normalized with its own mean and biased variance, then
    ``out = gamma * x_hat + beta`` per channel.
    """
    return _with_groups(_forward_cases(rng, _GN_SPECS, constant=np.s_[0, :2]), _GN_SPECS)


_GN_FORWARD_MISTAKES = _forward_mistakes(_gn_forward) + (
    _Mistake("statistics per channel instead of per group -- that is instance norm",
             partial(_gn_forward, layout=_per_channel_layout)),
    _Mistake("statistics over all channels, num_groups ignored -- that is layer norm",
             partial(_gn_forward, layout=_all_channels_layout)),
    _Mistake("the reshape mixes samples: x.reshape(num_groups, -1) instead of "
             "x.reshape(N, num_groups, -1)", partial(_gn_forward, layout=_mixed_samples_layout)),
    _Mistake("channels grouped by c % num_groups, reshape(N, C // num_groups, num_groups, ...), "
             "instead of in blocks of consecutive channels",
             partial(_gn_forward, layout=_interleaved_layout)),
)


# ---------------------------------------------------------------- groupnorm_backward
def _ref_groupnorm_backward(dout, x, num_groups, gamma, eps):
    _, cache = R.groupnorm_forward(x, gamma, np.zeros_like(gamma), num_groups, eps)
    return R.groupnorm_backward(dout, cache)


def _gn_backward(dout, x, num_groups, gamma, eps, *, layout=_gn_layout, **wrong):
    return _backward(dout, x, gamma, eps, layout(x, num_groups), **wrong)


def _groupnorm_backward(rng):
    r"""``fn(dout, x, num_groups, gamma, eps) -> (dx, dgamma, dbeta)``: group norm's backward.

    ``dout`` and ``x`` are ``(N, C, H, W)``, ``gamma`` is ``(C,)``. Returns ``dx`` of the
    shape of ``x`` and ``dgamma``, ``dbeta`` ``(C,)`` (summed over the batch and the
    positions). In each (sample, group) of :math:`M` elements the closed form applies to
    :math:`g = \gamma\,d_{out}`, with :math:`\gamma` inside the sums since it varies within a
    group: :math:`dx = (M g - \sum g - \hat x\sum g\hat x) / (M\sqrt{\sigma^2+\epsilon})`.
    """
    return _with_groups(_backward_cases(rng, _GN_SPECS, constant=np.s_[0, :2]), _GN_SPECS)


_GN_BACKWARD_MISTAKES = (
    _Mistake(_MISSING_SUM, partial(_gn_backward, param_axes=(2, 3))),
    _Mistake("{output} is missing the sum over the positions (H, W)",
             partial(_gn_backward, param_axes=(0,))),
    _Mistake("dx computed per channel instead of per group (instance norm's statistics)",
             partial(_gn_backward, layout=_per_channel_layout)),
    _Mistake("gamma multiplied in after the group sums; it varies within a group, so "
             "g = gamma * dout must go inside them", partial(_gn_backward, gamma_at="outside")),
) + _dx_mistakes(_gn_backward)


# ---------------------------------------------------------------- adain
def _ref_adain(content, style, eps):
    """Instance norm (numpy_ref) of the content, rescaled by the style's instance statistics."""
    ones, zeros = np.ones(content.shape[1]), np.zeros(content.shape[1])
    normalized, _ = R.instancenorm_forward(content, ones, zeros, eps)
    _, style_stats = R.instancenorm_forward(style, ones, zeros, eps)
    mean, var = style_stats["mean"][..., None, None], style_stats["var"][..., None, None]
    return normalized * np.sqrt(var + eps) + mean


def _adain(content, style, eps, *, content_axes=(2, 3), style_axes=(2, 3), **wrong):
    """AdaIN with statistics over the given axes; ``wrong`` as for _mean_and_denominator."""
    mu_c, sd_c = _mean_and_denominator(content, content_axes, eps, **wrong)
    mu_s, sd_s = _mean_and_denominator(style, style_axes, eps, **wrong)
    return (content - mu_c) / sd_c * sd_s + mu_s


def _adain_swapped(content, style, eps):
    return _adain(style, content, eps)


def _adain_cases(rng):
    """``fn(content, style, eps) -> out``: adaptive instance normalization (Huang & Belongie).

    ``content`` is ``(N, C, H, W)`` and ``style`` ``(N, C, H', W')`` (its positions may differ
    in number). Returns ``out`` of the shape of ``content``: each (sample, channel) of the
    content gets the mean and standard deviation of the same (sample, channel) of the style,
    ``out = sd_s * (content - mean_c) / sd_c + mean_s``, with means and ``sd = sqrt(var + eps)``
    (biased variance) over the positions, axes ``(2, 3)``.
    """
    specs = (  # (description, content shape, style shape, kind, eps)
        ("random", (2, 3, 4, 4), (2, 3, 4, 4), "random", 1e-5),
        ("a style of another size, 6 x 5", (2, 3, 4, 4), (2, 3, 6, 5), "random", 1e-5),
        ("a constant content channel (content[0, 1] = 2.25)", (2, 3, 3, 3), (2, 3, 3, 3),
         "constant", 1e-5),
        ("non-contiguous content (a strided view)", (3, 2, 4, 3), (3, 2, 4, 3), "strided", 1e-5),
        ("large mean content (1e4 + N(0, 1))", (2, 4, 3, 3), (2, 4, 3, 3), "large mean", 1e-5),
        ("a single image, eps = 1e-3", (1, 4, 5, 5), (1, 4, 5, 5), "random", 1e-3),
    )
    cases = []
    for description, c_shape, s_shape, kind, eps in specs:
        content = _x(rng, c_shape, kind, constant=np.s_[0, 1])
        style = 3.0 * rng.standard_normal(s_shape) - 1.0
        cases.append(_Case(description, {"content": content, "style": style, "eps": eps}))
    return cases


_ADAIN_MISTAKES = (
    _Mistake("the content's statistics taken over the wrong axes: (0, 2, 3) instead of (2, 3) "
             "-- over the batch too", partial(_adain, content_axes=(0, 2, 3))),
    _Mistake("the content's statistics taken over the wrong axes: (1, 2, 3) instead of (2, 3) "
             "-- over the channels too", partial(_adain, content_axes=(1, 2, 3))),
    _Mistake("the style's statistics taken over the wrong axes: (0, 2, 3) instead of (2, 3) "
             "-- over the batch too", partial(_adain, style_axes=(0, 2, 3))),
    _Mistake("the standard deviations without eps: sqrt(var) instead of sqrt(var + eps)",
             partial(_adain, denominator="std")),
    _Mistake("std + eps instead of sqrt(var + eps)", partial(_adain, denominator="std + eps")),
    _Mistake("the unbiased standard deviations (ddof=1, torch.std's default) instead of the "
             "biased ones", partial(_adain, ddof=1)),
    _Mistake("content and style swapped", _adain_swapped),
)


# ---------------------------------------------------------------- fold_batchnorm
def _tensors(*arrays):
    return [torch.tensor(a) for a in arrays]


def _ref_fold_batchnorm(conv_weight, conv_bias, gamma, beta, running_mean, running_var, eps):
    """BatchNorm's own eval-mode map (normlab.functional.batch_norm) gives the fold: the
    folded bias is BN of the conv bias, and the folded filters are each output channel's filter
    through BN with zero mean and no shift, i.e. times gamma / sqrt(var + eps)."""
    w, b, g, beta, mean, var = _tensors(conv_weight, conv_bias, gamma, beta, running_mean,
                                        running_var)
    bias = functional.batch_norm(b[None], mean, var, g, beta, eps=eps)[0]
    # batch_norm scales its axis 1: put the output channels (axis 0 of the weight) there
    weight = functional.batch_norm(w.transpose(0, 1), torch.zeros_like(mean), var, g, eps=eps)
    return np.ascontiguousarray(weight.transpose(0, 1).numpy()), bias.numpy()


_FOLD_SCALES = {
    "gamma / sqrt(var + eps)": lambda gamma, var, eps: gamma / np.sqrt(var + eps),  # right
    "gamma / sqrt(var)": lambda gamma, var, eps: gamma / np.sqrt(var),
    "gamma / (var + eps)": lambda gamma, var, eps: gamma / (var + eps),
}
_FOLD_BIASES = {
    "scale * (b - mean) + beta": lambda s, b, mean, beta: s * (b - mean) + beta,     # right
    "beta - scale * mean": lambda s, b, mean, beta: beta - s * mean,
    "b - scale * mean + beta": lambda s, b, mean, beta: b - s * mean + beta,
    "scale * b - mean + beta": lambda s, b, mean, beta: s * b - mean + beta,
    "scale * (b - mean + beta)": lambda s, b, mean, beta: s * (b - mean + beta),
}


def _fold(conv_weight, conv_bias, gamma, beta, running_mean, running_var, eps, *,
          scale="gamma / sqrt(var + eps)", bias="scale * (b - mean) + beta"):
    """The fold with one of the ``_FOLD_SCALES`` and one of the ``_FOLD_BIASES``."""
    s = _FOLD_SCALES[scale](gamma, running_var, eps)
    return (conv_weight * s[:, None, None, None],
            _FOLD_BIASES[bias](s, conv_bias, running_mean, beta))


def _fold_batchnorm(rng):
    """Fold an eval-mode batch norm into the convolution before it:

    ``fn(conv_weight, conv_bias, gamma, beta, running_mean, running_var, eps) -> (weight, bias)``

    ``conv_weight`` is ``(C_out, C_in, kH, kW)``; the other arrays are ``(C_out,)``. Returns the
    convolution equal to ``bn(conv(x))``: with ``scale = gamma / sqrt(running_var + eps)``,
    ``weight = conv_weight * scale`` (per output channel, axis 0) and
    ``bias = scale * (conv_bias - running_mean) + beta``.
    """
    specs = (  # (description, weight shape, kind, eps)
        ("random 3x3 convolution", (8, 3, 3, 3), "random", 1e-5),
        ("1x1 convolution", (4, 6, 1, 1), "random", 1e-5),
        ("as many input as output channels", (5, 5, 3, 3), "random", 1e-5),
        ("a running variance of 1e-7, below eps", (4, 2, 3, 3), "tiny var", 1e-5),
        ("non-contiguous weight (a strided view)", (6, 4, 3, 3), "strided", 1e-5),
        ("a large running mean (1e4), eps = 1e-3", (3, 2, 5, 5), "large mean", 1e-3),
    )
    cases = []
    for description, shape, kind, eps in specs:
        c = shape[0]
        weight = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        gamma, beta = _per_channel_params(rng, c)
        mean = rng.standard_normal(c) + (1e4 if kind == "large mean" else 0.0)
        var = np.full(c, 1e-7) if kind == "tiny var" else rng.uniform(0.5, 2.0, c)
        cases.append(_Case(description, {
            "conv_weight": _strided(weight) if kind == "strided" else weight,
            "conv_bias": rng.standard_normal(c), "gamma": gamma, "beta": beta,
            "running_mean": mean, "running_var": var, "eps": eps}))
    return cases


_FOLD_MISTAKES = (
    _Mistake("the conv bias forgotten: bias = beta - scale * running_mean",
             partial(_fold, bias="beta - scale * mean")),
    _Mistake("std without eps: scale = gamma / sqrt(running_var)",
             partial(_fold, scale="gamma / sqrt(var)")),
    _Mistake("the scale divides by running_var + eps instead of its square root",
             partial(_fold, scale="gamma / (var + eps)")),
    _Mistake("the conv bias not scaled: conv_bias - scale * running_mean + beta instead of "
             "scale * (conv_bias - running_mean) + beta",
             partial(_fold, bias="b - scale * mean + beta")),
    _Mistake("the running mean not scaled: scale * conv_bias - running_mean + beta",
             partial(_fold, bias="scale * b - mean + beta")),
    _Mistake("beta scaled too: scale * (conv_bias - running_mean + beta)",
             partial(_fold, bias="scale * (b - mean + beta)")),
)


# ---------------------------------------------------------------- welford_variance
# A correct float32 Welford is off from the float64 truth by up to 2.5e-4 on the error measure
# above (5e-4 relative in the variance, mean 1e4 and std 1), measured over the cases below and
# 10 seeds with three update orders, numerics.variance_welford among them. 1e-3 leaves a 4x
# margin; the one-pass formula misses by 10 to 1000 (it cancels: E[x^2] is 1e8 there).
_TOL_WELFORD = 1e-3


def _ref_welford_variance(x):
    """The float64 truth of the float32 data: mean, and two-pass variance from numerics."""
    x64 = x.astype(np.float64)
    return x64.mean(), numerics.variance_two_pass(x64)


def _welford_wrong(x, *, var="population"):
    """The true mean with a wrong variance: "unbiased", "std" or "m2" (not divided by n)."""
    mean, population = _ref_welford_variance(x)
    n = len(x)
    variants = {"unbiased": population * n / (n - 1), "std": np.sqrt(population),
                "m2": population * n}
    return np.float32(mean), np.float32(variants[var])


def _one_pass_float32(x):
    return np.float32(_ref_welford_variance(x)[0]), numerics.variance_one_pass(x)


def _float32_sum_window(args, out) -> float:
    """The one-pass result is the rounding error of float32 sums of x^2: at most
    n * u * E[x^2] (u = 2^-24) whichever order the reader sums in."""
    x = args["x"].astype(np.float64)
    return len(x) * 2.0 ** -24 * float(np.mean(x * x))


def _welford_variance(rng):
    """``fn(x) -> (mean, var)``: mean and population variance in one pass, Welford's way.

    ``x`` is a 1-D float32 array; return two ``np.float32`` scalars, computed in float32 in a
    single pass over ``x``: ``var`` is the biased variance (divided by n). The data have a
    large mean (1e4 + N(0, 1)), where the one-pass ``E[x^2] - E[x]^2`` cancels in float32;
    graded against the float64 truth to 1e-3 (what a float32 Welford achieves, with margin).
    """
    f32 = np.float32
    specs = (  # (description, data)
        ("a small sample of 2 N(0, 1)", lambda: 2.0 * rng.standard_normal(7)),
        ("a single element", lambda: np.array([1e4 + 0.3])),
        ("large mean: 1e4 + N(0, 1)", lambda: 1e4 + rng.standard_normal(2000)),
        ("large negative mean: -1e4 + N(0, 1)", lambda: -1e4 + rng.standard_normal(1000)),
        ("constant: 500 times 10000.25", lambda: np.full(500, 10000.25)),
        ("non-contiguous x (a strided view), 1e4 + N(0, 1)",
         lambda: _strided((1e4 + rng.standard_normal(1000)).astype(f32))),
    )
    cases = []
    for description, data in specs:
        x = data()
        cases.append(_Case(description, {"x": x if x.dtype == f32 else x.astype(f32)}))
    return cases


_WELFORD_MISTAKES = (
    _Mistake("the unbiased variance (divided by n - 1) instead of the population variance "
             "(divided by n)", partial(_welford_wrong, var="unbiased")),
    _Mistake("the standard deviation instead of the variance", partial(_welford_wrong, var="std")),
    _Mistake("the sum of squared deviations (M2), not divided by n",
             partial(_welford_wrong, var="m2")),
    _Mistake("the one-pass E[x^2] - E[x]^2 formula, which cancels when the mean is large",
             _one_pass_float32, window=_float32_sum_window),
)


# ============================================================================ solutions
# Written as a student would: plain NumPy, one function each; solution_source shows them under
# the exercise's name.
def _solve_batchnorm_forward(x, gamma, beta, eps):
    mean = x.mean(axis=0)                    # (D,): one mean per feature, over the batch
    var = ((x - mean) ** 2).mean(axis=0)     # biased: divide by N, not N - 1
    x_hat = (x - mean) / np.sqrt(var + eps)  # eps inside the square root
    return gamma * x_hat + beta


def _solve_batchnorm_backward(dout, x, gamma, eps):
    n = x.shape[0]
    mean = x.mean(axis=0)
    inv_std = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=0) + eps)
    x_hat = (x - mean) * inv_std
    dbeta = dout.sum(axis=0)                 # beta is added to every sample
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    # x reaches the loss directly and through the mean and the variance: the two sums
    dx = inv_std / n * (n * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0))
    return dx, dgamma, dbeta


def _solve_running_stats_update(running_mean, running_var, x, momentum):
    batch_mean = x.mean(axis=0)
    batch_var = x.var(axis=0, ddof=1)        # unbiased: PyTorch's running_var divides by N - 1
    # PyTorch's momentum is the weight of the new value (Keras' is the weight of the old one)
    mean = (1 - momentum) * running_mean + momentum * batch_mean
    var = (1 - momentum) * running_var + momentum * batch_var
    return mean, var


def _solve_batchnorm2d_forward(x, gamma, beta, eps):
    axes = (0, 2, 3)                         # per channel: over the batch and every position
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)    # NumPy's var is the biased one (ddof=0)
    x_hat = (x - mean) / np.sqrt(var + eps)
    return gamma[None, :, None, None] * x_hat + beta[None, :, None, None]


def _solve_layernorm_backward(dout, x, gamma, eps):
    d = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)          # statistics per sample (row)
    inv_std = 1.0 / np.sqrt(np.mean(centred ** 2, axis=1, keepdims=True) + eps)
    x_hat = centred * inv_std
    # each feature has its own gamma and beta, shared by all the samples: sum over the batch
    dgamma, dbeta = np.sum(dout * x_hat, axis=0), np.sum(dout, axis=0)
    g = dout * gamma
    row_sum = np.sum(g, axis=1, keepdims=True)
    row_sum_xhat = np.sum(g * x_hat, axis=1, keepdims=True)
    return inv_std * (g - row_sum / d - x_hat * row_sum_xhat / d), dgamma, dbeta


def _solve_groupnorm_forward(x, num_groups, gamma, beta, eps):
    n, c, h, w = x.shape
    groups = x.reshape(n, num_groups, -1)    # (N, G, C/G * H * W): samples stay apart
    mean = groups.mean(axis=2, keepdims=True)
    var = groups.var(axis=2, keepdims=True)
    x_hat = ((groups - mean) / np.sqrt(var + eps)).reshape(n, c, h, w)
    return gamma.reshape(1, c, 1, 1) * x_hat + beta.reshape(1, c, 1, 1)


def _solve_groupnorm_backward(dout, x, num_groups, gamma, eps):
    n, c, h, w = x.shape
    groups = x.reshape(n, num_groups, -1)
    m = groups.shape[2]                      # elements per (sample, group)
    inv_std = 1.0 / np.sqrt(groups.var(axis=2, keepdims=True) + eps)
    x_hat = (groups - groups.mean(axis=2, keepdims=True)) * inv_std
    dgamma = (dout * x_hat.reshape(x.shape)).sum(axis=(0, 2, 3))
    dbeta = dout.sum(axis=(0, 2, 3))
    # gamma differs between the channels of a group: multiply it in before the group sums
    g = (dout * gamma.reshape(1, c, 1, 1)).reshape(n, num_groups, m)
    dx = m * g - g.sum(axis=2, keepdims=True) - x_hat * (g * x_hat).sum(axis=2, keepdims=True)
    return (inv_std / m * dx).reshape(x.shape), dgamma, dbeta


def _solve_adain(content, style, eps):
    axes = (2, 3)                            # per sample and channel, over the positions
    content_mean = content.mean(axis=axes, keepdims=True)
    content_std = np.sqrt(content.var(axis=axes, keepdims=True) + eps)
    style_mean = style.mean(axis=axes, keepdims=True)
    style_std = np.sqrt(style.var(axis=axes, keepdims=True) + eps)
    return style_std * (content - content_mean) / content_std + style_mean


def _solve_fold_batchnorm(conv_weight, conv_bias, gamma, beta, running_mean, running_var, eps):
    scale = gamma / np.sqrt(running_var + eps)           # (C_out,)
    weight = conv_weight * scale[:, None, None, None]    # each output channel's filter
    bias = scale * (conv_bias - running_mean) + beta     # BN applied to the conv's bias
    return weight, bias


def _solve_welford_variance(x):
    mean = np.float32(0.0)
    m2 = np.float32(0.0)                     # sum of squared deviations from the mean so far
    for k, value in enumerate(x, start=1):
        delta = value - mean
        mean += delta / k
        m2 += delta * (value - mean)         # old and new mean: no E[x^2] - E[x]^2 cancellation
    return mean, m2 / len(x)


# ---------------------------------------------------------------- adaptive_grad_clip
def _ref_adaptive_grad_clip(weight, grad, clipping, eps):
    """normlab.training.adaptive_grad_clip_ on a torch parameter: the verified AGC."""
    from .training import adaptive_grad_clip_

    param = torch.nn.Parameter(torch.tensor(weight))
    param.grad = torch.tensor(grad)
    adaptive_grad_clip_(param, clipping=clipping, eps=eps)
    return param.grad.numpy()


_AGC_UNITS = {
    "units": lambda ndim: tuple(range(1, ndim)),              # the right one: all axes but 0
    "whole": lambda ndim: tuple(range(ndim)),
    "columns": lambda ndim: (0,) + tuple(range(2, ndim)),   # per input unit (axis 1)
}
_AGC_FLOORS = {
    "max(norm, eps)": lambda norm, eps: np.maximum(norm, eps),   # the right one
    "norm": lambda norm, eps: norm,
    "norm + eps": lambda norm, eps: norm + eps,
}


def _agc(weight, grad, clipping, eps, *, units="units", floor="max(norm, eps)",
         clip_all=False):
    """AGC with the norms over one of the ``_AGC_UNITS``, the weight norm floored as one of
    the ``_AGC_FLOORS``, and, with ``clip_all``, every unit rescaled to the bound."""
    axes = _AGC_UNITS[units](weight.ndim)
    w_norm = np.sqrt((weight * weight).sum(axis=axes, keepdims=True))
    g_norm = np.sqrt((grad * grad).sum(axis=axes, keepdims=True))
    max_norm = clipping * _AGC_FLOORS[floor](w_norm, eps)
    over = g_norm > max_norm
    if clip_all:
        over = g_norm > 0
    scale = np.where(over, max_norm / np.where(g_norm > 0, g_norm, 1.0), 1.0)
    return grad * scale


def _adaptive_grad_clip(rng):
    r"""``fn(weight, grad, clipping, eps) -> clipped_grad``: adaptive gradient clipping (AGC).

    ``weight`` and its gradient ``grad`` have the same shape: a ``Linear`` weight ``(out,
    in)`` or a convolution weight ``(out, in, kh, kw)``. Each output unit :math:`i` (a row,
    or one output filter: every axis but 0) is clipped on its own, with Frobenius norms
    :math:`\lVert\cdot\rVert` over that unit: if
    :math:`\lVert G_i\rVert / \max(\lVert W_i\rVert, \epsilon) > \lambda` (``clipping``), then
    :math:`G_i \leftarrow \lambda \max(\lVert W_i\rVert, \epsilon)\, G_i / \lVert G_i\rVert`;
    units under the bound keep their gradient. Returns a new array (``grad`` unchanged).
    """
    specs = (  # (description, shape, clipping, eps, kind)
        ("Linear weight (out, in), half of the units over the bound", (6, 5), 0.01, 1e-3,
         "mixed"),
        ("conv weight (out, in, 3, 3)", (4, 3, 3, 3), 0.01, 1e-3, "mixed"),
        ("a zero-initialized unit (weight[1] = 0)", (5, 4), 0.02, 1e-3, "zero unit"),
        ("every unit under the bound: nothing changes", (4, 6), 0.01, 1e-3, "under"),
        ("non-contiguous weight and grad (strided views)", (3, 4, 2, 2), 0.04, 1e-3,
         "strided"),
        ("1x1 conv, clipping 0.16, eps 1e-2", (8, 3, 1, 1), 0.16, 1e-2, "mixed"),
    )
    cases = []
    for description, shape, clipping, eps, kind in specs:
        out = shape[0]
        weight = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        if kind == "zero unit":
            weight[1] = 0.0
        direction = rng.standard_normal(shape)
        axes = tuple(range(1, len(shape)))
        direction /= np.sqrt((direction ** 2).sum(axis=axes, keepdims=True))
        # each unit's ||G_i|| / max(||W_i||, eps) is `ratio` times the bound, well away from 1
        ratio = np.where(np.arange(out) % 2 == 0, rng.uniform(2.0, 10.0, out),
                         rng.uniform(0.1, 0.5, out))
        if kind == "under":
            ratio = rng.uniform(0.1, 0.5, out)
        w_norm = np.maximum(np.sqrt((weight ** 2).sum(axis=axes)), eps)
        grad = direction * (ratio * clipping * w_norm).reshape((out,) + (1,) * len(axes))
        if kind == "strided":
            weight, grad = _strided(weight), _strided(grad)
        cases.append(_Case(description, {"weight": weight, "grad": grad, "clipping": clipping,
                                         "eps": eps}))
    return cases


_AGC_MISTAKES = (
    _Mistake("one norm for the whole tensor instead of one per output unit (all axes but 0)",
             partial(_agc, units="whole")),
    _Mistake("every unit rescaled to the bound, not only those over it (a unit under the "
             "bound keeps its gradient)", partial(_agc, clip_all=True)),
    _Mistake("the weight norm not floored at eps: max(||W_i||, eps) is needed, or a unit whose "
             "weights are zero gets a zero gradient and never moves",
             partial(_agc, floor="norm")),
    _Mistake("norms over the wrong axes: one per input unit (axis 1, all others reduced) "
             "instead of one per output unit (axis 0)", partial(_agc, units="columns")),
    _Mistake("||W_i|| + eps instead of max(||W_i||, eps)", partial(_agc, floor="norm + eps")),
)


def _solve_adaptive_grad_clip(weight, grad, clipping, eps):
    axes = tuple(range(1, weight.ndim))      # one unit per output: every axis but 0
    w_norm = np.sqrt((weight ** 2).sum(axis=axes, keepdims=True))   # (out, 1, ...)
    g_norm = np.sqrt((grad ** 2).sum(axis=axes, keepdims=True))
    max_norm = clipping * np.maximum(w_norm, eps)    # eps: zero weights can still move
    # min(1, max_norm / g_norm), written so that a zero gradient needs no division by 0:
    # a unit under the bound is multiplied by max_norm / max_norm = 1 exactly
    return grad * (max_norm / np.maximum(g_norm, max_norm))


# ---------------------------------------------------------------- renorm_correction
def _ref_renorm_correction(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
    """normlab.functional.batch_renorm_correction on torch tensors: the verified r and d."""
    r, d = functional.batch_renorm_correction(
        *_tensors(batch_mean, batch_std, running_mean, running_var), eps, rmax, dmax)
    return r.numpy(), d.numpy()


_RENORM_R_BOUNDS = {
    "[1/rmax, rmax]": lambda rmax: (1.0 / rmax, rmax),     # the right one
    "[-rmax, rmax]": lambda rmax: (-rmax, rmax),           # as for d: no lower bound for r > 0
    "[rmax, 1/rmax]": lambda rmax: (rmax, 1.0 / rmax),     # swapped: np.clip gives 1/rmax
    "none": lambda rmax: (-np.inf, np.inf),
}


def _renorm(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax, *,
            r_bounds="[1/rmax, rmax]", ratio="sigma_B / sigma", sigma="sqrt(var + eps)",
            d_scale="sigma", d_sign=1.0, clip_d=True):
    """(r, d) with r clipped to one of the ``_RENORM_R_BOUNDS`` (as ``np.clip`` does it:
    ``minimum(maximum(q, lo), hi)``), ``ratio`` "sigma_B / sigma" or "sigma / sigma_B",
    ``sigma`` "sqrt(var + eps)" or "sqrt(var)", and d divided by ``d_scale`` "sigma" or
    "sigma_B", times ``d_sign``, clipped to [-dmax, dmax] unless ``clip_d`` is False."""
    s = np.sqrt(running_var + eps) if sigma == "sqrt(var + eps)" else np.sqrt(running_var)
    q = batch_std / s if ratio == "sigma_B / sigma" else s / batch_std
    lo, hi = _RENORM_R_BOUNDS[r_bounds](rmax)
    d = d_sign * (batch_mean - running_mean) / (s if d_scale == "sigma" else batch_std)
    return np.minimum(np.maximum(q, lo), hi), np.clip(d, -dmax, dmax) if clip_d else d


def _renorm_correction(rng):
    r"""``fn(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax) -> (r, d)``:
    batch renormalization's per-channel correction (Ioffe, 2017).

    All arrays are ``(C,)``: the batch's mean :math:`\mu_B` and standard deviation
    :math:`\sigma_B` (already :math:`\sqrt{\sigma_B^2 + \epsilon}`), and the running mean
    :math:`\mu` and running variance. With the running standard deviation
    :math:`\sigma = \sqrt{\text{running\_var} + \epsilon}`, return
    ``r = clip(sigma_B / sigma, 1/rmax, rmax)`` and ``d = clip((mu_B - mu) / sigma, -dmax,
    dmax)``, two ``(C,)`` float64 arrays. ``rmax >= 1`` and ``dmax >= 0`` are floats
    (``inf``: no clipping); ``rmax = 1, dmax = 0`` gives ``r = 1, d = 0``, plain batch norm.
    """
    specs = (  # (description, C, eps, rmax, dmax, log-ratio range, d range, kind)
        ("both bounds reached: rmax = 2, dmax = 1", 12, 1e-5, 2.0, 1.0, 1.6, 2.0, "random"),
        ("the paper's final bounds rmax = 3, dmax = 5: nothing clipped", 8, 1e-5, 3.0, 5.0,
         0.6, 3.0, "random"),
        ("warm-up: rmax = 1, dmax = 0 (plain batch norm)", 6, 1e-5, 1.0, 0.0, 1.0, 2.0,
         "random"),
        ("a running variance of 1e-7, below eps", 5, 1e-5, 3.0, 5.0, 0.5, 1.0, "tiny var"),
        ("a channel constant over the batch: batch_std = sqrt(eps)", 6, 1e-5, 3.0, 5.0, 0.5,
         1.0, "constant"),
        ("a large running mean (1e4), eps = 1e-3", 7, 1e-3, 3.0, 5.0, 1.5, 3.0,
         "large mean"),
        ("non-contiguous inputs (strided views)", 9, 1e-5, 2.0, 1.0, 1.6, 2.0, "strided"),
        ("rmax = dmax = inf: no clipping", 6, 1e-5, np.inf, np.inf, 2.0, 6.0, "random"),
    )
    cases = []
    for description, c, eps, rmax, dmax, log_ratio, d_range, kind in specs:
        running_var = np.full(c, 1e-7) if kind == "tiny var" else rng.uniform(0.5, 2.0, c)
        running_mean = rng.standard_normal(c) + (1e4 if kind == "large mean" else 0.0)
        sigma = np.sqrt(running_var + eps)
        # spread evenly over the range (so both bounds are reached), in a random order
        ratio = np.exp(rng.permutation(np.linspace(-log_ratio, log_ratio, c)))
        shift = rng.permutation(np.linspace(-d_range, d_range, c)) + 0.1 * rng.random(c)
        batch_std = ratio * sigma
        if kind == "constant":
            batch_std[1] = np.sqrt(eps)
        batch_mean = running_mean + shift * sigma
        arrays = {"batch_mean": batch_mean, "batch_std": batch_std,
                  "running_mean": running_mean, "running_var": running_var}
        if kind == "strided":
            arrays = {k: _strided(v) for k, v in arrays.items()}
        cases.append(_Case(description, {**arrays, "eps": eps, "rmax": rmax, "dmax": dmax}))
    return cases


_RENORM_MISTAKES = (
    _Mistake("the clip bounds of r swapped: clip(r, rmax, 1/rmax) is 1/rmax everywhere",
             partial(_renorm, r_bounds="[rmax, 1/rmax]")),
    _Mistake("r not clipped from below at 1/rmax: min(r, rmax), or clip(r, -rmax, rmax) as "
             "for d", partial(_renorm, r_bounds="[-rmax, rmax]")),
    _Mistake("r inverted: sigma / sigma_B instead of sigma_B / sigma",
             partial(_renorm, ratio="sigma / sigma_B")),
    _Mistake("the running sigma without eps: sqrt(running_var) instead of "
             "sqrt(running_var + eps)", partial(_renorm, sigma="sqrt(var)")),
    _Mistake("d divided by the batch's sigma_B instead of the running sigma",
             partial(_renorm, d_scale="sigma_B")),
    _Mistake("d with the wrong sign: (running_mean - batch_mean) / sigma",
             partial(_renorm, d_sign=-1.0)),
    _Mistake("r and d not clipped at all", partial(_renorm, r_bounds="none", clip_d=False)),
)


def _solve_renorm_correction(batch_mean, batch_std, running_mean, running_var, eps, rmax, dmax):
    sigma = np.sqrt(running_var + eps)                  # the running std, eps as in sigma_B
    r = np.clip(batch_std / sigma, 1.0 / rmax, rmax)    # r > 0: clipped to [1/rmax, rmax]
    d = np.clip((batch_mean - running_mean) / sigma, -dmax, dmax)
    return r, d


# ---------------------------------------------------------------- parallel_variance
def _ref_parallel_variance(counts, means, m2s):
    """Chan, Golub & LeVeque's combination in float64: what SyncBatchNorm does with the
    gathered (n_r, m_r, M2_r) (tests/test_exercises_parallel.py checks it against that code
    and against the variance of the concatenated data)."""
    c, m, s = (torch.tensor(a) for a in (counts, means, m2s))
    count = c.sum()
    mean = (c[:, None] * m).sum(0) / count
    m2 = s.sum(0) + (c[:, None] * (m - mean).square()).sum(0)
    return np.float64(count.item()), mean.numpy(), (m2 / count).numpy()


def _combine(counts, means, m2s, *, weights="counts", between=True, ddof=0, form="centred"):
    """The combination with one thing changed: ``weights="equal"`` (Flax's ``pmean``: every
    rank's mean and mean square count the same), ``between=False`` (no sum n_r (m_r - m)^2),
    ``ddof=1`` (divided by n - 1), ``form="one-pass"`` (E[x^2] - E[x]^2 from the counts)."""
    n = counts.sum()
    w = counts[:, None]
    if weights == "equal":                   # lax.pmean of (mean, mean of squares)
        mean = means.mean(axis=0)
        return n, mean, (m2s / w + means ** 2).mean(axis=0) - mean ** 2
    mean = (w * means).sum(axis=0) / n
    if form == "one-pass":
        return n, mean, (m2s + w * means ** 2).sum(axis=0) / n - mean ** 2
    m2 = m2s.sum(axis=0) + (w * (means - mean) ** 2).sum(axis=0) * between
    return n, mean, m2 / (n - ddof)


def _float64_squares_window(args, out) -> float:
    """The one-pass variance is off by the rounding of E[x^2]: a few ulps of it."""
    counts, means, m2s = (np.asarray(args[k]) for k in ("counts", "means", "m2s"))
    ex2 = (m2s + counts[:, None] * means ** 2).sum(axis=0) / counts.sum()
    return 64 * np.finfo(np.float64).eps * float(np.abs(ex2).max())


def _parallel_variance(rng):
    """``fn(counts, means, m2s) -> (count, mean, var)``: combine the ranks' statistics.

    Each of R ranks holds some values of C channels and reduced them to its count ``n_r``,
    its mean ``m_r`` and its sum of squared deviations ``M2_r = sum (x - m_r)^2`` per channel:
    ``counts`` is ``(R,)`` (float64 whole numbers, as SyncBatchNorm's all_gather carries
    them; 0 for a rank with an empty batch, whose mean and M2 are 0), ``means`` and ``m2s``
    are ``(R, C)``. Return the statistics of all the values together, as if one process had
    them all: the count ``n = sum n_r`` (a float64 scalar), the mean ``m = sum n_r m_r / n``
    ``(C,)`` and the biased variance ``var = M2 / n`` ``(C,)`` with Chan, Golub & LeVeque's
    ``M2 = sum M2_r + sum n_r (m_r - m)^2`` (no E[x^2] - E[x]^2: it cancels at a large mean).
    """
    specs = (  # (description, counts, channels, kind)
        ("two ranks of 5 values, C = 3", (5, 5), 3, "shifted"),
        ("three ranks, uneven counts (7, 2, 12)", (7, 2, 12), 4, "shifted"),
        ("a rank with an empty batch (count 0)", (6, 0, 3), 3, "shifted"),
        ("eight ranks of 2 values", (2,) * 8, 5, "shifted"),
        ("large common mean (1e4 + N(0, 1)), uneven counts (30, 10, 20)", (30, 10, 20), 4,
         "large mean"),
        ("non-contiguous means and m2s (strided views)", (4, 9, 5), 3, "strided"),
        ("one channel; a rank with a single value", (1, 11), 1, "shifted"),
    )
    cases = []
    for description, counts, c, kind in specs:
        means, m2s = np.zeros((len(counts), c)), np.zeros((len(counts), c))
        for r, n in enumerate(counts):
            if kind == "large mean":
                x = 1e4 + rng.standard_normal((n, c))
            else:   # each rank its own mean and spread: the between-rank term matters
                x = rng.normal(0.0, 2.0, c) + rng.uniform(0.5, 2.0, c) * rng.standard_normal(
                    (n, c))
            if n > 0:
                means[r] = x.mean(axis=0)
                m2s[r] = ((x - means[r]) ** 2).sum(axis=0)
        if kind == "strided":
            means, m2s = _strided(means), _strided(m2s)
        cases.append(_Case(description, {"counts": np.array(counts, dtype=np.float64),
                                         "means": means, "m2s": m2s}))
    return cases


_PARALLEL_VARIANCE_MISTAKES = (
    _Mistake("an equal-weight average over the ranks (Flax's pmean of the means and mean "
             "squares; right only when every rank has the same count)",
             partial(_combine, weights="equal")),
    _Mistake("the between-rank term sum n_r (m_r - m)^2 forgotten: var = sum M2_r / n",
             partial(_combine, between=False)),
    _Mistake("the unbiased variance (divided by count - 1) instead of the biased one "
             "(divided by count)", partial(_combine, ddof=1)),
    _Mistake("the E[x^2] - E[x]^2 form, which cancels when the mean is large",
             partial(_combine, form="one-pass"), window=_float64_squares_window),
)


def _solve_parallel_variance(counts, means, m2s):
    count = counts.sum()                                  # a rank with count 0 adds nothing
    w = counts[:, None]                                   # (R, 1): one weight per rank
    mean = (w * means).sum(axis=0) / count                # weighted by the counts
    # within the ranks, plus between them: each rank's mean is off the global one
    m2 = m2s.sum(axis=0) + (w * (means - mean) ** 2).sum(axis=0)
    return count, mean, m2 / count


# ============================================================================ registry
_GRADERS = {g.name: g for g in (
    _Grader("batchnorm_forward", ("out",), _ref_batchnorm_forward, _batchnorm_forward,
            _BN1D_FORWARD_MISTAKES),
    _Grader("batchnorm_backward", ("dx", "dgamma", "dbeta"), _ref_batchnorm_backward,
            _batchnorm_backward, _BN_BACKWARD_MISTAKES),
    _Grader("running_stats_update", ("mean", "var"), _ref_running_stats_update,
            _running_stats_update, _RUNNING_STATS_MISTAKES),
    _Grader("batchnorm2d_forward", ("out",), _ref_batchnorm_forward, _batchnorm2d_forward,
            _BN2D_FORWARD_MISTAKES),
    _Grader("layernorm_backward", ("dx", "dgamma", "dbeta"), _ref_layernorm_backward,
            _layernorm_backward, _LN_BACKWARD_MISTAKES),
    _Grader("groupnorm_forward", ("out",), _ref_groupnorm_forward, _groupnorm_forward,
            _GN_FORWARD_MISTAKES),
    _Grader("groupnorm_backward", ("dx", "dgamma", "dbeta"), _ref_groupnorm_backward,
            _groupnorm_backward, _GN_BACKWARD_MISTAKES),
    _Grader("adain", ("out",), _ref_adain, _adain_cases, _ADAIN_MISTAKES,
            main_input="content"),
    _Grader("fold_batchnorm", ("weight", "bias"), _ref_fold_batchnorm, _fold_batchnorm,
            _FOLD_MISTAKES, main_input="conv_weight"),
    _Grader("welford_variance", ("mean", "var"), _ref_welford_variance, _welford_variance,
            _WELFORD_MISTAKES, rtol=_TOL_WELFORD, dtype=np.float32),
    _Grader("adaptive_grad_clip", ("clipped_grad",), _ref_adaptive_grad_clip,
            _adaptive_grad_clip, _AGC_MISTAKES, main_input="weight"),
    _Grader("renorm_correction", ("r", "d"), _ref_renorm_correction, _renorm_correction,
            _RENORM_MISTAKES, main_input="batch_mean"),
    _Grader("parallel_variance", ("count", "mean", "var"), _ref_parallel_variance,
            _parallel_variance, _PARALLEL_VARIANCE_MISTAKES, main_input="means"),
)}

_SOLUTIONS = {
    "batchnorm_forward": _solve_batchnorm_forward,
    "batchnorm_backward": _solve_batchnorm_backward,
    "running_stats_update": _solve_running_stats_update,
    "batchnorm2d_forward": _solve_batchnorm2d_forward,
    "layernorm_backward": _solve_layernorm_backward,
    "groupnorm_forward": _solve_groupnorm_forward,
    "groupnorm_backward": _solve_groupnorm_backward,
    "adain": _solve_adain,
    "fold_batchnorm": _solve_fold_batchnorm,
    "welford_variance": _solve_welford_variance,
    "adaptive_grad_clip": _solve_adaptive_grad_clip,
    "renorm_correction": _solve_renorm_correction,
    "parallel_variance": _solve_parallel_variance,
}
