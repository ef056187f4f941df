"""SAC, TD3 and DDPG: the replay buffer against a reference list, the critics' targets
against Bellman targets computed by hand in numpy, the transitions that truncation,
termination and autoreset leave, bad input, files and bit-exact resume."""

import csv
import math
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from scipy import stats

import probcalc as pc
from probcalc.core.errors import CheckpointError, NonFiniteError
from probcalc.core.random import seeded
from probcalc.rl.replay import ReplayBuffer, Transitions

OFF_POLICY = [pc.rl.SAC, pc.rl.TD3, pc.rl.DDPG]
IDS = [cls.__name__ for cls in OFF_POLICY]
SMALL = {
    "hidden": (16, 16),
    "batch_size": 16,
    "buffer_size": 500,
    "learning_starts": 50,
    "n_envs": 2,
}


def _parameters(agent):
    return [
        p.detach().clone() for net in agent.networks.values() for p in net.state_dict().values()
    ]


def _same_parameters(first, second):
    pairs = list(zip(_parameters(first), _parameters(second), strict=True))
    return all(torch.equal(a, b) for a, b in pairs)


# ---------------------------------------------------------------------------- replay buffer
def _transitions(start, count, obs_dim=3, act_dim=2):
    """count transitions numbered start, start + 1, ... (every field carries the number)."""
    ids = torch.arange(start, start + count, dtype=torch.float64)
    return Transitions(
        obs=ids[:, None].expand(count, obs_dim).clone(),
        actions=-ids[:, None].expand(count, act_dim).clone(),
        rewards=ids * 10,
        next_obs=ids[:, None].expand(count, obs_dim) + 0.5,
        terminated=(ids.long() % 3) == 0,
    )


@pytest.mark.parametrize("chunks", [[3, 4, 5, 1, 9], [7, 7, 7], [12], [25, 2], [0, 1, 0]])
def test_the_buffer_holds_the_newest_transitions_as_a_list_would(chunks):
    """After any sequence of additions (chunks that wrap, fill exactly, overflow at once)
    the buffer holds the newest ``capacity`` transitions, each with its own fields."""
    buffer = ReplayBuffer(10, 3, 2, torch.float64)
    reference: list[int] = []
    start = 0
    for count in chunks:
        buffer.add(_transitions(start, count))
        reference.extend(range(start, start + count))
        start += count
    kept = reference[-10:]
    assert len(buffer) == len(kept)
    held = sorted(buffer.obs[: len(buffer), 0].long().tolist())
    assert held == sorted(kept)
    for row in range(len(buffer)):
        n = buffer.obs[row, 0]
        assert torch.all(buffer.actions[row] == -n) and buffer.rewards[row] == 10 * n
        assert torch.all(buffer.next_obs[row] == n + 0.5)
        assert bool(buffer.terminated[row]) == (int(n) % 3 == 0)


def test_the_buffer_samples_uniformly_from_its_generator():
    """Draws of 30 held transitions: counts pass a chi-square test of uniformity
    (false-failure probability 1e-3), and the same generator state gives the same batch."""
    buffer = ReplayBuffer(50, 3, 2, torch.float32)
    buffer.add(_transitions(0, 30))
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([buffer.sample(256, generator).obs[:, 0] for _ in range(100)])
    counts = np.bincount(draws.long().numpy(), minlength=30)
    assert counts.shape == (30,)
    assert stats.chisquare(counts).pvalue > 1e-3
    first = buffer.sample(8, torch.Generator().manual_seed(5))
    again = buffer.sample(8, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(5, 1, 1, torch.float32).sample(1, generator)


def test_a_million_halfcheetah_transitions_take_the_stated_memory():
    """(2 x 17 + 6 + 1) float32 numbers and a bool a transition: 165 MB, preallocated."""
    buffer = ReplayBuffer(1_000_000, 17, 6, torch.float32)
    assert buffer.nbytes == 1_000_000 * ((2 * 17 + 6 + 1) * 4 + 1)
    storage = sum(
        t.untyped_storage().nbytes()
        for t in (buffer.obs, buffer.next_obs, buffer.actions, buffer.rewards, buffer.terminated)
    )
    assert storage == buffer.nbytes


def test_the_buffer_state_round_trips_and_misfits_are_named():
    buffer = ReplayBuffer(10, 3, 2, torch.float64)
    buffer.add(_transitions(0, 13))
    copy = ReplayBuffer(10, 3, 2, torch.float64)
    assert copy.misfit(buffer.state_dict()) is None
    copy.load_state_dict(buffer.state_dict())
    assert (copy.position, copy.size) == (buffer.position, buffer.size)
    for name in Transitions._fields:
        assert torch.equal(getattr(copy, name), getattr(buffer, name))
    assert "buffer_size" in ReplayBuffer(20, 3, 2, torch.float64).misfit(buffer.state_dict())
    assert "obs" in ReplayBuffer(10, 4, 2, torch.float64).misfit(buffer.state_dict())
    assert "malformed" in copy.misfit({"size": 3})


# ---------------------------------------------------------------------------- Bellman targets
def _mlp_numpy(x, layers, last_activation=None):
    """A stack of (weight (out, in), bias (out,)) layers with ReLU between them."""
    for i, (weight, bias) in enumerate(layers):
        x = x @ weight.T + bias
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return last_activation(x) if last_activation else x


def _critics_numpy(critic, obs, actions):
    """Each critic's Q(s, a) from the stacked parameters, (n_critics, batch)."""
    x = np.concatenate([obs, actions], axis=1)
    out = []
    for i in range(critic.n_critics):
        layers = [(w[i].double().numpy(), b[i].double().numpy()) for w, b in critic.layers()]
        out.append(_mlp_numpy(x, [(w.copy(), b.copy()) for w, b in layers])[:, 0])
    return np.stack(out)


def _linear_layers(sequential):
    return [
        (m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
        for m in sequential
        if isinstance(m, torch.nn.Linear)
    ]


def _trained(cls, **settings):
    agent = cls("Pendulum-v1", seed=3, dtype=torch.float64, **{**SMALL, **settings})
    return agent.learn(120)  # targets moved away from the critics by 70 updates


def test_sac_targets_equal_the_soft_bellman_targets_computed_by_hand():
    """y = r + γ (1 - d) (min_i Q̄_i(s', a') - α log π(a' | s')), a' = tanh(μ + σ ε), with
    the Gaussian density and the tanh Jacobian written out in numpy; terminal rows get r."""
    agent = _trained(pc.rl.SAC, gamma=0.9)
    batch = agent.replay_buffer.sample(64, torch.Generator().manual_seed(1))
    batch = batch._replace(terminated=torch.arange(64) % 4 == 0)
    alpha = 0.37
    state = agent.generator.get_state()
    targets = agent.bellman_targets(batch, alpha).numpy()

    generator = torch.Generator()
    generator.set_state(state)
    with seeded(generator):  # the draw the policy's rsample makes
        eps = torch.distributions.Normal(
            torch.zeros(64, 1, dtype=torch.float64), torch.ones(64, 1, dtype=torch.float64)
        ).rsample()
    eps = eps.numpy()
    next_obs = batch.next_obs.numpy()
    features = _mlp_numpy(next_obs, _linear_layers(agent.policy.trunk))
    features = np.maximum(features, 0.0)  # the trunk ends in its activation
    mean = _mlp_numpy(features, _linear_layers([agent.policy.mean]))
    log_std = np.clip(_mlp_numpy(features, _linear_layers([agent.policy.log_std])), -20, 2)
    u = mean + np.exp(log_std) * eps
    action = np.tanh(u)
    log_prob = (
        -0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi) - np.log(1 - np.tanh(u) ** 2)
    ).sum(axis=1)
    next_q = _critics_numpy(agent.critic_target, next_obs, action).min(axis=0)
    expected = batch.rewards.numpy() + 0.9 * (~batch.terminated.numpy()) * (
        next_q - alpha * log_prob
    )
    np.testing.assert_allclose(targets, expected, rtol=1e-9, atol=1e-9)
    assert np.all(targets[::4] == batch.rewards.numpy()[::4])


@pytest.mark.parametrize("cls", [pc.rl.TD3, pc.rl.DDPG], ids=["TD3", "DDPG"])
def test_td3_and_ddpg_targets_equal_the_bellman_targets_computed_by_hand(cls):
    """y = r + γ (1 - d) min_i Q̄_i(s', clip(μ̄(s') + clip(0.2 ε, ±0.5), ±1)) for TD3, and
    without the noise and with its one critic for DDPG."""
    agent = _trained(cls, gamma=0.95)
    batch = agent.replay_buffer.sample(64, torch.Generator().manual_seed(1))
    batch = batch._replace(terminated=torch.arange(64) % 5 == 0)
    state = agent.generator.get_state()
    targets = agent.bellman_targets(batch).numpy()

    next_obs = batch.next_obs.numpy()
    action = _mlp_numpy(next_obs, _linear_layers(agent.policy_target.mean), np.tanh)
    if cls is pc.rl.TD3:
        generator = torch.Generator()
        generator.set_state(state)
        eps = torch.randn(action.shape, generator=generator, dtype=torch.float64).numpy()
        action = action + np.clip(0.2 * eps, -0.5, 0.5)
    action = np.clip(action, -1, 1)
    q = _critics_numpy(agent.critic_target, next_obs, action)
    assert q.shape[0] == (2 if cls is pc.rl.TD3 else 1)
    expected = batch.rewards.numpy() + 0.95 * (~batch.terminated.numpy()) * q.min(axis=0)
    np.testing.assert_allclose(targets, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls", OFF_POLICY, ids=IDS)
def test_the_target_networks_follow_by_polyak_averaging(cls):
    """After one update the target critics are (1 - τ) old target + τ new online."""
    agent = _trained(cls, tau=0.3, train_freq=1, n_envs=1, gradient_steps=1)
    if cls is not pc.rl.SAC:
        agent.n_updates = agent.config.policy_delay - 1  # the next update moves the targets
    old_target = [t.clone() for t in agent.critic_target.parameters()]
    batch = agent.replay_buffer.sample(16, agent.generator)
    agent.gradient_step(batch)
    for before, target, online in zip(
        old_target, agent.critic_target.parameters(), agent.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(target, 0.7 * before + 0.3 * online, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- transitions
@pytest.mark.parametrize("cls", OFF_POLICY, ids=IDS)
def test_truncation_bootstraps_termination_does_not_and_autoresets_store_nothing(cls):
    """Pendulum cut at 5 steps: 6 steps an episode (5 transitions and an autoreset step),
    none terminal, each next observation the following observation except at the cut,
    where it is the true final one. The bandit terminates every episode: every stored
    transition is terminal."""
    env = gymnasium.make("Pendulum-v1", max_episode_steps=5)
    agent = cls(env, seed=0, n_envs=1, learning_starts=1_000, buffer_size=100, batch_size=16)
    agent.learn(18)
    assert len(agent.replay_buffer) == 15  # 18 steps: 3 episodes, 3 autoreset steps
    obs, next_obs = agent.replay_buffer.obs[:15].numpy(), agent.replay_buffer.next_obs[:15].numpy()
    assert not agent.replay_buffer.terminated[:15].any()
    for i in range(14):
        if i % 5 != 4:
            np.testing.assert_array_equal(next_obs[i], obs[i + 1])
        else:  # the cut: the final observation, not the next episode's first
            assert not np.array_equal(next_obs[i], obs[i + 1])
            cos, sin = next_obs[i][:2]
            assert abs(cos**2 + sin**2 - 1) < 1e-5  # a real pendulum state
    assert np.all(np.abs(agent.replay_buffer.actions[:15].numpy()) <= 1)  # the policy's space

    bandit = cls("probcalc/ContinuousBandit-v0", seed=0, n_envs=2, learning_starts=1_000)
    bandit.learn(20)
    assert len(bandit.replay_buffer) == 10 and bool(bandit.replay_buffer.terminated[:10].all())


@pytest.mark.parametrize("cls", OFF_POLICY, ids=IDS)
def test_actions_are_stored_in_minus_one_one_and_rescaled_to_the_box(cls):
    """A policy action a in [-1, 1] reaches a Box [0, 4] as 2 (a + 1)."""
    low, high = np.float32(0.0), np.float32(4.0)
    env = gymnasium.wrappers.RescaleAction(gymnasium.make("Pendulum-v1"), low, high)
    agent = cls(env, seed=1, n_envs=1, learning_starts=1_000)
    stored = np.array([[-1.0], [0.0], [0.5], [1.0]], dtype=np.float32)
    np.testing.assert_allclose(agent.to_environment(stored)[:, 0], [0.0, 2.0, 3.0, 4.0])
    agent.learn(30)
    assert np.all(np.abs(agent.replay_buffer.actions[:30].numpy()) <= 1)
    predicted = agent.predict(np.zeros(3, dtype=np.float32))
    assert predicted.shape == (1,) and 0 <= predicted[0] <= 4


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", OFF_POLICY, ids=IDS)
def test_bad_environments_and_settings_are_named_before_training(cls):
    with pytest.raises(TypeError, match="Discrete"):
        cls("CartPole-v1")
    unbounded = gymnasium.make("probcalc/LQR-v0")
    unbounded.action_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    with pytest.raises(ValueError, match="finite bounds"):
        cls(unbounded)
    with pytest.raises(TypeError, match="did you mean 'buffer_size'"):
        cls("Pendulum-v1", buffer=10)
    with pytest.raises(ValueError, match="batch_size 256 is larger than buffer_size 100"):
        cls("Pendulum-v1", buffer_size=100)


def test_a_process_group_is_refused_with_the_supported_way(monkeypatch):
    """Off-policy agents train in one process: a group is refused, naming group=False."""
    with pytest.raises(ValueError, match="group=False"):
        pc.rl.SAC("Pendulum-v1", group=object())


class _HugeRewards(gymnasium.Wrapper):
    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward * 1e30, terminated, truncated, info


@pytest.mark.parametrize("cls", OFF_POLICY, ids=IDS)
def test_a_loss_that_overflows_raises_with_the_gradient_step(cls):
    agent = cls(_HugeRewards(gymnasium.make("Pendulum-v1")), seed=0, **SMALL)
    with pytest.raises(NonFiniteError, match=r"critic_loss is inf at gradient step \d+"):
        agent.learn(200)


# ---------------------------------------------------------------------------- files
@pytest.mark.parametrize("cls", OFF_POLICY, ids=IDS)
def test_save_load_predict_round_trip(tmp_path, cls):
    agent = cls("Pendulum-v1", seed=2, **SMALL).learn(100)
    agent.save(tmp_path / "agent.pt")
    loaded = pc.rl.load(tmp_path / "agent.pt")
    assert type(loaded) is cls and loaded.config == agent.config
    assert loaded.num_timesteps == 100 and loaded.n_updates == agent.n_updates
    assert _same_parameters(agent, loaded)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    assert len(loaded.replay_buffer) == 0  # save() leaves the buffer out; checkpoints hold it
    other = pc.rl.TD3 if cls is pc.rl.SAC else pc.rl.SAC
    with pytest.raises(CheckpointError, match=f"not of {other.__name__}"):
        other.load(tmp_path / "agent.pt")
    with pytest.raises(CheckpointError, match="not of PPO"):
        pc.rl.PPO.load(tmp_path / "agent.pt")


@pytest.mark.parametrize(
    ("cls", "settings"),
    [
        (pc.rl.SAC, {}),
        (pc.rl.TD3, {"noise_type": "ornstein-uhlenbeck", "normalize_observations": True}),
        (pc.rl.DDPG, {"gradient_steps": -1, "train_freq": 3}),
    ],
    ids=IDS,
)
def test_a_resumed_run_ends_bit_for_bit_where_the_uninterrupted_run_ends(tmp_path, cls, settings):
    """Stopped past its checkpoint (the work after it lost, as in a crash) and resumed: the
    networks, targets, optimizers' effect, buffer, noise and environments make the same
    run, bit for bit. Dropping the buffer from the file changes the result."""
    settings = {**SMALL, **settings, "seed": 4}
    total, every = 360, 180
    whole = cls("Pendulum-v1", **settings).learn(total)
    cls("Pendulum-v1", **settings).learn(
        total,
        log_dir=tmp_path,
        checkpoint_every=every,
        callback=lambda agent, row: agent.num_timesteps < every + 60,
    )
    resumed = cls("Pendulum-v1", **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed.learn(total, log_dir=tmp_path, resume_from=tmp_path / "checkpoint.pt")
    assert resumed.num_timesteps == whole.num_timesteps == total
    assert resumed.n_updates == whole.n_updates > 0
    assert _same_parameters(whole, resumed)
    held = len(whole.replay_buffer)
    assert torch.equal(resumed.replay_buffer.obs[:held], whole.replay_buffer.obs[:held])
    for first, second in zip(whole.optimizers(), resumed.optimizers(), strict=True):
        for a, b in zip(first.state.values(), second.state.values(), strict=True):
            assert torch.equal(a["exp_avg"], b["exp_avg"])

    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    part = state["ranks"][0]["extra"]["buffer"]
    for name in Transitions._fields:
        part[name] = part[name][:0]
    part["size"], part["position"] = 0, 0
    torch.save(state, tmp_path / "empty_buffer.pt")
    emptied = cls("Pendulum-v1", **settings)
    emptied.learn(total, resume_from=tmp_path / "empty_buffer.pt")
    assert not _same_parameters(whole, emptied)


def test_a_checkpoint_whose_buffer_does_not_fit_is_named(tmp_path):
    pc.rl.SAC("Pendulum-v1", **SMALL, seed=0).learn(120, log_dir=tmp_path, checkpoint_every=100)
    other = pc.rl.SAC("Pendulum-v1", **{**SMALL, "buffer_size": 400}, seed=0)
    with pytest.raises(CheckpointError, match="buffer_size"):
        other.learn(120, resume_from=tmp_path / "checkpoint.pt")
    assert other.num_timesteps == 0 and len(other.replay_buffer) == 0


@pytest.mark.parametrize("cls", [pc.rl.SAC, pc.rl.TD3], ids=["SAC", "TD3"])
def test_progress_rows_every_thousand_steps_hold_the_losses_from_the_first(tmp_path, cls):
    """A row per 1,000 steps (and one at the end) with every loss column, NaN before the
    first update (learning starts at 1,500 here); the episodes column counts the episodes
    of each row's span, which episodes.csv lists one by one."""
    agent = cls("Pendulum-v1", seed=0, **{**SMALL, "learning_starts": 1_500, "n_envs": 1})
    agent.learn(2_500, log_dir=tmp_path)
    with (tmp_path / "progress.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [1_000, 2_000, 2_500]
    losses = ["critic_loss", "actor_loss"]
    assert all(math.isnan(float(rows[0][name])) for name in losses)
    assert all(math.isfinite(float(row[name])) for row in rows[1:] for name in losses)
    with (tmp_path / "episodes.csv").open() as handle:
        episodes = list(csv.DictReader(handle))
    assert len(episodes) == 12  # 2,500 steps: 12 whole episodes of 200 steps (and resets)
    assert sum(int(row["episodes"]) for row in rows) == len(episodes)
