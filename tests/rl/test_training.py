"""The training experience: reproducibility, logs, checkpoints and resume, save/load,
environments as ids or instances, sync or async, squashed actions, bad input."""

import csv
import math
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from probcalc.envs.lqr import LQREnv

import probcalc as pc

SMALL_PPO = {
    "n_envs": 2,
    "n_steps": 64,
    "batch_size": 32,
    "n_epochs": 2,
    "seed": 0,
    "normalize_observations": True,
    "normalize_rewards": True,
}


def _parameters(agent):
    return [p.detach().clone() for net in agent.networks.values() for p in net.parameters()]


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("algorithm", ["REINFORCE", "A2C", "PPO", "NaturalPG", "TRPO"])
def test_the_same_seed_gives_the_same_parameters_and_another_seed_does_not(algorithm):
    make = getattr(pc.rl, algorithm)
    first = make("probcalc/LQR-v0", n_envs=2, n_steps=50, seed=7).learn(5_000)
    second = make("probcalc/LQR-v0", n_envs=2, n_steps=50, seed=7).learn(5_000)
    third = make("probcalc/LQR-v0", n_envs=2, n_steps=50, seed=8).learn(5_000)
    for a, b in zip(_parameters(first), _parameters(second), strict=True):
        assert torch.equal(a, b)
    assert not all(
        torch.equal(a, c) for a, c in zip(_parameters(first), _parameters(third), strict=True)
    )


def test_a_resumed_run_ends_bit_for_bit_where_the_uninterrupted_run_ends(tmp_path):
    """Run B stops two updates after its checkpoint at step 1,024 (their work is lost, as in
    a crash); a new process resumes it from the checkpoint. Parameters, normalization
    statistics, step count and the episode log equal those of run A, which never stopped."""
    whole = pc.rl.PPO("Pendulum-v1", **SMALL_PPO)
    whole.learn(2_048, log_dir=tmp_path / "a", checkpoint_every=512)

    stopped = pc.rl.PPO("Pendulum-v1", **SMALL_PPO)
    stopped.learn(
        2_048,
        log_dir=tmp_path / "b",
        checkpoint_every=512,
        callback=lambda agent, row: row["step"] < 1_280,
    )
    assert stopped.num_timesteps == 1_280
    resumed = pc.rl.PPO("Pendulum-v1", **SMALL_PPO)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the environments came back: no reset warning
        resumed.learn(
            2_048,
            log_dir=tmp_path / "b",
            checkpoint_every=512,
            resume_from=tmp_path / "b" / "checkpoint.pt",
        )

    assert resumed.num_timesteps == whole.num_timesteps == 2_048
    for a, b in zip(_parameters(whole), _parameters(resumed), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(resumed.obs_normalizer.stats.var, whole.obs_normalizer.stats.var)
    np.testing.assert_array_equal(
        resumed.reward_normalizer.stats.var, whole.reward_normalizer.stats.var
    )
    assert _rows(tmp_path / "b" / "episodes.csv") == _rows(tmp_path / "a" / "episodes.csv")
    steps_b = [row["step"] for row in _rows(tmp_path / "b" / "progress.csv")]
    assert steps_b == [row["step"] for row in _rows(tmp_path / "a" / "progress.csv")]


def test_the_logs_hold_every_episode_with_its_true_length(tmp_path):
    """LQR-v0 never terminates and is cut at 200 steps; each of 2 environments spends one
    step on every reset, so 1,000 steps each end episodes at 200, 401, 602 and 803: 8 rows,
    each 200 long, whose returns are the sums of the rewards the environments gave."""
    agent = pc.rl.PPO("probcalc/LQR-v0", n_envs=2, n_steps=250, seed=0)
    agent.learn(2_000, log_dir=tmp_path)
    episodes = _rows(tmp_path / "episodes.csv")
    assert len(episodes) == 8
    assert all(int(row["episode_length"]) == 200 for row in episodes)
    assert all(float(row["episode_return"]) < 0 for row in episodes)  # costs only
    progress = _rows(tmp_path / "progress.csv")
    assert [int(row["step"]) for row in progress] == [500, 1000, 1500, 2000]
    assert {
        "steps_per_second",
        "mean_return",
        "policy_loss",
        "value_loss",
        "approx_kl",
        "clip_fraction",
        "entropy",
        "learning_rate",
    } <= set(progress[0])
    assert (tmp_path / "model.pt").exists()


def test_the_episode_returns_are_the_undiscounted_sums_of_rewards():
    """One environment, a one-step-per-episode bandit: each logged return is the reward of
    that step, which evaluate() reproduces with the same seeds."""
    agent = pc.rl.REINFORCE("probcalc/ContinuousBandit-v0", n_envs=1, n_steps=8, seed=0)
    batch = agent.collect()
    logged = [episode[1] for episode in agent.finished_episodes]
    real = batch.rewards[~batch.reset_step].numpy()
    np.testing.assert_allclose(logged, real, rtol=1e-6)


def test_progress_bar_and_a_callback_that_stops(capsys):
    agent = pc.rl.A2C("probcalc/LQR-v0", n_envs=2, n_steps=10, seed=0)
    seen = []
    agent.learn(1_000, progress_bar=True, callback=lambda a, row: seen.append(row) or len(seen) < 3)
    assert len(seen) == 3 and agent.num_timesteps == 60
    assert "step" in capsys.readouterr().err


def test_save_and_load_keep_the_normalization_and_predictions(tmp_path):
    agent = pc.rl.PPO("Pendulum-v1", **SMALL_PPO).learn(512)
    agent.save(tmp_path / "agent.pt")
    loaded = pc.rl.load(tmp_path / "agent.pt")
    assert isinstance(loaded, pc.rl.PPO) and loaded.num_timesteps == 512
    obs = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    np.testing.assert_array_equal(loaded.obs_normalizer.stats.mean, agent.obs_normalizer.stats.mean)
    with pytest.raises(pc.CheckpointError, match="holds an agent of PPO, not of A2C"):
        pc.rl.A2C.load(tmp_path / "agent.pt")


def test_an_environment_instance_works_and_is_needed_again_to_load(tmp_path):
    made = gymnasium.make("probcalc/LQR-v0")
    agent = pc.rl.PPO(made, n_envs=2, n_steps=16, batch_size=32, seed=0).learn(64)
    assert agent.env_id == "probcalc/LQR-v0"
    with pytest.warns(UserWarning, match="no time limit"):
        bare = pc.rl.A2C(LQREnv(), n_envs=2, n_steps=5, seed=0)
    bare.learn(20)
    bare.save(tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="env="):
        pc.rl.load(tmp_path / "bare.pt")
    with pytest.warns(UserWarning, match="no time limit"):
        assert pc.rl.load(tmp_path / "bare.pt", env=LQREnv()).num_timesteps == 20


def test_async_environments_give_the_same_rollout_as_sync():
    sync = pc.rl.PPO("Pendulum-v1", n_envs=2, n_steps=30, seed=3)
    other = pc.rl.PPO("Pendulum-v1", n_envs=2, n_steps=30, seed=3, vectorization="async")
    try:
        a, b = sync.collect(), other.collect()
    finally:
        other.envs.close()
    for name in a._fields:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_a_squashed_policy_acts_inside_the_box_and_is_rescaled_to_it():
    agent = pc.rl.PPO("Pendulum-v1", n_envs=2, n_steps=32, squash=True, log_std_init=1.0, seed=0)
    batch = agent.collect()
    assert batch.actions.abs().max() < 1  # tanh's range, stored unscaled
    np.testing.assert_allclose(agent.to_environment(np.array([[0.5], [-1.0]])), [[1.0], [-2.0]])
    assert np.all(np.abs(agent.predict(np.ones((4, 3), dtype=np.float32))) <= 2.0)
    agent.update(batch)  # finite losses through the change of variables
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())


def test_an_early_stop_on_the_kl_ends_the_epochs():
    settings = {
        "n_envs": 2,
        "n_steps": 64,
        "batch_size": 32,
        "n_epochs": 8,
        "learning_rate": 1e-2,
        "seed": 0,
    }
    stopped = pc.rl.PPO("Pendulum-v1", target_kl=1e-6, **settings)
    assert stopped.update(stopped.collect())["epochs"] == 1
    free = pc.rl.PPO("Pendulum-v1", **settings)
    figures = free.update(free.collect())
    assert figures["epochs"] == 8 and figures["approx_kl"] > 1.5e-6


@pytest.mark.parametrize("algorithm", ["A2C", "PPO", "TRPO"])
def test_bad_input_is_named_before_training(algorithm):
    make = getattr(pc.rl, algorithm)
    with pytest.raises(TypeError, match="Box"):
        make("CartPole-v1")
    with pytest.raises(TypeError, match=r"gymnasium\.Env"):
        make(42)
    with pytest.raises(ValueError, match="vectorization"):
        make("Pendulum-v1", vectorization="threads")
    agent = make("Pendulum-v1", n_envs=1, n_steps=8)
    with pytest.raises(ValueError, match="log_dir"):
        agent.learn(100, checkpoint_every=10)
    with pytest.raises(ValueError, match="total_steps"):
        agent.learn(0)


def test_evaluate_uses_the_agents_environment_and_seeds():
    agent = pc.rl.PPO("probcalc/LQR-v0", n_envs=2, n_steps=16, seed=0)
    first = pc.rl.evaluate(agent, n_episodes=3, seed=5)
    again = pc.rl.evaluate(agent, "probcalc/LQR-v0", n_episodes=3, seed=5)
    assert first == again and math.isfinite(first[0])


class _MatrixEnv(gymnasium.Env):
    """Observations of shape (2, 3) and actions of shape (2, 2): Boxes that are not vectors."""

    def __init__(self):
        self.observation_space = gymnasium.spaces.Box(-5.0, 5.0, (2, 3), dtype=np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 2.0, (2, 2), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.normal(size=(2, 3)).astype(np.float32), {}

    def step(self, action):
        assert action.shape == (2, 2) and np.all(action >= -1.0) and np.all(action <= 2.0)
        obs = self.np_random.normal(size=(2, 3)).astype(np.float32)
        return obs, -float(np.sum(action**2)), False, False, {}


gymnasium.register("probcalc-test/Matrix-v0", entry_point=_MatrixEnv, max_episode_steps=20)


@pytest.mark.parametrize("squash", [False, True])
def test_boxes_of_any_shape_are_flattened_for_the_policy(squash):
    agent = pc.rl.PPO(
        "probcalc-test/Matrix-v0",
        n_envs=2,
        n_steps=16,
        batch_size=8,
        normalize_observations=True,
        squash=squash,
        seed=0,
    )
    batch = agent.collect()
    assert batch.obs.shape == (16, 2, 6) and batch.actions.shape == (16, 2, 4)
    agent.update(batch)
    assert agent.predict(np.zeros((3, 2, 3), dtype=np.float32)).shape == (3, 2, 2)


def test_loading_with_another_number_of_environments_keeps_the_reward_statistics(tmp_path):
    agent = pc.rl.PPO("Pendulum-v1", **SMALL_PPO).learn(256)
    agent.save(tmp_path / "agent.pt")
    wider = pc.rl.load(tmp_path / "agent.pt", n_envs=4)
    assert wider.n_envs == 4
    np.testing.assert_array_equal(
        wider.reward_normalizer.stats.var, agent.reward_normalizer.stats.var
    )
    wider.learn(256)  # the per-environment running returns start over: no shape clash
    assert wider.num_timesteps == 512


def test_a_resume_with_another_run_length_is_refused(tmp_path):
    agent = pc.rl.A2C("probcalc/LQR-v0", n_envs=2, n_steps=10, seed=0)
    agent.learn(100, log_dir=tmp_path, checkpoint_every=40)
    with pytest.raises(ValueError, match="100 steps"):
        pc.rl.A2C("probcalc/LQR-v0", n_envs=2, n_steps=10, seed=0).learn(
            200, log_dir=tmp_path, resume_from=tmp_path / "checkpoint.pt"
        )
