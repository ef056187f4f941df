"""The config dataclasses: frozen, documented, the one source of the constructors, the
files, TUNED and the command; dtypes, callbacks and seeds by the project's conventions."""

import dataclasses
import warnings

import pytest
import torch

import probcalc as pc
from probcalc.rl.config import field_docs

ALGORITHMS = sorted(pc.rl.ALGORITHMS.items())
IDS = [name for name, _ in ALGORITHMS]
CONFIGS = [
    pc.rl.AgentConfig,
    pc.rl.ActorCriticConfig,
    pc.rl.REINFORCEConfig,
    pc.rl.A2CConfig,
    pc.rl.PPOConfig,
    pc.rl.NaturalPGConfig,
    pc.rl.TRPOConfig,
    pc.rl.OnPolicyConfig,
    pc.rl.OffPolicyConfig,
    pc.rl.SACConfig,
    pc.rl.TD3Config,
    pc.rl.DDPGConfig,
]
SMALL = {"n_envs": 2, "n_steps": 8, "hidden": (8,)}
SMALL_OFF_POLICY = {
    "n_envs": 2,
    "train_freq": 2,
    "hidden": (8,),
    "learning_starts": 8,
    "batch_size": 8,
    "buffer_size": 64,
}


def _parameters(agent):
    return [t.clone() for net in agent.networks.values() for t in net.state_dict().values()]


def _equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_a_config_is_frozen_and_every_field_has_a_docstring_line(config):
    made = config()
    field = dataclasses.fields(made)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, field, None)
    docs = field_docs(config)
    missing = [f.name for f in dataclasses.fields(config) if not docs.get(f.name)]
    assert not missing, missing
    described = config.__doc__ + "".join(base.__doc__ or "" for base in config.__mro__)
    assert all(f"    {f.name}: " in described for f in dataclasses.fields(config))


@pytest.mark.parametrize(("name", "algorithm"), ALGORITHMS, ids=IDS)
def test_each_algorithm_reads_its_own_config_and_lists_its_settings(name, algorithm):
    assert dataclasses.is_dataclass(algorithm.Config)
    text = algorithm.settings()
    for field in dataclasses.fields(algorithm.Config):
        assert f"\n{field.name} = " in f"\n{text}", field.name
    assert set(pc.rl.settings(algorithm)) == {f.name for f in dataclasses.fields(algorithm.Config)}


@pytest.mark.parametrize(
    ("name", "env"), [(name, env) for name, table in pc.rl.TUNED.items() for env in table]
)
def test_every_tuned_entry_builds_its_algorithms_config(name, env):
    config = pc.rl.ALGORITHMS[name].Config(**pc.rl.tuned(name, env))
    for key, value in pc.rl.tuned(name, env).items():
        assert getattr(config, key) == value


@pytest.mark.parametrize(("name", "algorithm"), ALGORITHMS, ids=IDS)
def test_a_config_or_keywords_build_the_same_agent_bit_for_bit(name, algorithm):
    on_policy = issubclass(algorithm, pc.rl.OnPolicyAgent)
    small = SMALL if on_policy else SMALL_OFF_POLICY
    by_keywords = algorithm("probcalc/LQR-v0", seed=5, **small).learn(32)
    by_config = algorithm("probcalc/LQR-v0", config=algorithm.Config(seed=5, **small)).learn(32)
    assert _equal(_parameters(by_keywords), _parameters(by_config))
    assert by_config.config == by_keywords.config
    # keywords change the given config's fields
    steps = "n_steps" if on_policy else "train_freq"
    changed = algorithm("probcalc/LQR-v0", config=algorithm.Config(**small), seed=1, **{steps: 4})
    assert getattr(changed.config, steps) == 4 and changed.config.n_envs == 2


def test_a_config_of_another_algorithm_is_refused():
    with pytest.raises(TypeError, match="config must be a PPOConfig"):
        pc.rl.PPO("Pendulum-v1", config=pc.rl.A2CConfig())


@pytest.mark.parametrize(
    ("config", "changes", "error", "words"),
    [
        (pc.rl.PPOConfig, {"n_epochs": 0}, ValueError, "n_epochs"),
        (pc.rl.PPOConfig, {"batch_size": 65, "n_envs": 2, "n_steps": 32}, ValueError, "batch_size"),
        (pc.rl.TRPOConfig, {"backtrack_factor": 1.0}, ValueError, "backtrack_factor"),
        (pc.rl.A2CConfig, {"optimizer": "sgd"}, ValueError, "'rmsprop', 'adam'"),
        (pc.rl.NaturalPGConfig, {"cg_iterations": 2.5}, TypeError, "cg_iterations"),
        (pc.rl.AgentConfig, {"gamma": float("nan")}, ValueError, "gamma must be finite"),
        (pc.rl.AgentConfig, {"seed": -1}, ValueError, "seed"),
        (pc.rl.AgentConfig, {"dtype": torch.float16}, ValueError, "dtype"),
    ],
)
def test_a_config_checks_itself(config, changes, error, words):
    with pytest.raises(error, match=words):
        config(**changes)


def test_an_unknown_key_is_rejected_with_the_valid_keys_listed():
    with pytest.raises(TypeError) as caught:
        pc.rl.check_settings(pc.rl.PPOConfig, {"clip_rang": 0.1})
    message = str(caught.value)
    assert "did you mean 'clip_range'" in message
    assert all(field.name in message for field in dataclasses.fields(pc.rl.PPOConfig))


def test_dtype_is_a_torch_dtype_and_the_string_forms_warn():
    agent = pc.rl.A2C("probcalc/LQR-v0", dtype=torch.float64, seed=0, **SMALL)
    assert agent.config.dtype is torch.float64 and agent.policy.log_std.dtype == torch.float64
    with pytest.warns(DeprecationWarning, match=r"dtype=torch\.float64") as caught:
        old = pc.rl.A2C("probcalc/LQR-v0", dtype="float64", seed=0, **SMALL)
    assert caught[0].filename == __file__  # the warning points at the caller
    assert old.config == agent.config
    with pytest.warns(DeprecationWarning):
        assert pc.rl.PPOConfig(dtype="float32").dtype is torch.float32
    with pytest.raises(ValueError, match="dtype"):
        pc.rl.A2C("probcalc/LQR-v0", dtype="half")


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_a_seed_means_the_same_agent_whatever_the_callers_default_dtype(default):
    reference = _parameters(pc.rl.PPO("probcalc/LQR-v0", seed=3, **SMALL))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        agent = pc.rl.PPO("probcalc/LQR-v0", seed=3, **SMALL)
    finally:
        torch.set_default_dtype(previous)
    assert torch.get_default_dtype() == previous
    assert _equal(_parameters(agent), reference)


def test_seed_none_draws_fresh_seeds_and_records_them_so_that_a_saved_agent_reproduces(tmp_path):
    first = pc.rl.A2C("probcalc/LQR-v0", **SMALL)
    second = pc.rl.A2C("probcalc/LQR-v0", **SMALL)
    assert first.config.seed != second.config.seed
    assert not _equal(_parameters(first), _parameters(second))
    again = pc.rl.A2C("probcalc/LQR-v0", seed=first.config.seed, **SMALL)
    assert _equal(_parameters(again), _parameters(first))  # the recorded seed is the one used
    first.save(tmp_path / "agent.pt")
    loaded = pc.rl.load(tmp_path / "agent.pt")
    assert loaded.config == first.config
    # the loaded agent goes on as the original one does
    first.learn(32)
    loaded.learn(32)
    assert _equal(_parameters(loaded), _parameters(first))


def test_a_generator_seed_draws_an_int_seed_from_it():
    agents = [
        pc.rl.REINFORCE("probcalc/LQR-v0", seed=torch.Generator().manual_seed(9), **SMALL)
        for _ in range(2)
    ]
    assert agents[0].config.seed == agents[1].config.seed
    assert _equal(_parameters(agents[0]), _parameters(agents[1]))


@pytest.mark.parametrize(
    ("callback", "updates"),
    [
        (lambda agent, row: None, 4),
        (lambda agent, row: True, 4),
        (lambda agent, row: row["step"] < 32, 2),
        (lambda agent, row: False, 1),
    ],
    ids=["None", "True", "False at step 32", "False"],
)
def test_a_callback_stops_the_run_by_returning_false(callback, updates):
    agent = pc.rl.REINFORCE("probcalc/LQR-v0", seed=0, **SMALL)  # 16 steps per update
    calls = []
    agent.learn(64, callback=lambda agent, row: calls.append(row["step"]) or callback(agent, row))
    assert len(calls) == updates and agent.num_timesteps == 16 * updates


def test_a_callback_stops_the_run_by_raising_stop_iteration():
    agent = pc.rl.REINFORCE("probcalc/LQR-v0", seed=0, **SMALL)

    def callback(agent, row):
        if row["step"] >= 32:
            raise StopIteration

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agent.learn(64, callback=callback)
    assert agent.num_timesteps == 32


def test_explained_variance_of_one_transition_is_nan_without_a_warning():
    from probcalc.rl.actor_critic import explained_variance

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert explained_variance(torch.zeros(1), torch.ones(1)) != explained_variance(
            torch.zeros(1), torch.ones(1)
        )  # NaN
        assert explained_variance(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0])) == 1.0
