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


def test_a_compiled_update_takes_the_eager_steps():
    """compile=True (torch.compile of each minibatch's forward and backward pass): after 2
    updates of 8 minibatch steps with gSDE, value clipping and an entropy bonus, in float64,
    the parameters equal those of the eager run to 1e-10, and the logged KL and clip
    fraction too; the compiled function has no graph break (one graph)."""
    import torch._dynamo

    settings = {
        "n_envs": 2,
        "n_steps": 64,
        "batch_size": 32,
        "n_epochs": 2,
        "use_sde": True,
        "clip_range_vf": 0.5,
        "ent_coef": 0.01,
        "seed": 0,
        "dtype": torch.float64,
    }
    rows = {True: [], False: []}
    agents = {
        compile: pc.rl.PPO("Pendulum-v1", compile=compile, **settings).learn(
            256, callback=lambda agent, row, compile=compile: rows[compile].append(row)
        )
        for compile in (False, True)
    }
    for eager, compiled in zip(
        agents[False].networks.values(), agents[True].networks.values(), strict=True
    ):
        for a, b in zip(eager.parameters(), compiled.parameters(), strict=True):
            np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), atol=1e-10)
    for eager_row, compiled_row in zip(rows[False], rows[True], strict=True):
        for name in ("approx_kl", "clip_fraction", "policy_loss", "value_loss"):
            np.testing.assert_allclose(compiled_row[name], eager_row[name], rtol=1e-8, atol=1e-12)
    agent = agents[True]
    flat = agent.flatten(agent.collect())
    explanation = torch._dynamo.explain(agent.minibatch_sums)(
        *(flat[name][:32] for name in ("obs", "actions", "old_log_prob", "advantages")),
        flat["old_values"][:32],
        flat["returns"][:32],
    )
    assert explanation.graph_break_count == 0
