"""The parallel_variance grader (chapter 10): Chan et al.'s combination of per-rank statistics.

Its reference is checked against the statistics of the concatenated data and against the
combination inside normlab.nn.SyncBatchNorm (fed by a stand-in all_gather); right answers
written in other ways pass, and each known mistake is named as itself."""
import re

import numpy as np
import pytest
import torch
import torch.distributed as dist

from normlab import exercises as E
from normlab.nn import syncbatchnorm

NAME = "parallel_variance"
GRADER = E._GRADERS[NAME]


def rejects(fn, *fragments):
    with pytest.raises(AssertionError) as info:
        with np.errstate(all="ignore"):
            E.check(NAME, fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return message


def _shards(rng, counts, c, mean=0.0):
    return [mean + rng.normal(0, 2, c) + rng.uniform(0.5, 2, c) * rng.standard_normal((n, c))
            for n in counts]


def _reduce(shards, c):
    counts = np.array([len(x) for x in shards], dtype=np.float64)
    means = np.array([x.mean(0) if len(x) else np.zeros(c) for x in shards])
    m2s = np.array([((x - x.mean(0)) ** 2).sum(0) if len(x) else np.zeros(c) for x in shards])
    return counts, means, m2s


# ------------------------------------------------------------------ the reference is right
@pytest.mark.parametrize("counts, mean", [((5, 5), 0.0), ((7, 2, 12), 0.0), ((6, 0, 3), 0.0),
                                          ((1, 11), 0.0), ((30, 10, 20), 1e4)])
def test_reference_is_the_statistics_of_the_concatenated_data(counts, mean):
    rng = np.random.default_rng(0)
    shards = _shards(rng, counts, 4, mean)
    n, m, var = GRADER.reference(*_reduce(shards, 4))
    allx = np.concatenate(shards)
    assert isinstance(n, np.float64) and n == len(allx)
    np.testing.assert_allclose(m, allx.mean(0), rtol=1e-13)
    np.testing.assert_allclose(var, allx.var(0), rtol=1e-11)


def test_reference_is_what_syncbatchnorm_computes(monkeypatch):
    """SyncBatchNorm's _global_statistics on rank 0's part, with an all_gather that hands it
    the packed (n_r, m_r, M2_r) of every rank: the same mean and variance."""
    rng = np.random.default_rng(1)
    counts, c = (3, 0, 5, 1), 3
    shards = [torch.tensor(x) for x in _shards(rng, counts, c, mean=2.0)]

    def packed(x):
        n = x.shape[0]
        mean = x.mean(0) if n else torch.zeros(c, dtype=x.dtype)
        m2 = (x - mean).square().sum(0) if n else torch.zeros(c, dtype=x.dtype)
        return torch.cat([torch.tensor([float(n)], dtype=x.dtype), mean, m2])

    def fake_all_gather(tensor_list, tensor, group=None):
        torch.testing.assert_close(tensor, packed(shards[0]), rtol=1e-12, atol=1e-12)
        for out, x in zip(tensor_list, shards):
            out.copy_(packed(x))

    monkeypatch.setattr(dist, "all_gather", fake_all_gather)
    x0 = shards[0].view(counts[0], c, 1)
    mean, var, count = syncbatchnorm._global_statistics(x0, None, len(counts), x0.shape)
    n, m, v = GRADER.reference(*_reduce([x.numpy() for x in shards], c))
    assert count == n == sum(counts)
    np.testing.assert_allclose(mean.numpy(), m, rtol=1e-14)
    np.testing.assert_allclose(var.numpy(), v, rtol=1e-13)


def test_combine_without_a_change_is_the_reference():
    for case in GRADER.cases(np.random.default_rng(E._SEED)):
        want = GRADER.reference(*case.fresh_args())
        for got, w in zip(E._combine(*case.fresh_args()), want):
            assert E._max_error(got, w)[0] <= GRADER.rtol / 10


def test_cases_cover_the_edge_cases():
    cases = GRADER.cases(np.random.default_rng(E._SEED))
    assert any((c.args["counts"] == 0).any() for c in cases)            # an empty rank
    assert any(np.abs(c.args["means"]).min() > 1e3 for c in cases)      # a large mean
    assert any(len(set(c.args["counts"])) > 1 for c in cases)           # uneven counts
    assert any(not c.args["means"].flags.c_contiguous for c in cases)   # a strided view
    assert len({c.args["counts"].shape for c in cases}) > 2             # several R


# ------------------------------------------------------------------ right answers pass
def _pairwise_merge(counts, means, m2s):
    """Chan et al.'s update, one rank at a time (a loop, not vectorized)."""
    n, mean, m2 = 0.0, np.zeros(means.shape[1]), np.zeros(means.shape[1])
    for n_b, mean_b, m2_b in zip(counts, means, m2s):
        if n_b == 0:
            continue
        delta = mean_b - mean
        total = n + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta ** 2 * (n * n_b / total)
        n = total
    return np.float64(n), mean, m2 / n


def _torch_version(counts, means, m2s):
    c, m, s = (torch.tensor(a) for a in (counts, means, m2s))
    n = c.sum()
    mean = (c @ m) / n
    var = (s.sum(0) + c @ (m - mean) ** 2) / n
    return np.float64(n.item()), mean.numpy(), var.numpy()


@pytest.mark.parametrize("fn", [E.solution(NAME), _pairwise_merge, _torch_version])
def test_right_answers_pass_with_margin(fn, capsys):
    E.check(NAME, fn)
    assert capsys.readouterr().out == f"{NAME}: 7/7 cases match to 1e-10\n"
    for case in GRADER.cases(np.random.default_rng(E._SEED)):
        for got, want in zip(fn(*case.fresh_args()), GRADER.reference(*case.fresh_args())):
            assert E._max_error(got, want)[0] < GRADER.rtol / 10


def test_the_shown_solution_runs_as_printed(capsys):
    source = E.solution_source(NAME)
    assert source.startswith(f"def {NAME}(counts, means, m2s):")
    namespace = {"np": np}
    exec(source, namespace)
    E.check(NAME, namespace[NAME])
    assert "7/7 cases match" in capsys.readouterr().out


# ------------------------------------------------------------------ mistakes are named
EQUAL = "looks like an equal-weight average over the ranks (Flax's pmean"
BETWEEN = "looks like the between-rank term sum n_r (m_r - m)^2 forgotten"
UNBIASED = "looks like the unbiased variance (divided by count - 1)"
ONE_PASS = "looks like the E[x^2] - E[x]^2 form, which cancels when the mean is large"


@pytest.mark.parametrize("mistake", GRADER.mistakes, ids=lambda m: m.name[:30])
def test_every_mistake_is_rejected_as_itself(mistake):
    pattern = re.escape("looks like " + mistake.name)
    assert re.search(pattern, rejects(mistake.fn))


def test_mistakes_written_by_hand_are_named():
    # Flax's way, as a reader would write it: equal-weight means of the mean and mean square
    def flax(counts, means, m2s):
        mean = means.mean(0)
        return counts.sum(), mean, np.mean(m2s / counts[:, None] + means ** 2, 0) - mean ** 2
    rejects(flax, EQUAL)

    # the equal-weight average of the ranks' means and variances
    def averages(counts, means, m2s):
        return counts.sum(), means.mean(0), (m2s / counts[:, None]).mean(0)
    rejects(averages, EQUAL)

    def no_between(counts, means, m2s):
        n = counts.sum()
        return n, counts @ means / n, m2s.sum(0) / n
    rejects(no_between, "case 1/7", BETWEEN)

    def unbiased(counts, means, m2s):
        n, mean, var = E.solution(NAME)(counts, means, m2s)
        return n, mean, var * n / (n - 1)
    rejects(unbiased, "case 1/7", UNBIASED)

    # E[x^2] - E[x]^2, with the squares summed in another order than the grader's own
    def one_pass(counts, means, m2s):
        n = counts.sum()
        mean = counts @ means / n
        ex2 = sum(m2 + k * m ** 2 for k, m, m2 in zip(counts, means, m2s)) / n
        return n, mean, ex2 - mean * mean
    rejects(one_pass, "large common mean", ONE_PASS)


def test_structure_is_checked_first():
    solve = E.solution(NAME)
    rejects(lambda *a: solve(*a)[1:], "returned 2 arrays, expected 3 (count, mean, var)")
    rejects(lambda *a: (int(solve(*a)[0]),) + solve(*a)[1:],
            "returned count as int, expected a NumPy float64 scalar")
    rejects(lambda *a: (solve(*a)[0], solve(*a)[1][None], solve(*a)[2]),
            "case 1/7", "returned mean of shape (1, 3), expected (3,)")
    rejects(lambda c, m, s: (c.sum(), m.mean(0, keepdims=True), s.sum(0) / c.sum()),
            "returned mean of shape (1, 3), expected (3,)")


def test_nan_and_the_stub():
    solve = E.solution(NAME)
    rejects(lambda *a: (np.float64(np.nan),) + solve(*a)[1:], "count contains NaN", "case 1/")

    def stub(counts, means, m2s):
        raise NotImplementedError("your code here")
    assert E.check(NAME, stub) is None  # reported, not raised (test_exercises.py)
