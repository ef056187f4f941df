# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Training and inspecting a policy
#
# A linear-quadratic regulator is the one control problem whose optimal policy is known
# in closed form (the Riccati equation), so it tells us exactly how good a trained policy
# is. We train PPO with a linear policy on a double integrator (position and velocity,
# pushed by a force), then inspect the run: the logs, the learned gain against the
# Riccati gain, a checkpoint reloaded, and single-observation predictions.

# %%
import csv
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from probcalc.envs.lqr import LQREnv

import probcalc as pc

torch.set_num_threads(1)  # small networks: one thread is the fastest on a CPU

system = {
    "A": [[1.0, 0.1], [0.0, 1.0]],
    "B": [[0.0], [0.1]],
    "gamma": 0.95,
    "noise_std": 0.05,
    "action_scale": 10.0,
}
env = LQREnv(**system)
optimal_gain = env.optimal_gain()
print("Riccati gain:", np.round(optimal_gain, 3), "cost:", round(env.policy_cost(optimal_gain), 4))

# %% [markdown]
# ## Training
#
# The policy is a = -K x plus Gaussian noise of fixed scale; rewards are normalized by the
# running standard deviation of the discounted return. `log_dir` receives the CSV logs,
# the checkpoints and the final model.

# %%
run = Path(tempfile.mkdtemp()) / "lqr"
agent = pc.rl.PPO(
    "probcalc/LQR-v0",
    env_kwargs={**system, "max_episode_steps": 100},
    policy="linear",
    n_envs=8,
    n_steps=128,
    gamma=0.95,
    learning_rate=2e-3,
    lr_schedule="linear",
    log_std_init=math.log(0.05),
    learn_std=False,
    batch_size=128,
    max_grad_norm=10.0,
    normalize_rewards=True,
    seed=0,
)
# The keywords are the fields of a frozen config, `agent.config` (a `pc.rl.PPOConfig`;
# `pc.rl.PPO(..., config=pc.rl.PPOConfig(...))` builds the same agent), and
# `pc.rl.PPO.settings()` lists every setting with its default.
assert agent.config.n_steps == 128 and agent.config.seed == 0
with torch.no_grad():  # start from the zero controller u = 0
    agent.policy.mean[0].weight.zero_()
    agent.policy.mean[0].bias.zero_()
agent.learn(50_000, log_dir=run, checkpoint_every=10_240)


def learned_gain(agent):
    """K of the policy's mean action a = -K x, in the environment's units."""
    return -env.action_scale * agent.policy.mean[0].weight.detach().double().numpy()


ratio = env.policy_cost(learned_gain(agent)) / env.policy_cost(optimal_gain)
print("learned gain:", np.round(learned_gain(agent), 3), f"cost / optimal = {ratio:.4f}")
assert ratio < 1.10

# %% [markdown]
# ## The logs
#
# `progress.csv` has a row per update (steps per second, the mean return of the last 100
# episodes, the losses, the approximate KL, the clip fraction, the explained variance);
# `episodes.csv` a row per finished episode.

# %%
with (run / "progress.csv").open() as handle:
    progress = list(csv.DictReader(handle))
print("columns:", ", ".join(progress[0]))
first, last = progress[0], progress[-1]
print(
    f"mean return {float(first['mean_return']):.1f} at step {first['step']} -> "
    f"{float(last['mean_return']):.1f} at step {last['step']}"
)
assert float(last["mean_return"]) > float(first["mean_return"])

# %% [markdown]
# ## Reload, resume and predict
#
# `pc.rl.load` reads any saved agent (the algorithm is in the file); a checkpoint also holds
# the optimizer, the normalizers, the random streams and the environments, so a run
# resumed from it continues exactly. `predict` takes one observation or a batch.

# %%
reloaded = pc.rl.load(run / "model.pt")
assert np.array_equal(learned_gain(reloaded), learned_gain(agent))
one_action = reloaded.predict(np.array([1.0, 0.0], dtype=np.float32))
batch = reloaded.predict(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
print("one observation ->", one_action.shape, "a batch of two ->", batch.shape)
assert one_action.shape == (1,) and batch.shape == (2, 1)
mean, std = pc.rl.evaluate(reloaded, n_episodes=5, seed=0)
print(f"evaluation: return {mean:.2f} ± {std:.2f} over 5 episodes")
