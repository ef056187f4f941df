"""Bad input to the agents is named before anything is built: unknown settings, values of
the wrong type or out of range, observations of the wrong shape, learn() arguments."""

import dataclasses
import math

import gymnasium
import numpy as np
import pytest
import torch

import probcalc as pc
from probcalc.rl import agent as agent_module

ALGORITHMS = sorted(pc.rl.ALGORITHMS.items())
IDS = [name for name, _ in ALGORITHMS]
# the off-policy algorithms' settings that stand where the on-policy ones have another
OFF_POLICY_ANALOGUE = {"n_steps": "train_freq", "squash": "normalize_observations"}


def _setting(algorithm, setting):
    """``setting``, or its off-policy analogue when ``algorithm`` has no such setting."""
    return setting if setting in pc.rl.settings(algorithm) else OFF_POLICY_ANALOGUE[setting]


@pytest.fixture
def no_environment(monkeypatch):
    """Any attempt to build environments fails the test: the checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("environments were built before the settings were checked")

    monkeypatch.setattr(agent_module, "make_vector_env", refuse)


@pytest.mark.parametrize(("name", "algorithm"), ALGORITHMS, ids=IDS)
def test_settings_are_the_config_fields_with_the_class_defaults(name, algorithm):
    """settings() against what an agent built with no keyword records in its config: the
    same names and the same values (the seed aside: drawn afresh), so a class's defaults
    (PPO's 256 steps, A2C's 5) are honoured."""
    found = pc.rl.settings(algorithm)
    agent = algorithm("Pendulum-v1")
    fields = {
        field.name: getattr(agent.config, field.name) for field in dataclasses.fields(agent.config)
    }
    assert set(found) == set(fields)
    for setting, (_, default) in found.items():
        if setting != "seed":
            assert fields[setting] == default, setting
    assert isinstance(fields["seed"], int) and found["seed"][1] is None
    if isinstance(agent, pc.rl.OnPolicyAgent):
        assert (agent.n_envs, agent.n_steps) == (found["n_envs"][1], found["n_steps"][1])
        expected_steps = {"reinforce": 16, "a2c": 5, "ppo": 256, "npg": 256, "trpo": 256}[name]
        assert agent.n_steps == expected_steps
        return
    # Stable-Baselines3 2.x's documented defaults of SAC, TD3 and DDPG
    shared = {
        "buffer_size": 1_000_000,
        "learning_starts": 100,
        "batch_size": 256,
        "tau": 0.005,
        "gamma": 0.99,
        "train_freq": 1,
        "gradient_steps": 1,
        "n_envs": 1,
    }
    own = {
        "sac": {"learning_rate": 3e-4, "ent_coef": "auto", "target_update_interval": 1},
        "td3": {"learning_rate": 1e-3, "policy_delay": 2, "target_policy_noise": 0.2},
        "ddpg": {"learning_rate": 1e-3, "policy_delay": 1, "n_critics": 1},
    }[name]
    for setting, value in {**shared, **own}.items():
        assert fields[setting] == value, setting
    assert fields["hidden"] == ((256, 256) if name == "sac" else (400, 300))


@pytest.mark.parametrize(("name", "algorithm"), ALGORITHMS, ids=IDS)
def test_an_unknown_keyword_is_named_with_the_closest_and_the_valid_ones(
    name, algorithm, no_environment
):
    with pytest.raises(TypeError) as caught:
        algorithm("Pendulum-v1", lerning_rate=1e-3)
    message = str(caught.value)
    assert "'lerning_rate'" in message and "did you mean 'learning_rate'" in message
    assert all(setting in message for setting in pc.rl.settings(algorithm))
    with pytest.raises(TypeError, match="no setting 'zzz'") as caught:
        algorithm("Pendulum-v1", zzz=1)
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize(("name", "algorithm"), ALGORITHMS, ids=IDS)
@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("learning_rate", "fast"),  # a str for a float
        ("n_envs", 2.5),  # a float for an int
        ("n_steps", 16.0),
        ("n_envs", True),  # a bool is not an int
        ("hidden", "64"),  # a str for a tuple of ints
        ("hidden", (64, 6.5)),
        ("squash", 1),  # an int is not a bool
        ("seed", 1.5),
        ("env_kwargs", [("g", 9.8)]),
        ("gamma", None),
    ],
)
def test_a_value_of_the_wrong_type_is_named(name, algorithm, setting, value, no_environment):
    setting = _setting(algorithm, setting) if setting in OFF_POLICY_ANALOGUE else setting
    with pytest.raises(TypeError, match=setting) as caught:
        algorithm("Pendulum-v1", **{setting: value})
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(("name", "algorithm"), ALGORITHMS, ids=IDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_a_float_setting_must_be_finite(name, algorithm, value, no_environment):
    setting = "log_std_init" if "log_std_init" in pc.rl.settings(algorithm) else "tau"
    with pytest.raises(ValueError, match=f"{setting} must be finite"):
        algorithm("Pendulum-v1", **{setting: value})


@pytest.mark.parametrize(("name", "algorithm"), ALGORITHMS, ids=IDS)
def test_ints_pass_for_floats_and_lists_for_tuples(name, algorithm):
    agent = algorithm(
        "Pendulum-v1",
        learning_rate=1,
        gamma=np.float32(0.5),
        n_envs=np.int64(2),
        **{_setting(algorithm, "n_steps"): 64},
        hidden=[16, 8],
        seed=np.int32(3),
    )
    assert agent.config.hidden == (16, 8) and agent.n_envs == 2 and agent.config.gamma == 0.5
    assert type(agent.config.seed) is int and type(agent.config.gamma) is float
    heads = [1, 1] if name == "sac" else [1]  # SAC's mean and log-std heads
    assert [
        layer.out_features for layer in agent.policy.modules() if isinstance(layer, torch.nn.Linear)
    ] == [16, 8, *heads]


OUT_OF_RANGE = [
    ("n_envs", 0),
    ("n_steps", 0),
    ("learning_rate", 0.0),
    ("learning_rate", -1e-3),
    ("gamma", 1.5),
    ("gamma", -0.1),
    ("hidden", (64, 0)),
    ("policy", "cnn"),
    ("gae_lambda", 1.5),
    ("gae_lambda", -0.5),
    ("vf_coef", -1.0),
    ("max_grad_norm", 0.0),
    ("n_epochs", 0),
    ("batch_size", 1),
    ("clip_range", 0.0),
    ("clip_range_vf", -0.1),
    ("target_kl", 0.0),
    ("optimizer", "sgd"),
    ("max_kl", 0.0),
    ("cg_iterations", 0),
    ("cg_damping", -1.0),
    ("critic_batch_size", 1),
    ("backtrack_factor", 1.0),
    ("backtrack_steps", 0),
]
OFF_POLICY_OUT_OF_RANGE = [
    *[(setting, value) for setting, value in OUT_OF_RANGE[:8] if setting != "n_steps"],
    ("buffer_size", 0),
    ("batch_size", 0),
    ("learning_starts", -1),
    ("tau", 0.0),
    ("tau", 1.5),
    ("train_freq", 0),
    ("gradient_steps", 0),
    ("gradient_steps", -2),
    ("n_critics", 0),
    ("ent_coef", "automatic"),
    ("ent_coef", "auto_-1"),
    ("ent_coef", -0.1),
    ("target_entropy", "high"),
    ("target_update_interval", 0),
    ("policy_delay", 0),
    ("target_policy_noise", -0.1),
    ("target_noise_clip", -0.1),
    ("noise_type", "pink"),
    ("noise_std", -0.1),
]


@pytest.mark.parametrize(("name", "algorithm"), ALGORITHMS, ids=IDS)
def test_a_value_out_of_range_is_refused_before_environments_are_built(
    name, algorithm, no_environment
):
    tried = 0
    cases = OFF_POLICY_OUT_OF_RANGE if name in ("sac", "td3", "ddpg") else OUT_OF_RANGE
    for setting, value in cases:
        if setting not in pc.rl.settings(algorithm):
            continue
        tried += 1
        with pytest.raises(ValueError, match=setting):
            algorithm("Pendulum-v1", **{setting: value})
    assert tried >= 8  # the settings every algorithm has


def test_ppo_refuses_a_batch_larger_than_the_rollout(no_environment):
    with pytest.raises(ValueError, match=r"batch_size 64 .* 2 x 16 = 32") as caught:
        pc.rl.PPO("Pendulum-v1", n_envs=2, n_steps=16, batch_size=64)
    assert "n_envs" in str(caught.value) and "n_steps" in str(caught.value)
    # PPO's own defaults fill in what is not given: 8 environments
    with pytest.raises(ValueError, match=r"8 x 4 = 32"):
        pc.rl.PPO("Pendulum-v1", n_steps=4, batch_size=33)


def test_ppo_takes_a_batch_as_large_as_the_rollout_and_defaults_to_at_most_it():
    agent = pc.rl.PPO("Pendulum-v1", n_envs=2, n_steps=16, batch_size=32, n_epochs=1, seed=0)
    assert agent.update(agent.collect())["epochs"] == 1
    assert pc.rl.PPO("Pendulum-v1", n_envs=2, n_steps=16).config.minibatch_size == 32
    assert pc.rl.PPO("Pendulum-v1", n_envs=2, n_steps=40).config.minibatch_size == 64
    assert pc.rl.PPO("Pendulum-v1", n_envs=2, n_steps=40).config.batch_size is None


class _MatrixEnv(gymnasium.Env):
    """Observations of shape (2, 3) and actions of shape (2, 2): Boxes that are not vectors."""

    def __init__(self):
        self.observation_space = gymnasium.spaces.Box(-5.0, 5.0, (2, 3), dtype=np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 2.0, (2, 2), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.normal(size=(2, 3)).astype(np.float32), {}

    def step(self, action):
        obs = self.np_random.normal(size=(2, 3)).astype(np.float32)
        return obs, -float(np.sum(action**2)), False, False, {}


gymnasium.register("probcalc-test/BadInputMatrix-v0", entry_point=_MatrixEnv, max_episode_steps=20)


@pytest.mark.parametrize(
    ("env", "observation", "action", "wrong"),
    [
        ("Pendulum-v1", (3,), (1,), [(4,), (2,), (5, 4), (2, 3, 1), ()]),
        ("probcalc-test/BadInputMatrix-v0", (2, 3), (2, 2), [(6,), (4, 6), (3, 2), (4, 3, 2)]),
    ],
)
def test_predict_takes_one_observation_or_a_batch(env, observation, action, wrong):
    agent = pc.rl.PPO(env, n_envs=1, n_steps=8, batch_size=8, log_std_init=0.5, seed=0)
    batch = np.random.default_rng(0).uniform(-1, 1, size=(5, *observation)).astype(np.float32)
    actions = agent.predict(batch)
    assert actions.shape == (5, *action)
    for i in range(5):  # one observation: one action, the batch's row (up to rounding)
        single = agent.predict(batch[i])
        assert single.shape == action
        np.testing.assert_allclose(single, actions[i], rtol=1e-5, atol=1e-7)
    # the deterministic action is the policy's mean, clipped to the Box
    with torch.no_grad():
        mean = agent.policy(torch.from_numpy(batch.reshape(5, -1)))[0].numpy()
    space = agent.envs.single_action_space
    expected = np.clip(mean.reshape(5, *action), space.low, space.high)
    np.testing.assert_allclose(actions, expected, rtol=1e-6)
    assert agent.predict(batch[0].tolist()).shape == action  # a nested list works too
    for shape in wrong:
        with pytest.raises(ValueError, match=rf"\({', '.join(map(str, observation))},?\)"):
            agent.predict(np.zeros(shape, dtype=np.float32))


def test_learn_names_arguments_of_the_wrong_type(tmp_path):
    agent = pc.rl.A2C("probcalc/LQR-v0", n_envs=2, n_steps=5, seed=0)
    with pytest.raises(TypeError, match="total_steps must be an int"):
        agent.learn(1e3)
    with pytest.raises(TypeError, match="total_steps must be an int"):
        agent.learn("100")
    with pytest.raises(TypeError, match="checkpoint_every must be an int"):
        agent.learn(100, log_dir=tmp_path, checkpoint_every=2.5)
    with pytest.raises(TypeError, match="callback must be callable"):
        agent.learn(100, callback=3)
    assert agent.num_timesteps == 0 and not any(tmp_path.iterdir())
    assert agent.learn(np.int64(10)).num_timesteps == 10


@pytest.mark.parametrize(
    ("name", "env"), [(name, env) for name, table in pc.rl.TUNED.items() for env in table]
)
def test_every_tuned_entry_is_a_valid_setting_of_its_algorithm(name, env):
    algorithm = pc.rl.ALGORITHMS[name]
    settings = pc.rl.tuned(name, env)
    assert pc.rl.check_settings(algorithm, settings) == settings
    assert isinstance(pc.rl.tuned_steps(name, env), int)
