"""probcalc.rl: advantages, normalizers, policies, natural-gradient pieces, the agents'
constructors, learn, predict, evaluate, load and the tuned settings; probcalc's envs."""

import atexit
import functools
import math
import shutil
import tempfile
from pathlib import Path

import gymnasium
import numpy as np
import torch
from malformed import (
    NAN,
    AppendOne,
    AsDtype,
    AsList,
    AsNumpy,
    DropLast,
    Empty,
    First,
    Poison,
    Scaled,
    Slot,
    Target,
    Unsqueeze,
    bad_tensor,
    f64,
    nonfinite_elements,
    one_of,
    unknown_strings,
    values,
)

import probcalc as pc

INF = math.inf
COMPLEX, BOOL, INT = AsDtype(torch.complex128), AsDtype(torch.bool), AsDtype(torch.int64)
F32 = AsDtype(torch.float32)
NOT_COUNTS = (0, -1, 1.5, "3", NAN, INF, None, True)  # for counts that must be >= 1
NOT_BOOLS = ("yes", "no", None, 2)
NOT_PROBABILITIES = (-0.1, 1.1, NAN, INF, "0.9", None)


# -------------------------------------------------------------------- advantages
def _gae_valid():
    return {
        "rewards": f64([[1.0, 0.5], [0.0, -1.0], [2.0, 0.3]]),
        "values": f64([[0.2, 0.1], [0.4, -0.2], [1.0, 0.0]]),
        "terminated": torch.tensor([[False, False], [True, False], [False, False]]),
        "truncated": torch.tensor([[False, False], [False, False], [False, True]]),
        "next_value": f64([0.5, -0.5]),
        "final_values": f64([[0.0, 0.0], [0.0, 0.0], [0.7, 0.8]]),
        "reset_step": torch.tensor([[False, False], [False, False], [True, False]]),
    }


STEP_SHAPES = (Unsqueeze(), First(), DropLast(), AppendOne(), Empty())
FLAG_VALUES_BAD = (
    *STEP_SHAPES,
    f64([[0.0, 0.5], [1.0, 0.0], [0.0, 0.0]]),
    f64([[0.0, 2.0], [1.0, 0.0], [0.0, 0.0]]),
    f64([[0.0, NAN], [1.0, 0.0], [0.0, 0.0]]),
    f64([[0.0, INF], [1.0, 0.0], [0.0, 0.0]]),
    COMPLEX,
    "flags",
)
FLAG_BAD = values(*FLAG_VALUES_BAD, None)
FLAG_UNUSUAL = values(INT, AsDtype(torch.float64))

GAE = Target(
    "probcalc.rl.generalized_advantages",
    pc.rl.generalized_advantages,
    _gae_valid,
    (
        Slot(
            "rewards",
            bad=bad_tensor(dtypes=(COMPLEX, BOOL), shapes=STEP_SHAPES, extra=("r", None)),
            unusual=values(INT, F32),
            either=values(AsNumpy(), AsList()),
            words=("rewards",),
        ),
        Slot(
            "values",
            bad=bad_tensor(dtypes=(COMPLEX, BOOL), shapes=STEP_SHAPES, extra=("v", None)),
            unusual=values(INT),
            either=values(AsNumpy()),
            words=("values",),
        ),
        Slot(
            "terminated",
            bad=FLAG_BAD,
            unusual=FLAG_UNUSUAL,
            either=values(AsNumpy()),
            words=("terminated",),
        ),
        Slot(
            "truncated",
            bad=FLAG_BAD,
            unusual=FLAG_UNUSUAL,
            either=values(AsNumpy()),
            words=("truncated",),
        ),
        Slot(
            "next_value",
            bad=bad_tensor(
                dtypes=(COMPLEX, BOOL),
                shapes=(Unsqueeze(), First(), DropLast(), Empty()),
                extra=("v", None),
            ),
            unusual=values(INT),
            words=("next_value",),
        ),
        Slot(
            "final_values",
            bad=bad_tensor(dtypes=(COMPLEX, BOOL), shapes=STEP_SHAPES, extra=("v",)),
            unusual=values(INT),
            words=("final_values",),
        ),
        Slot(
            "reset_step",
            bad=values(*FLAG_VALUES_BAD),
            unusual=values(INT, None),
            either=values(AsNumpy()),
            words=("reset_step",),
        ),
        Slot(
            "gamma",
            bad=values(*NOT_PROBABILITIES),
            unusual=values(0, 1, 0.5, np.float32(0.9)),
            words=("gamma",),
        ),
        Slot(
            "gae_lambda",
            bad=values(*NOT_PROBABILITIES),
            unusual=values(0, 1, 0.5),
            words=("gae_lambda",),
        ),
    ),
)

# -------------------------------------------------------------------- normalization
RUNNING_MEAN_STD = Target(
    "probcalc.rl.RunningMeanStd",
    pc.rl.RunningMeanStd,
    lambda: {"shape": (2,)},
    (
        Slot(
            "shape",
            bad=values(-1, (2, -1), "3", 1.5, (1.5,), None, [[2]]),
            unusual=values(3, (), [2], (2, 3), np.int64(2)),
            words=("shape",),
        ),
    ),
)


def _update(batch):
    stats = pc.rl.RunningMeanStd((2,))
    stats.update(batch)
    return stats.mean, stats.var


RUNNING_MEAN_STD_UPDATE = Target(
    "probcalc.rl.RunningMeanStd.update",
    _update,
    lambda: {"batch": np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]])},
    (
        Slot(
            "batch",
            bad=one_of(
                nonfinite_elements(),
                values(
                    First(),
                    Unsqueeze(),
                    np.ones((3, 3)),
                    np.ones(2),
                    "b",
                    None,
                    np.array([[1j, 0], [0, 1]]),
                ),
            ),
            unusual=values(AsList(), torch.ones(3, 2), np.ones((0, 2)), np.ones((1, 2))),
            words=("batch", "items"),
        ),
    ),
)


_DEFAULT = object()  # an argument left out (None is one of the values tried)


def _observation_normalizer(shape=(2,), clip=10.0, eps=1e-8, observations=_DEFAULT):
    normalizer = pc.rl.ObservationNormalizer(shape, clip=clip, eps=eps)
    normalizer.update(np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]]))
    return normalizer(np.array([[0.5, 0.5]]) if observations is _DEFAULT else observations)


OBSERVATION_NORMALIZER = Target(
    "probcalc.rl.ObservationNormalizer",
    _observation_normalizer,
    lambda: {"observations": np.array([[0.5, 0.5], [1.0, 0.0]])},
    (
        Slot(
            "clip", bad=values(0.0, -1.0, NAN, "10", None), unusual=values(5, INF), words=("clip",)
        ),
        Slot(
            "eps",
            bad=values(-1.0, NAN, INF, "1e-8", None),
            unusual=values(0.0, 1e-3),
            words=("eps",),
        ),
        Slot(
            "observations",
            bad=one_of(
                nonfinite_elements(),
                values(np.ones((2, 3)), np.ones(3), "o", None, np.array([[1j, 0.0]])),
            ),
            unusual=values(AsList(), np.ones(2), np.ones((0, 2))),
            words=("observations",),
        ),
    ),
)


def _reward_normalizer(n_envs=2, gamma=0.99, clip=10.0, eps=1e-8, rewards=_DEFAULT, done=_DEFAULT):
    normalizer = pc.rl.RewardNormalizer(n_envs, gamma, clip=clip, eps=eps)
    normalizer.update(np.array([1.0, -0.5]), np.array([False, True]))
    rewards = np.array([0.3, 0.2]) if rewards is _DEFAULT else rewards
    normalizer.update(rewards, np.array([False, False]) if done is _DEFAULT else done)
    return normalizer(rewards)


REWARD_NORMALIZER = Target(
    "probcalc.rl.RewardNormalizer",
    _reward_normalizer,
    lambda: {},
    (
        Slot("n_envs", bad=values(*NOT_COUNTS), words=("n_envs",)),
        Slot(
            "gamma", bad=values(*NOT_PROBABILITIES), unusual=values(0.0, 1, 0.5), words=("gamma",)
        ),
        Slot("clip", bad=values(0.0, -1.0, NAN, "10"), words=("clip",)),
        Slot("eps", bad=values(-1.0, NAN, INF, "1e-8"), words=("eps",)),
        Slot(
            "rewards",
            bad=one_of(nonfinite_elements(), values(np.ones(3), np.ones((2, 1)), "r", None)),
            unusual=values(AsList(), np.zeros(2)),
            words=("rewards",),
            base=lambda: np.array([0.3, 0.2]),
        ),
        Slot(
            "done",
            bad=values(np.array([True]), np.ones(3, dtype=bool), "d"),
            unusual=values([False, True], np.array([0, 1])),
            words=("done",),
        ),
    ),
)

# -------------------------------------------------------------------- policies
MLP = Target(
    "probcalc.rl.mlp",
    pc.rl.mlp,
    lambda: {"sizes": [3, 4, 2]},
    (
        Slot(
            "sizes",
            bad=values([], [3], [3, 0], [3, -1], [3, 1.5], "34", None, 3, [3, "4"]),
            unusual=values((3, 2), [3, np.int64(4), 2]),
            words=("sizes",),
        ),
        Slot(
            "activation",
            bad=values("tanh", 3, torch.tanh, None),
            unusual=values(torch.nn.ReLU, torch.nn.Tanh),
            words=("activation",),
        ),
        Slot(
            "output_gain",
            bad=values(NAN, INF, "0.01", -INF),
            unusual=values(0.01, 1, None),
            words=("output_gain",),
        ),
    ),
)

POLICY_SLOTS = (
    Slot("obs_dim", bad=values(*NOT_COUNTS), unusual=values(np.int64(3)), words=("obs_dim",)),
    Slot("act_dim", bad=values(*NOT_COUNTS), unusual=values(np.int64(2)), words=("act_dim",)),
    Slot(
        "hidden",
        bad=values((0,), (-1,), "64", (1.5,), 64, None, (4, "4")),
        unusual=values((), [4], (4, 4)),
        words=("hidden",),
    ),
    Slot(
        "log_std_init",
        bad=values(NAN, INF, -INF, "0", None),
        unusual=values(-1, 0.5),
        words=("log_std_init",),
    ),
    Slot(
        "activation",
        bad=values("tanh", 3, None),
        unusual=values(torch.nn.ReLU),
        words=("activation",),
    ),
)


def _policy_valid():
    return {"obs_dim": 3, "act_dim": 2, "hidden": (4,)}


POLICIES = [
    Target(f"probcalc.rl.{cls.__name__}", cls, _policy_valid, POLICY_SLOTS)
    for cls in (pc.rl.GaussianPolicy, pc.rl.SquashedGaussianPolicy)
]


def _policy():
    torch.manual_seed(0)
    return pc.rl.GaussianPolicy(3, 2, hidden=(4,)).double()


def _log_prob(obs, actions, squashed=False):
    cls = pc.rl.SquashedGaussianPolicy if squashed else pc.rl.GaussianPolicy
    torch.manual_seed(0)
    return cls(3, 2, hidden=(4,)).double().log_prob(obs, actions)


OBS_BAD = one_of(
    nonfinite_elements(),
    values(f64(np.ones((4, 2))), f64(np.ones((4, 4))), First(), COMPLEX, BOOL, "o", None),
)

LOG_PROB = Target(
    "probcalc.rl.GaussianPolicy.log_prob",
    _log_prob,
    lambda: {
        "obs": f64([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5], [0.0, 0.0, 0.0], [2.0, 1.0, -2.0]]),
        "actions": f64([[0.5, -0.5], [0.1, 0.2], [0.0, 0.0], [-0.3, 0.9]]),
    },
    (
        Slot(
            "obs",
            bad=one_of(OBS_BAD, values(Empty())),
            unusual=values(F32, INT),
            either=values(AsList(), AsNumpy()),
            words=("obs", "observations"),
        ),
        Slot(
            "actions",
            bad=one_of(
                nonfinite_elements(),
                values(
                    f64(np.ones((4, 3))), f64(np.ones((3, 2))), First(), COMPLEX, BOOL, "a", None
                ),
            ),
            unusual=values(F32, INT),
            words=("actions",),
        ),
        Slot("squashed", unusual=values(True)),
    ),
)


def _sample(obs, deterministic=False):
    policy = _policy()
    return policy.sample(obs, deterministic, generator=torch.Generator().manual_seed(0))


SAMPLE = Target(
    "probcalc.rl.GaussianPolicy.sample",
    _sample,
    lambda: {"obs": f64([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]])},
    (
        Slot(
            "obs",
            bad=OBS_BAD,
            unusual=values(F32, INT, Empty()),
            either=values(AsList(), AsNumpy()),
            words=("obs", "observations"),
        ),
    ),
)


# -------------------------------------------------------------------- natural gradients
def _fisher(policy, obs, damping=0.1, v=_DEFAULT):
    product = pc.rl.fisher_operator(policy, obs, damping)
    d = pc.functional_module(policy).dim
    return product(torch.linspace(-1.0, 1.0, d, dtype=torch.float64) if v is _DEFAULT else v)


FISHER = Target(
    "probcalc.rl.fisher_operator",
    _fisher,
    lambda: {"policy": _policy(), "obs": f64([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]])},
    (
        Slot("policy", bad=values(None, torch.nn.Linear(3, 2), "policy"), words=("policy",)),
        Slot("obs", bad=OBS_BAD, unusual=values(F32), words=("obs",)),
        Slot(
            "damping",
            bad=values(-0.1, NAN, INF, "0.1", None),
            unusual=values(0, 1),
            words=("damping",),
        ),
        Slot(
            "v",
            bad=one_of(nonfinite_elements(), values(DropLast(), Unsqueeze(), COMPLEX, "v", None)),
            unusual=values(F32),
            words=("v",),
            base=lambda: torch.linspace(-1.0, 1.0, 28, dtype=torch.float64),
        ),
    ),
)


def _kl_valid():
    return {
        "mean_old": f64([[0.0, 1.0], [0.5, -0.5]]),
        "log_std_old": f64([0.0, -0.5]),
        "mean": f64([[0.1, 0.9], [0.4, -0.4]]),
        "log_std": f64([0.1, -0.4]),
    }


def _kl_slot(name):
    return Slot(
        name,
        bad=values(COMPLEX, AppendOne(), "m", None, f64([0.0, 0.0, 0.0])),
        unusual=values(F32, INT, First()),
        either=values(AsList()),
        passthrough=nonfinite_elements(),
        words=(name,),
    )


GAUSSIAN_KL = Target(
    "probcalc.rl.gaussian_kl",
    pc.rl.gaussian_kl,
    _kl_valid,
    tuple(_kl_slot(name) for name in ("mean_old", "log_std_old", "mean", "log_std")),
)


# -------------------------------------------------------------------- agents
def _make(cls, **options):
    agent = cls(**options)
    agent.envs.close()
    return agent


def _agent_valid(env="Pendulum-v1", **extra):
    def valid():
        return {"env": env, "n_envs": 1, "n_steps": 4, "hidden": (4,), "seed": 0, **extra}

    return valid


COMMON_AGENT_SLOTS = (
    Slot(
        "env",
        bad=values("NoSuchEnv-v0", 3, None, "CartPole-v1", gymnasium.make),
        unusual=values("probcalc/ContinuousBandit-v0"),
        words=("env",),
    ),
    Slot("policy", bad=unknown_strings(), unusual=values("linear"), words=("policy",)),
    Slot("squash", bad=values(*NOT_BOOLS), unusual=values(True), words=("squash",)),
    Slot(
        "hidden",
        bad=values((0,), (-1,), "64", (1.5,), 64, None),
        unusual=values((), [4]),
        words=("hidden",),
    ),
    Slot("activation", bad=unknown_strings(), unusual=values("relu"), words=("activation",)),
    Slot("ortho_init", bad=values(*NOT_BOOLS), unusual=values(False), words=("ortho_init",)),
    Slot("n_envs", bad=values(*NOT_COUNTS), unusual=values(2, np.int64(1)), words=("n_envs",)),
    Slot("n_steps", bad=values(*NOT_COUNTS), unusual=values(np.int64(4)), words=("n_steps",)),
    Slot("gamma", bad=values(*NOT_PROBABILITIES), unusual=values(1, 0.5), words=("gamma",)),
    Slot(
        "learning_rate",
        bad=values(0.0, -1e-3, NAN, INF, "1e-3", None),
        unusual=values(1, 1e-4),
        words=("learning_rate",),
    ),
    Slot("lr_schedule", bad=unknown_strings(), unusual=values("linear"), words=("lr_schedule",)),
    Slot(
        "log_std_init",
        bad=values(NAN, INF, -INF, "0", None),
        unusual=values(-1, 0.5),
        words=("log_std_init",),
    ),
    Slot("learn_std", bad=values(*NOT_BOOLS), unusual=values(False), words=("learn_std",)),
    Slot(
        "normalize_observations",
        bad=values(*NOT_BOOLS),
        unusual=values(True),
        words=("normalize_observations",),
    ),
    Slot(
        "normalize_rewards",
        bad=values(*NOT_BOOLS),
        unusual=values(True),
        words=("normalize_rewards",),
    ),
    Slot("vectorization", bad=unknown_strings(), words=("vectorization",)),
    Slot(
        "env_kwargs",
        bad=values("g=9.8", {"nope": 1}, [("g", 9.8)]),
        unusual=values({"g": 9.0}, None, {}),
        words=("env_kwargs",),
    ),
    Slot(
        "seed",
        bad=values("0", 1.5, NAN, -1, 2**70),
        unusual=values(None, np.int64(3)),
        words=("seed",),
    ),
    Slot(
        "dtype",
        bad=one_of(unknown_strings(), values(torch.float16, torch.int64, 64, None)),
        unusual=values(torch.float64, torch.float32),
        words=("dtype",),
    ),
)

PPO = Target(
    "probcalc.rl.PPO",
    functools.partial(_make, pc.rl.PPO),
    _agent_valid(batch_size=4),
    (
        *COMMON_AGENT_SLOTS,
        Slot("n_epochs", bad=values(*NOT_COUNTS), unusual=values(1), words=("n_epochs",)),
        Slot(
            "batch_size",
            bad=values(1, 0, -4, 1.5, "4", NAN, 64),
            unusual=values(2, np.int64(4), None),
            words=("batch_size",),
        ),
        Slot(
            "clip_range",
            bad=values(0.0, -0.2, NAN, "0.2", None),
            unusual=values(1, 0.1),
            either=values(INF),
            words=("clip_range",),
        ),
        Slot(
            "clip_range_vf",
            bad=values(0.0, -0.2, NAN, "0.2"),
            unusual=values(None, 0.5),
            words=("clip_range_vf",),
        ),
        Slot(
            "target_kl",
            bad=values(0.0, -0.01, NAN, "0.01"),
            unusual=values(None, 0.02),
            words=("target_kl",),
        ),
        Slot(
            "gae_lambda",
            bad=values(*NOT_PROBABILITIES),
            unusual=values(0, 1),
            words=("gae_lambda",),
        ),
        Slot(
            "ent_coef",
            bad=values(NAN, INF, "0.0", None),
            unusual=values(0, 0.01),
            words=("ent_coef",),
        ),
        Slot(
            "vf_coef",
            bad=values(NAN, INF, -1.0, "0.5", None),
            unusual=values(0, 1),
            words=("vf_coef",),
        ),
        Slot(
            "max_grad_norm",
            bad=values(0.0, -1.0, NAN, "0.5"),
            unusual=values(None, 1),
            either=values(INF),
            words=("max_grad_norm",),
        ),
        Slot(
            "normalize_advantage",
            bad=values(*NOT_BOOLS),
            unusual=values(False),
            words=("normalize_advantage",),
        ),
    ),
)

A2C = Target(
    "probcalc.rl.A2C",
    functools.partial(_make, pc.rl.A2C),
    _agent_valid(),
    (
        Slot("optimizer", bad=unknown_strings(), unusual=values("adam"), words=("optimizer",)),
        Slot("n_steps", bad=values(*NOT_COUNTS), words=("n_steps",)),
        Slot("gae_lambda", bad=values(*NOT_PROBABILITIES), words=("gae_lambda",)),
    ),
)

REINFORCE = Target(
    "probcalc.rl.REINFORCE",
    functools.partial(_make, pc.rl.REINFORCE),
    _agent_valid(),
    (
        Slot("n_steps", bad=values(*NOT_COUNTS), words=("n_steps",)),
        Slot("gamma", bad=values(*NOT_PROBABILITIES), words=("gamma",)),
        Slot("gae_lambda", bad=values(0.5), words=("gae_lambda",)),  # not an option of it
    ),
)

NATURAL_SLOTS = (
    Slot(
        "max_kl",
        bad=values(0.0, -0.01, NAN, INF, "0.01", None),
        unusual=values(1, 0.05),
        words=("max_kl",),
    ),
    Slot(
        "step_size",
        bad=values(0.0, -0.1, NAN, INF, "0.1"),
        unusual=values(None, 0.5, 1),
        words=("step_size",),
    ),
    Slot(
        "cg_iterations",
        bad=values(*NOT_COUNTS),
        unusual=values(1, np.int64(10)),
        words=("cg_iterations",),
    ),
    Slot(
        "cg_damping",
        bad=values(-0.1, NAN, INF, "0.1", None),
        unusual=values(0, 1),
        words=("cg_damping",),
    ),
    Slot(
        "critic_epochs",
        bad=values(-1, 1.5, "10", NAN, INF, None, True),
        unusual=values(0, 1, np.int64(5)),
        words=("critic_epochs",),
    ),
    Slot(
        "critic_batch_size",
        bad=values(1, 0, -2, 1.5, "128", NAN, None, True),
        unusual=values(2, np.int64(64)),
        words=("critic_batch_size",),
    ),
)

NATURAL_PG = Target(
    "probcalc.rl.NaturalPG",
    functools.partial(_make, pc.rl.NaturalPG),
    _agent_valid(),
    NATURAL_SLOTS,
)

TRPO = Target(
    "probcalc.rl.TRPO",
    functools.partial(_make, pc.rl.TRPO),
    _agent_valid(),
    (
        *NATURAL_SLOTS[:1],
        Slot(
            "backtrack_factor",
            bad=values(0.0, 1.0, -0.5, 1.5, NAN, "0.8", None),
            unusual=values(0.5, np.float32(0.8)),
            words=("backtrack_factor",),
        ),
        Slot(
            "backtrack_steps",
            bad=values(*NOT_COUNTS),
            unusual=values(1, np.int64(3)),
            words=("backtrack_steps",),
        ),
    ),
)


@functools.cache
def _bandit_agent():
    """A small agent on the one-step bandit, shared by the cases that only use it."""
    return pc.rl.A2C("probcalc/ContinuousBandit-v0", n_envs=1, n_steps=2, hidden=(4,), seed=0)


def _evaluate_valid():
    return {"agent": _bandit_agent(), "n_episodes": 2, "seed": 0}


EVALUATE = Target(
    "probcalc.rl.evaluate",
    pc.rl.evaluate,
    _evaluate_valid,
    (
        Slot("agent", bad=values(None, "a2c", 3, torch.nn.Linear(1, 2)), words=("agent",)),
        Slot(
            "env",
            bad=values("NoSuchEnv-v0", 3, "CartPole-v1"),
            unusual=values(None, "probcalc/ContinuousBandit-v0"),
            words=("env",),
        ),
        Slot(
            "n_episodes",
            bad=values(*NOT_COUNTS),
            unusual=values(1, np.int64(2)),
            words=("n_episodes",),
        ),
        Slot(
            "deterministic", bad=values(*NOT_BOOLS), unusual=values(False), words=("deterministic",)
        ),
        Slot(
            "seed",
            bad=values("0", 1.5, NAN, -1),
            unusual=values(None, 3, torch.Generator().manual_seed(0)),
            words=("seed",),
        ),
    ),
)


def _predict(obs, deterministic=True):
    return _bandit_agent().predict(obs, deterministic)


PREDICT = Target(
    "probcalc.rl.OnPolicyAgent.predict",
    _predict,
    lambda: {"obs": np.zeros((3, 1), dtype=np.float32)},
    (
        Slot(
            "obs",
            bad=one_of(
                nonfinite_elements(),
                values(np.zeros((3, 2)), "o", None, np.array([[1j]]), np.zeros((0, 1))),
            ),
            unusual=values(np.zeros((3, 1)), [[0.0], [0.5]], torch.zeros(2, 1)),
            either=values(np.zeros(1)),
            words=("obs", "observation", "observations"),
        ),
        Slot(
            "deterministic", bad=values(*NOT_BOOLS), unusual=values(False), words=("deterministic",)
        ),
    ),
)


def _learn(**options):
    agent = pc.rl.A2C("probcalc/ContinuousBandit-v0", n_envs=1, n_steps=2, hidden=(4,), seed=0)
    try:
        return agent.learn(**options).num_timesteps
    finally:
        agent.envs.close()


LEARN = Target(
    "probcalc.rl.OnPolicyAgent.learn",
    _learn,
    lambda: {"total_steps": 4},
    (
        Slot(
            "total_steps",
            bad=values(*NOT_COUNTS),
            unusual=values(2, np.int64(4), 3),
            words=("total_steps",),
        ),
        Slot(
            "callback",
            bad=values(3, "cb"),
            unusual=values(None, lambda agent, figures: True),
            words=("callback",),
        ),
        Slot("checkpoint_every", bad=values(0, -1, 1.5, "2"), words=("checkpoint_every",)),
        Slot("progress_bar", bad=values("yes", 2), words=("progress_bar",)),
    ),
)

_FILES = Path(tempfile.mkdtemp(prefix="probcalc-property-"))
atexit.register(shutil.rmtree, _FILES, ignore_errors=True)


def _garbage(name, content):
    path = _FILES / name
    path.write_bytes(content)
    return path


def _load_valid():
    path = _FILES / "agent.pt"
    if not path.exists():
        _bandit_agent().save(path)
    return {"path": path}


def _load(path, env=None, **overrides):
    agent = pc.rl.load(path, env, **overrides)
    agent.envs.close()
    return agent


LOAD = Target(
    "probcalc.rl.load",
    _load,
    _load_valid,
    (
        Slot(
            "path",
            bad=values(
                _garbage("text.pt", b"not a checkpoint"), _garbage("empty.pt", b""), 3, None
            ),
            unusual=values(str(_FILES / "agent.pt")),
            words=("path",),
        ),
        Slot(
            "env",
            bad=values("NoSuchEnv-v0", 3, "CartPole-v1"),
            unusual=values(None, "probcalc/ContinuousBandit-v0"),
            words=("env",),
        ),
        Slot("n_envs", bad=values(0, -1, "2"), unusual=values(2), words=("n_envs",)),
    ),
)

TUNED = Target(
    "probcalc.rl.tuned",
    pc.rl.tuned,
    lambda: {"algorithm": "ppo", "env": "Pendulum-v1"},
    (
        Slot(
            "algorithm",
            bad=values(3, None, ["ppo"]),
            unusual=values("PPO", "nope"),
            words=("algorithm",),
        ),
        Slot("env", bad=values(3, None), unusual=values("nope"), words=("env",)),
    ),
)

TUNED_STEPS = Target(
    "probcalc.rl.tuned_steps",
    pc.rl.tuned_steps,
    lambda: {"algorithm": "ppo", "env": "Pendulum-v1"},
    (Slot("algorithm", bad=values(3, None), unusual=values("nope"), words=("algorithm",)),),
)


# -------------------------------------------------------------------- probcalc's envs
def _make_env(env_id, **kwargs):
    # the class itself: gymnasium.make re-raises a constructor's TypeError from its own frame
    env = gymnasium.envs.registration.load_env_creator(gymnasium.spec(env_id).entry_point)(**kwargs)
    try:
        obs, _ = env.reset(seed=0)
        obs, reward, *_ = env.step(env.action_space.sample())
        return obs, reward
    finally:
        env.close()


def _matrix_slot(name, size, *, definite):
    """Q (positive semi-definite: 0 allowed) or R (positive definite)."""
    bad = [
        nonfinite_elements(),
        values(
            DropLast(),
            First(),
            Unsqueeze(),
            COMPLEX,
            "A",
            3,
            Scaled(-1.0),
            np.triu(np.ones((size, size))),
        ),
    ]
    unusual = [AsList(), AsNumpy(), INT, Scaled(2.0)]
    (bad if definite else unusual).append(Scaled(0.0))
    return Slot(
        name, bad=one_of(*bad), unusual=values(*unusual), words=(name,), base=lambda: np.eye(size)
    )


LQR = Target(
    "probcalc.envs LQR-v0",
    functools.partial(_make_env, "probcalc/LQR-v0"),
    lambda: {},
    (
        Slot(
            "A",
            bad=one_of(
                nonfinite_elements(), values(DropLast(), First(), Unsqueeze(), COMPLEX, "A", 3)
            ),
            unusual=values(AsList(), AsNumpy()),
            words=("A",),
            base=lambda: np.array([[1.01, 0.01, 0.0], [0.01, 1.01, 0.01], [0.0, 0.01, 1.01]]),
        ),
        Slot(
            "B",
            bad=one_of(nonfinite_elements(), values(DropLast(), First(), COMPLEX, "B")),
            unusual=values(AsList()),
            words=("B",),
            base=lambda: np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]),
        ),
        _matrix_slot("Q", 3, definite=False),
        _matrix_slot("R", 2, definite=True),
        Slot(
            "gamma",
            bad=values(0.0, -0.1, 1.5, NAN, "0.99", None),
            unusual=values(1, 0.5),
            words=("gamma",),
        ),
        Slot(
            "noise_std",
            bad=values(-0.1, NAN, INF, "0.1", None),
            unusual=values(0, 1),
            words=("noise_std",),
        ),
        Slot(
            "init_std",
            bad=values(-0.1, NAN, INF, "1", None),
            unusual=values(0, 2),
            words=("init_std",),
        ),
        Slot(
            "action_scale",
            bad=values(0.0, -1.0, NAN, INF, "10", None),
            unusual=values(1),
            words=("action_scale",),
        ),
    ),
)

BANDIT = Target(
    "probcalc.envs ContinuousBandit-v0",
    functools.partial(_make_env, "probcalc/ContinuousBandit-v0"),
    lambda: {},
    (
        Slot(
            "optimum",
            bad=one_of(
                nonfinite_elements(),
                values([1.5, 0.0], [0.3], [[0.3, -0.5]], "o", [0.3, "x"], Poison(1.5)),
            ),
            unusual=values([0.0, 0.0], np.array([0.1, 0.1]), (1, -1)),
            words=("optimum",),
            base=lambda: np.array([0.3, -0.5]),
        ),
        Slot(
            "curvature",
            bad=one_of(
                nonfinite_elements(), values([0.0, 1.0], [-1.0, 1.0], [1.0], "c", Poison(-2.0, 0.6))
            ),
            unusual=values([1, 1], np.array([0.5, 3.0])),
            words=("curvature",),
            base=lambda: np.array([2.0, 1.0]),
        ),
        Slot("peak", bad=values(NAN, INF, -INF, "1", None), unusual=values(0, -3), words=("peak",)),
        Slot(
            "noise_std",
            bad=values(-0.1, NAN, INF, "0.1", None),
            unusual=values(0, 1),
            words=("noise_std",),
        ),
    ),
)

POINT_MASS = Target(
    "probcalc.envs PointMass-v0",
    functools.partial(_make_env, "probcalc/PointMass-v0"),
    lambda: {},
    (
        Slot(
            "dt",
            bad=values(0.0, -0.05, NAN, INF, "0.05", None),
            unusual=values(0.1, 1),
            words=("dt",),
        ),
        Slot(
            "damping",
            bad=values(-0.5, NAN, INF, "0.5", None),
            unusual=values(0, 1),
            words=("damping",),
        ),
        Slot(
            "max_force",
            bad=values(0.0, -2.0, NAN, INF, "2", None),
            unusual=values(1),
            words=("max_force",),
        ),
    ),
)

TARGETS = [
    GAE,
    RUNNING_MEAN_STD,
    RUNNING_MEAN_STD_UPDATE,
    OBSERVATION_NORMALIZER,
    REWARD_NORMALIZER,
    MLP,
    *POLICIES,
    LOG_PROB,
    SAMPLE,
    FISHER,
    GAUSSIAN_KL,
    PPO,
    A2C,
    REINFORCE,
    NATURAL_PG,
    TRPO,
    EVALUATE,
    PREDICT,
    LEARN,
    LOAD,
    TUNED,
    TUNED_STEPS,
    LQR,
    BANDIT,
    POINT_MASS,
]
