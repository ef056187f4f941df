"""expectation(method="qmc") across three processes (torch.distributed, gloo, a file store):
the ranks' stretches of the sequence end inside its blocks, and the estimate and its stderr
still equal the one-process ones."""

import datetime

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributions import MultivariateNormal

import probcalc as pc
from probcalc.core.results import Estimate

RUNS = {"one sequence": (2**12, 1, 300), "three scrambles": (3 * 2**10, 3, 250)}


def _problem() -> tuple[MultivariateNormal, torch.Tensor]:
    cov = torch.tensor([[1.0, 0.3, 0.1], [0.3, 0.8, -0.2], [0.1, -0.2, 0.5]])
    return MultivariateNormal(torch.tensor([0.2, -0.1, 0.4]), cov), torch.tensor([0.3, -0.5, 0.2])


def _estimate(n: int, scrambles: int, batch_size: int, group=None) -> Estimate:
    normal, a = _problem()
    return pc.mc.expectation(
        lambda x: torch.exp(x @ a),
        normal,
        n,
        method="qmc",
        seed=4,
        scrambles=scrambles,
        batch_size=batch_size,
        group=group,
    )


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
        results = {name: _estimate(*run) for name, run in RUNS.items()}
        torch.save(results, f"{out}/rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_three_ranks_whose_shares_split_blocks_match_one_process(tmp_path):
    """2^12 points over 3 ranks: shares of 1366, 1365, 1365 points end inside the blocks of
    512 (and of the three scrambles' 1024), in batches of 300 (250) that straddle them.
    The partial sums round differently, so the stderr, a spread of means that agree to
    about 1e-5, is compared to 1e-12 of the value rather than of itself."""
    mp.spawn(_worker, args=(3, str(tmp_path / "store"), str(tmp_path)), nprocs=3, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(3)]
    torch.set_default_dtype(torch.float64)
    for name, run in RUNS.items():
        single = _estimate(*run, group=False)
        for result in ranks:
            torch.testing.assert_close(result[name].value, single.value, rtol=1e-12, atol=0)
            scale = 1e-12 * float(single.value.abs())
            torch.testing.assert_close(result[name].stderr, single.stderr, rtol=0, atol=scale)
            assert result[name].n_evals == single.n_evals == run[0]
