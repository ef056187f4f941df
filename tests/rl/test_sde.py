"""Generalized state-dependent exploration (gSDE): the state-dependent variance, the
log-probabilities and entropies against torch.distributions built by hand, the held noise
φ(s) W against the matrices, the distribution of a fresh draw against its closed form (in
standard errors), the detached features of the on-policy policy and the trained ones of
SAC's, the Fisher products against the Hessian of the KL, the resampling schedule in
rollouts and rounds, bad settings, and bit-exact resume and save/load with gSDE."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, TanhTransform, TransformedDistribution

import probcalc as pc
from probcalc.rl.rollout import collect_rollout


def _features(policy, obs):
    """φ(s) by hand: the MLP's layers but the last, applied in turn."""
    layers = list(policy.mean)
    for layer in layers[:-1]:
        obs = layer(obs)
    return obs


def _policy(cls=pc.rl.StateDependentGaussianPolicy, hidden=(5, 4), seed=0):
    torch.manual_seed(seed)
    policy = cls(3, 2, hidden=hidden, log_std_init=-0.5).double()
    with torch.no_grad():
        policy.log_std.copy_(torch.randn(policy.log_std.shape, dtype=torch.float64) * 0.5)
    return policy


def _obs(n=7, seed=1):
    return torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hidden", [(5, 4), ()], ids=["mlp", "linear"])
def test_the_action_variance_is_the_sum_of_squared_features_times_the_variances(hidden):
    """Var(a_k | s) = Σ_j φ_j(s)² σ_jk² + 1e-6, written as a double loop in numpy, and the
    log-probability and entropy are those of torch's Normal with that variance."""
    policy = _policy(hidden=hidden)
    obs = _obs()
    actions = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        phi = _features(policy, obs).numpy()
        sigma = policy.log_std.exp().numpy()
        variance = np.zeros((7, 2))
        for j in range(phi.shape[1]):
            for k in range(2):
                variance[:, k] += phi[:, j] ** 2 * sigma[j, k] ** 2
        variance += 1e-6
        mean, log_std = policy(obs)
        reference = Independent(Normal(policy.mean(obs), torch.tensor(np.sqrt(variance))), 1)
        log_prob, entropy = policy.log_prob_and_entropy(obs, actions)
    np.testing.assert_allclose(mean.numpy(), reference.mean.numpy(), rtol=1e-13)
    np.testing.assert_allclose(np.exp(2 * log_std.numpy()), variance, rtol=1e-12)
    np.testing.assert_allclose(log_prob.numpy(), reference.log_prob(actions).numpy(), rtol=1e-12)
    np.testing.assert_allclose(entropy.numpy(), reference.entropy().numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        policy.log_prob(obs, actions).detach().numpy(), log_prob.numpy(), rtol=1e-13
    )
    assert policy.log_std.shape == (phi.shape[1], 2)
    assert policy.distribution(obs).log_prob(actions).shape == (7,)


def test_the_squashed_policy_has_the_tanh_change_of_variables():
    """log π(tanh u) = log N(u) - Σ log(1 - tanh(u)²), against torch's
    TransformedDistribution with a TanhTransform."""
    policy = _policy(cls=pc.rl.SquashedStateDependentPolicy)
    obs = _obs()
    u = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mean, log_std = policy(obs)
        reference = TransformedDistribution(
            Independent(Normal(mean, log_std.exp()), 1), [TanhTransform()]
        )
        actions = torch.tanh(u)
        np.testing.assert_allclose(
            policy.log_prob(obs, actions).numpy(),
            reference.log_prob(actions).numpy(),
            rtol=1e-9,
        )
        policy.reset_noise(7, torch.Generator().manual_seed(0))
        drawn = policy.sample(obs)
    assert drawn.abs().max() < 1


def test_held_matrices_give_the_noise_phi_w_until_the_next_reset():
    """After reset_noise(n), sample(s) - μ(s) = φ(s) W_i for row i, the same W_i at every
    call (any state) until reset_noise draws new ones; deterministic gives μ(s)."""
    policy = _policy()
    policy.reset_noise(7, torch.Generator().manual_seed(5))
    matrices = policy.exploration_matrices.clone()
    assert matrices.shape == (7, 4, 2)
    with torch.no_grad():
        for seed in (1, 2):
            obs = _obs(seed=seed)
            noise = policy.sample(obs) - policy.mean(obs)
            expected = np.einsum("ij,ijk->ik", _features(policy, obs).numpy(), matrices.numpy())
            np.testing.assert_allclose(noise.numpy(), expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(
            policy.sample(obs, deterministic=True).numpy(), policy.mean(obs).numpy()
        )
        policy.reset_noise(7, torch.Generator().manual_seed(6))
        assert not torch.equal(policy.exploration_matrices, matrices)


@pytest.mark.parametrize("held", [True, False], ids=["held", "fresh"])
def test_a_fresh_matrix_per_draw_gives_the_closed_form_mean_and_variance(held):
    """Over 40,000 draws at one state, with a fresh matrix per row (held: reset_noise(n);
    fresh: a batch the held matrices do not fit), the sample mean and variance of each
    action match μ(s) and Σ_j φ_j² σ_j² within 5 standard errors."""
    policy = _policy()
    n = 40_000
    obs = _obs(1).expand(n, 3)
    generator = torch.Generator().manual_seed(7)
    if held:
        policy.reset_noise(n, generator)
    else:
        policy.reset_noise(3, generator)  # held matrices of another count are not used
    with torch.no_grad():
        actions = policy.sample(obs, generator=generator).numpy()
        mean = policy.mean(obs[:1]).numpy()[0]
        variance = (_features(policy, obs[:1]) ** 2 @ policy.log_std.exp() ** 2).numpy()[0]
    standard_error = np.sqrt(variance / n)
    assert np.all(np.abs(actions.mean(0) - mean) < 5 * standard_error)
    # the sample variance of a Gaussian has standard error σ² sqrt(2 / (n - 1))
    assert np.all(np.abs(actions.var(0, ddof=1) - variance) < 5 * variance * math.sqrt(2 / n))


def test_the_on_policy_features_are_read_detached():
    """The log standard deviation depends on the hidden layers' output but does not train
    them (Stable-Baselines3's learn_features=False); the mean does."""
    policy = _policy()
    mean, log_std = policy(_obs())
    first = policy.mean[0].weight
    (from_std,) = torch.autograd.grad(log_std.sum(), [first], allow_unused=True)
    (from_mean,) = torch.autograd.grad(mean.sum(), [first])
    assert from_std is None and from_mean.abs().sum() > 0
    (to_sigma,) = torch.autograd.grad(policy(_obs())[1].sum(), [policy.log_std])
    assert to_sigma.abs().sum() > 0


def test_sacs_gsde_actor_trains_its_features_and_clips_its_mean():
    """SAC's actor with use_sde: σ(s)² = Σ_j φ_j² σ_j² + 1e-6 with φ the trunk's output, the
    gradient reaching the trunk; μ clipped to [-2, 2]; its distribution's log-probability is
    torch's Normal pushed through tanh."""
    torch.manual_seed(0)
    actor = pc.rl.TanhGaussianActor(3, 2, hidden=(8,), use_sde=True, log_std_init=-1.0).double()
    with torch.no_grad():
        actor.mean.weight.mul_(50)  # some means beyond the clip
    obs = _obs(50)
    mean, log_std = actor.parameters_of(obs)
    phi = actor.trunk(obs)
    variance = (phi**2) @ torch.exp(2 * actor.log_std) + 1e-6
    np.testing.assert_allclose(
        (2 * log_std).exp().detach().numpy(), variance.detach().numpy(), rtol=1e-12
    )
    unclipped = actor.mean(phi)
    assert unclipped.abs().max() > 2
    np.testing.assert_array_equal(mean.detach().numpy(), unclipped.clamp(-2, 2).detach().numpy())
    (grad,) = torch.autograd.grad(log_std.sum(), [actor.trunk[0].weight])
    assert grad.abs().sum() > 0
    distribution = actor.distribution(obs)
    u = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    reference = TransformedDistribution(
        Independent(Normal(mean, log_std.exp()), 1), [TanhTransform()]
    )
    actions = torch.tanh(u)
    np.testing.assert_allclose(
        distribution.log_prob(actions).detach().numpy(),
        reference.log_prob(actions).detach().numpy(),
        rtol=1e-9,
    )
    actor.reset_noise(50, torch.Generator().manual_seed(2))
    with torch.no_grad():
        noise = torch.atanh(actor.sample(obs)) - mean
        expected = torch.bmm(phi.unsqueeze(1), actor.exploration_matrices).squeeze(1)
    np.testing.assert_allclose(noise.numpy(), expected.numpy(), rtol=1e-7, atol=1e-9)


def test_an_actor_without_gsde_holds_no_matrices():
    actor = pc.rl.TanhGaussianActor(3, 2, hidden=(8,))
    with pytest.raises(RuntimeError, match="without use_sde"):
        actor.reset_noise(4)


def test_the_fisher_products_of_a_gsde_policy_equal_the_hessian_of_the_mean_kl():
    """Jᵀ M J v of the natural gradient with the state-dependent log std equals the Hessian of
    mean_s KL(π_current ‖ π_θ) from torch.distributions (torch.func.hessian): 1e-8."""
    from torch.distributions import kl_divergence

    policy = _policy()
    obs = _obs(20, seed=4)
    module = pc.functional_module(policy)
    with torch.no_grad():
        mean_old, log_std_old = policy(obs)
    current = Normal(mean_old, log_std_old.exp())

    def mean_kl(theta):
        mean, log_std = module(theta, obs)
        return kl_divergence(current, Normal(mean, log_std.exp())).sum(-1).mean()

    hessian = torch.func.hessian(mean_kl)(module.params).detach()
    operator = pc.rl.fisher_operator(policy, obs)
    fisher = torch.stack([operator(e) for e in torch.eye(module.dim, dtype=torch.float64)], 1)
    scale = float(hessian.abs().max())
    np.testing.assert_allclose(fisher.numpy(), hessian.numpy(), rtol=0, atol=1e-8 * scale)


@pytest.mark.parametrize("frequency", [-1, 3])
def test_a_rollout_holds_each_matrix_for_sde_sample_freq_steps(frequency):
    """A linear policy (φ(s) = s) on the 2-d LQR: within a block of sde_sample_freq steps
    (the whole rollout for -1) the noise a_t - μ(s_t) of each environment is s_t W for one
    W, found by least squares to 1e-5; consecutive blocks need different W."""
    agent = pc.rl.PPO(
        "probcalc/LQR-v0",
        policy="linear",
        use_sde=True,
        sde_sample_freq=frequency,
        n_envs=2,
        n_steps=12,
        seed=3,
        dtype=torch.float64,
    )
    rollout = collect_rollout(agent, [])
    with torch.no_grad():
        noise = (rollout.actions - agent.policy.mean(rollout.obs)).numpy()
    obs = rollout.obs.numpy()
    block = 12 if frequency == -1 else frequency
    fits = []
    for env in range(2):
        for start in range(0, 12, block):
            s, e = obs[start : start + block, env], noise[start : start + block, env]
            w, *_ = np.linalg.lstsq(s, e, rcond=None)
            np.testing.assert_allclose(s @ w, e, atol=1e-5)
            fits.append(w)
    if frequency > 0:  # a matrix fitted across two blocks does not explain both
        s, e = obs[:6, 0], noise[:6, 0]
        w, *_ = np.linalg.lstsq(s, e, rcond=None)
        assert np.abs(s @ w - e).max() > 1e-3
        assert not np.allclose(fits[0], fits[1])


@pytest.mark.parametrize(("frequency", "expected"), [(-1, 1), (2, 3)])
def test_sac_draws_its_matrices_each_round_and_every_sde_sample_freq_steps(frequency, expected):
    """Per round of train_freq = 5 steps: one draw with -1, draws at steps 0, 2 and 4 with 2."""
    agent = pc.rl.SAC(
        "Pendulum-v1",
        use_sde=True,
        sde_sample_freq=frequency,
        train_freq=5,
        learning_starts=10,
        hidden=(8,),
        batch_size=4,
        seed=0,
    )
    draws = []
    reset = agent.policy.reset_noise
    agent.policy.reset_noise = lambda *args: draws.append(agent.num_timesteps) or reset(*args)
    agent.learn(20)
    assert len(draws) == 4 * expected
    assert draws[:expected] == list(range(0, 5, frequency if frequency > 0 else 5))


@pytest.mark.parametrize("field", ["sde_sample_freq"])
@pytest.mark.parametrize("algorithm", [pc.rl.PPO, pc.rl.A2C, pc.rl.TRPO, pc.rl.SAC])
def test_bad_gsde_settings_are_named_before_any_work(algorithm, field):
    for value in (0, -2):
        with pytest.raises(ValueError, match=field):
            algorithm.Config(use_sde=True, **{field: value})
    with pytest.raises(TypeError, match=field):
        algorithm.Config(use_sde=True, **{field: 1.5})
    with pytest.raises(TypeError, match="use_sde"):
        algorithm.Config(use_sde="yes")
    if algorithm is pc.rl.SAC:
        with pytest.raises(ValueError, match="log_std_init"):
            algorithm.Config(use_sde=True, log_std_init=math.inf)


def _parameters(agent):
    return [p.detach().clone() for net in agent.networks.values() for p in net.parameters()]


@pytest.mark.parametrize(
    ("algorithm", "settings"),
    [
        (pc.rl.PPO, {"n_envs": 2, "n_steps": 64, "batch_size": 32, "n_epochs": 2}),
        (pc.rl.SAC, {"train_freq": 4, "learning_starts": 40, "hidden": (16,), "batch_size": 8}),
    ],
    ids=["PPO", "SAC"],
)
def test_a_gsde_run_resumes_bit_for_bit_and_saves_its_policy(tmp_path, algorithm, settings):
    """Stopped a round or more past its checkpoint at step 256 (that work lost) and resumed,
    a gSDE run ends where the uninterrupted run ends, bit for bit, after updates of its own;
    a saved agent predicts as the original."""
    settings = {**settings, "use_sde": True, "sde_sample_freq": 3, "seed": 2}
    whole = algorithm("Pendulum-v1", **settings).learn(512)
    stopped = algorithm("Pendulum-v1", **settings).learn(
        512,
        log_dir=tmp_path,
        checkpoint_every=256,
        callback=lambda agent, row: agent.num_timesteps < 384,
    )
    assert stopped.num_timesteps == 384
    resumed = algorithm("Pendulum-v1", **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed.learn(512, log_dir=tmp_path, resume_from=tmp_path / "checkpoint.pt")
    assert resumed.num_timesteps == 512
    assert not all(  # the resumed run trained: its parameters left the checkpoint's
        torch.equal(a, b) for a, b in zip(_parameters(stopped), _parameters(resumed), strict=True)
    )
    assert all(
        torch.equal(a, b) for a, b in zip(_parameters(whole), _parameters(resumed), strict=True)
    )
    whole.save(tmp_path / "agent.pt")
    loaded = pc.rl.load(tmp_path / "agent.pt")
    assert loaded.config.use_sde and loaded.config.sde_sample_freq == 3
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs), whole.predict(obs))
