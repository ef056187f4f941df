"""PPO on an LQR (state 2, action 1) against the Riccati solution."""

import numpy as np
import torch
from lqr2 import LQR2, PPO_LQR2, train_on_seeds

import probcalc as pc


def test_ppo_with_a_linear_policy_reaches_the_optimal_lqr_cost_and_gain():
    """Seeds 0, 1 and 2, 50,000 steps each: the median cost within 3% of the optimal
    discounted cost, the median gain within 25% (relative Frobenius norm) of optimal_gain(),
    and at least two of the three seeds' costs within 10%. On an AMD EPYC seeds 0 to 11
    measured cost ratios of 1.0006 to 1.0238 and gain errors of 0.033 to 0.236; on an Intel
    Xeon seed 0 ends at 1.544 (gain error 0.64) while seeds 1 and 2 give 1.009 and 1.001: the
    run is chaotic in the last bits of the kernels' rounding, and a seed that leaves the
    stabilizing gains early recovers slowly, so no single seed's outcome is guaranteed. The
    cost is flat along some gains, so the gain is the looser figure. The rewards are
    normalized (by the std of the discounted return): without it, the early quadratic costs
    of thousands per step make the critic's regression, and with it the run, depend on
    rounding."""
    results = train_on_seeds(lambda seed: pc.rl.PPO(LQR2, **PPO_LQR2, seed=seed), (0, 1, 2), 50_000)
    print(f"PPO: cost / optimal cost {results[:, 0]}, relative gain error {results[:, 1]}")
    ratio, gain_error = np.median(results, axis=0)
    assert ratio < 1.03
    assert gain_error < 0.25
    assert np.sum(results[:, 0] < 1.10) >= 2


def test_ppo_save_and_load_keep_the_value_network(tmp_path):
    agent = pc.rl.PPO(LQR2, policy="linear", n_envs=2, n_steps=32, seed=1)
    agent.learn(total_steps=128)
    agent.save(tmp_path / "ppo.pt")
    loaded = pc.rl.PPO.load(tmp_path / "ppo.pt")
    obs = torch.randn(4, 2, dtype=torch.float32)
    assert torch.equal(loaded.value(obs), agent.value(obs))
    np.testing.assert_array_equal(loaded.predict(obs.numpy()), agent.predict(obs.numpy()))
