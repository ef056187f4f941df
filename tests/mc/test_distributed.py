"""Monte Carlo across two processes (torch.distributed, gloo, a file store): the same
answers as one process, every rank alike."""

import datetime
import math

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributions import Normal

import probcalc as pc
from probcalc.core import distributed


def _square(x):
    return x**2


Y = 0.7  # one observation, y ~ N(θ, 1), θ ~ N(0, 1): Z = N(y; 0, 2)


def _log_joint(theta):
    return Normal(0.0, 1.0).log_prob(theta) + Normal(theta, 1.0).log_prob(torch.tensor(Y))


def _fails_on_rank_one(x):
    if dist.get_rank() == 1:
        raise FloatingPointError("rank 1's integrand failed")
    return x**2


def _worker(rank, world, store, out):
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.set_default_dtype(torch.float64)
        normal = Normal(torch.tensor(1.0), torch.tensor(2.0))
        results = {
            "qmc": pc.mc.expectation(_square, normal, 2**14, method="qmc", seed=3),
            "mc": pc.mc.expectation(_square, normal, 200_000, seed=5, batch_size=30_000),
            "seed": distributed.rank_seed(5, distributed.active_group()),
            "share": distributed.share(7, distributed.active_group()),
        }
        if rank == 0:  # a local computation under an initialized group: no collective
            results["local"] = pc.mc.expectation(_square, normal, 1000, seed=5, group=False)
        try:
            pc.mc.expectation(_fails_on_rank_one, normal, 1000, seed=5)
        except (FloatingPointError, RuntimeError) as error:
            results["failure"] = f"{type(error).__name__}: {error}"
        for name, estimator in (
            ("pathwise", pc.mc.pathwise_grad),
            ("score", pc.mc.score_function_grad),
        ):
            mu = torch.tensor(1.0, requires_grad=True)
            estimate = estimator(_square, Normal(mu, torch.tensor(2.0)), 100_000, seed=7)
            estimate.backward()
            grad = mu.grad.clone()
            dist.all_reduce(grad)  # DistributedDataParallel's convention: average the .grad
            results[name] = (estimate.detach(), grad / world)
        proposal = Normal(torch.tensor(0.35), torch.tensor(1.2))
        for smoothing in ("none", "psis"):
            result = pc.mc.importance_sampling(
                _log_joint, proposal, 40_000, seed=11, smoothing=smoothing
            )
            raw = _log_joint(result.samples) - proposal.log_prob(result.samples)
            everything = [torch.empty_like(raw) for _ in range(world)]
            dist.all_gather(everything, raw)  # for the test only: every weight, to check
            theta_mean = result.expectation(lambda t: t)
            results[smoothing] = (
                result.log_evidence,
                result.stderr,
                result.ess,
                result.khat,
                torch.cat(everything),
                theta_mean,
            )
        torch.save(results, f"{out}/rank{rank}.pt")
        dist.barrier()  # leave together: gloo aborts a process torn down while a peer works
    finally:
        dist.destroy_process_group()


def _run_two_ranks(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_two_ranks_match_one_process_and_the_closed_form(tmp_path):
    ranks = _run_two_ranks(tmp_path)
    normal = Normal(torch.tensor(1.0), torch.tensor(2.0))
    single = pc.mc.expectation(_square, normal, 2**14, method="qmc", seed=3)
    # QMC: consecutive blocks of the same scrambled sequences, so the same n points
    for result in ranks:
        torch.testing.assert_close(result["qmc"].value, single.value, rtol=1e-12, atol=0)
        torch.testing.assert_close(result["qmc"].stderr, single.stderr, rtol=1e-12, atol=0)
    # plain MC: E[X²] = μ² + σ² = 5; Var(X²) = 2σ⁴ + 4μ²σ² = 48, so stderr = √(48/n)
    mc = ranks[0]["mc"]
    assert abs(float(mc.value) - 5.0) < 4 * float(mc.stderr)
    assert mc.n_evals == 200_000
    np.testing.assert_allclose(float(mc.stderr), math.sqrt(48 / 200_000), rtol=0.1)
    # every rank returns the same result; the ranks' streams differ
    assert torch.equal(ranks[0]["mc"].value, ranks[1]["mc"].value)
    assert torch.equal(ranks[0]["mc"].stderr, ranks[1]["mc"].stderr)
    assert ranks[0]["seed"] != ranks[1]["seed"]
    assert [r["share"] for r in ranks] == [(0, 4), (4, 3)]
    # group=False: rank 0 alone, the plain one-process result
    local = pc.mc.expectation(_square, normal, 1000, seed=5)
    assert torch.equal(ranks[0]["local"].value, local.value)
    # gradient estimators: d/dμ E[X²] = 2μ = 2; the pathwise estimate mean(2X) has stderr
    # 2σ/√n; both ranks hold the same value and, once averaged, the same gradient
    value, grad = ranks[0]["pathwise"]
    assert abs(float(grad) - 2.0) < 4 * 2 * 2.0 / math.sqrt(100_000)
    assert abs(float(value) - 5.0) < 4 * math.sqrt(48 / 100_000)
    for name in ("pathwise", "score"):
        assert torch.equal(ranks[0][name][0], ranks[1][name][0])
        assert torch.equal(ranks[0][name][1], ranks[1][name][1])
    assert abs(float(ranks[0]["score"][1]) - 2.0) < 0.5  # a far noisier estimator
    # a failure on one rank raises on both, with no wait for the group's timeout
    assert ranks[1]["failure"] == "FloatingPointError: rank 1's integrand failed"
    assert ranks[0]["failure"].startswith("RuntimeError: rank 1 of the process group failed")


def test_a_single_process_is_its_own_world():
    assert distributed.active_group() is False
    assert distributed.share(7) == (0, 7) and distributed.rank_seed(5) == 5
    count, mean, m2 = distributed.gather_moments(3, torch.tensor(1.0), torch.tensor(2.0))
    assert (count, float(mean), float(m2)) == (3, 1.0, 2.0)


def test_importance_sampling_across_two_ranks(tmp_path):
    """The log evidence of a conjugate model within 4 stderr of the closed form; the ESS
    and k-hat equal those of all the ranks' weights put together; the posterior mean (the
    self-normalized expectation across ranks) within 4 stderr of y / 2."""
    ranks = _run_two_ranks(tmp_path)
    exact = float(Normal(0.0, math.sqrt(2.0)).log_prob(torch.tensor(Y)))
    for smoothing in ("none", "psis"):
        log_evidence, stderr, ess, khat, weights, theta_mean = ranks[0][smoothing]
        assert abs(float(log_evidence) - exact) < 4 * float(stderr)
        smoothed, khat_all = pc.mc.psis(weights)
        used = smoothed if smoothing == "psis" else weights
        normalized = torch.softmax(used, dim=0)
        np.testing.assert_allclose(ess, float(1 / (normalized**2).sum()), rtol=1e-10)
        np.testing.assert_allclose(khat, float(khat_all), rtol=1e-10)
        np.testing.assert_allclose(
            float(log_evidence), float(torch.logsumexp(weights, 0)) - math.log(40_000), rtol=1e-12
        )
        assert theta_mean.n_evals == 40_000
        assert abs(float(theta_mean.value) - Y / 2) < 4 * float(theta_mean.stderr)
        other = ranks[1][smoothing]
        assert float(other[0]) == float(log_evidence) and other[2] == ess and other[3] == khat
