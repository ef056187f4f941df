"""Settings tuned per task, with where they come from.

Default PPO settings fail on some classic tasks (Pendulum-v1 stays near -1,100 after
millions of steps with them: vwxyzjn/cleanrl #504), so, as rl-zoo3 does, probcalc ships
settings per (algorithm, environment). ``total_steps`` is the budget they were tuned for.
The `probcalc train` command starts from these and lets flags or a TOML file override them.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["TASKS", "TUNED", "tuned", "tuned_steps"]

TASKS = ("Pendulum-v1", "MountainCarContinuous-v0", "HalfCheetah-v5", "Hopper-v5")
"""The tasks every algorithm has tuned settings for."""

_MUJOCO = ("HalfCheetah-v5", "Hopper-v5")
# rl-zoo3's "normalize: true": running normalization of observations and rewards
_NORMALIZE = {"normalize_observations": True, "normalize_rewards": True}
# Stable-Baselines3's policy: 64x64 tanh, orthogonal init, log-std 0 (probcalc's on-policy
# defaults); rl-zoo3's MuJoCo PPO entries change it to this
_MUJOCO_POLICY = {
    "log_std_init": -2.0,
    "ortho_init": False,
    "activation": "relu",
    "hidden": (256, 256),
}
# Stable-Baselines3's A2C defaults where probcalc's differ (one environment, as rl-zoo3)
_A2C_DEFAULTS = {"n_envs": 1}
# sb3-contrib's TRPO defaults where probcalc's differ (one environment, 2048 steps)
_TRPO_DEFAULTS = {"n_envs": 1, "n_steps": 2048}
_TRPO_MUJOCO = {
    **_TRPO_DEFAULTS,
    **_NORMALIZE,
    "n_envs": 2,
    "n_steps": 1024,
    "critic_batch_size": 128,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "cg_iterations": 25,
    "cg_damping": 0.1,
    "critic_epochs": 20,
    "learning_rate": 1e-3,
}

# Every entry names its source. rl-zoo3's files are hyperparams/<algorithm>.yml of
# DLR-RM/rl-baselines3-zoo (their MuJoCo entries name -v4 tasks; the same settings serve
# -v5 here), written in probcalc's names: normalize -> normalize_observations and
# normalize_rewards, net_arch -> hidden, activation_fn -> activation, n_critic_updates ->
# critic_epochs, cg_max_steps -> cg_iterations, target_kl (TRPO) -> max_kl,
# use_rms_prop -> optimizer, lin_X -> learning_rate X with lr_schedule "linear".
TUNED: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        "Pendulum-v1": {
            "n_envs": 4,
            "n_steps": 1024,
            "gamma": 0.9,
            "gae_lambda": 0.95,
            "n_epochs": 10,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "clip_range": 0.2,
            "use_sde": True,
            "sde_sample_freq": 4,
            "total_steps": 100_000,
            "source": "rl-zoo3 hyperparams/ppo.yml",
        },
        "MountainCarContinuous-v0": {
            **_NORMALIZE,
            "n_envs": 1,
            "n_steps": 8,
            # rl-zoo3 gives batch_size 256 with a rollout of 8 transitions: Stable-Baselines3
            # then trains on the whole rollout, which probcalc asks for explicitly
            "batch_size": 8,
            "gamma": 0.9999,
            "learning_rate": 7.77e-05,
            "ent_coef": 0.00429,
            "clip_range": 0.1,
            "n_epochs": 10,
            "gae_lambda": 0.9,
            "max_grad_norm": 5.0,
            "vf_coef": 0.19,
            "use_sde": True,
            "log_std_init": -3.29,
            "ortho_init": False,
            "total_steps": 20_000,
            "source": "rl-zoo3 hyperparams/ppo.yml (batch_size: the whole rollout of 8)",
        },
        "HalfCheetah-v5": {
            **_NORMALIZE,
            **_MUJOCO_POLICY,
            "n_envs": 1,
            "n_steps": 512,
            "batch_size": 64,
            "gamma": 0.98,
            "learning_rate": 2.0633e-05,
            "ent_coef": 0.000401762,
            "clip_range": 0.1,
            "n_epochs": 20,
            "gae_lambda": 0.92,
            "max_grad_norm": 0.8,
            "vf_coef": 0.58096,
            "total_steps": 1_000_000,
            "source": "rl-zoo3 hyperparams/ppo.yml (HalfCheetah-v4)",
        },
        "Hopper-v5": {
            **_NORMALIZE,
            **_MUJOCO_POLICY,
            "n_envs": 1,
            "n_steps": 512,
            "batch_size": 32,
            "gamma": 0.999,
            "learning_rate": 9.80828e-05,
            "ent_coef": 0.00229519,
            "clip_range": 0.2,
            "n_epochs": 5,
            "gae_lambda": 0.99,
            "max_grad_norm": 0.7,
            "vf_coef": 0.835671,
            "total_steps": 1_000_000,
            "source": "rl-zoo3 hyperparams/ppo.yml (Hopper-v4)",
        },
    },
    "a2c": {
        "Pendulum-v1": {
            **_NORMALIZE,
            "n_envs": 8,
            "n_steps": 8,
            "ent_coef": 0.0,
            "max_grad_norm": 0.5,
            "gae_lambda": 0.9,
            "vf_coef": 0.4,
            "gamma": 0.9,
            "optimizer": "rmsprop",
            "normalize_advantage": False,
            "learning_rate": 7e-4,
            "lr_schedule": "linear",
            "use_sde": True,
            "log_std_init": -2.0,
            "ortho_init": False,
            "total_steps": 1_000_000,
            "source": "rl-zoo3 hyperparams/a2c.yml",
        },
        "MountainCarContinuous-v0": {
            **_NORMALIZE,
            "n_envs": 4,
            "n_steps": 100,
            "ent_coef": 0.0,
            "use_sde": True,
            "sde_sample_freq": 16,
            "log_std_init": 0.0,
            "ortho_init": False,
            "total_steps": 100_000,
            "source": "rl-zoo3 hyperparams/a2c.yml",
        },
        **{
            task: {
                **_A2C_DEFAULTS,
                **_NORMALIZE,
                "total_steps": 1_000_000,
                "source": "rl-zoo3 hyperparams/a2c.yml (MuJoCo defaults: -v4 tasks)",
            }
            for task in _MUJOCO
        },
    },
    "trpo": {
        "Pendulum-v1": {
            "n_envs": 2,
            "n_steps": 1024,
            "gamma": 0.9,
            "critic_epochs": 15,
            "use_sde": True,
            "sde_sample_freq": 4,
            "total_steps": 100_000,
            "source": "rl-zoo3 hyperparams/trpo.yml",
        },
        "MountainCarContinuous-v0": {
            **_TRPO_DEFAULTS,
            **_NORMALIZE,
            "n_envs": 2,
            "use_sde": True,
            "sde_sample_freq": 4,
            "total_steps": 50_000,
            "source": "rl-zoo3 hyperparams/trpo.yml",
        },
        "HalfCheetah-v5": {
            **_TRPO_MUJOCO,
            "max_kl": 0.04,
            "total_steps": 1_000_000,
            "source": "rl-zoo3 hyperparams/trpo.yml (HalfCheetah-v4)",
        },
        "Hopper-v5": {
            **_TRPO_MUJOCO,
            "total_steps": 1_000_000,
            "source": "rl-zoo3 hyperparams/trpo.yml (Hopper-v4)",
        },
    },
    # rl-zoo3's settings for SAC, TD3 and DDPG: hyperparams/sac.yml, td3.yml and ddpg.yml
    "sac": {
        "Pendulum-v1": {
            "learning_rate": 1e-3,
            "total_steps": 20_000,
            "source": "rl-zoo3 hyperparams/sac.yml",
        },
        "MountainCarContinuous-v0": {
            "learning_rate": 3e-4,
            "buffer_size": 50_000,
            "batch_size": 512,
            "ent_coef": 0.1,
            "train_freq": 32,
            "gradient_steps": 32,
            "gamma": 0.9999,
            "tau": 0.01,
            "learning_starts": 0,
            "use_sde": True,
            "log_std_init": -3.67,
            "hidden": (64, 64),
            "total_steps": 50_000,
            "source": "rl-zoo3 hyperparams/sac.yml",
        },
        **{
            task: {
                "learning_starts": 10_000,
                "total_steps": 1_000_000,
                "source": "rl-zoo3 hyperparams/sac.yml (MuJoCo defaults: -v4 tasks)",
            }
            for task in _MUJOCO
        },
    },
    "td3": {
        "Pendulum-v1": {
            "gamma": 0.98,
            "buffer_size": 200_000,
            "learning_starts": 10_000,
            "noise_type": "normal",
            "noise_std": 0.1,
            "learning_rate": 1e-3,
            "hidden": (400, 300),
            "total_steps": 20_000,
            "source": "rl-zoo3 hyperparams/td3.yml",
        },
        "MountainCarContinuous-v0": {
            "noise_type": "ornstein-uhlenbeck",
            "noise_std": 0.5,
            "learning_rate": 1e-3,
            "batch_size": 256,
            "hidden": (400, 300),
            "total_steps": 300_000,
            "source": "rl-zoo3 hyperparams/td3.yml",
        },
        **{
            task: {
                "learning_starts": 10_000,
                "noise_type": "normal",
                "noise_std": 0.1,
                "learning_rate": 1e-3,
                "batch_size": 256,
                "hidden": (400, 300),
                "total_steps": 1_000_000,
                "source": "rl-zoo3 hyperparams/td3.yml (MuJoCo defaults: -v4 tasks)",
            }
            for task in _MUJOCO
        },
    },
}

# REINFORCE: rl-zoo3 has no entries; each is the best trial of benchmarks/sweep_reinforce.py
# (seed 0, the learning rate and gSDE swept, results in benchmarks/results/reinforce_sweep.md)
_REINFORCE_SWEEP = "probcalc's sweep, benchmarks/sweep_reinforce.py"
_REINFORCE_MUJOCO = {
    **_NORMALIZE,
    "n_envs": 8,
    "n_steps": 128,
    "gamma": 0.99,
    "total_steps": 500_000,
}
TUNED["reinforce"] = {
    "Pendulum-v1": {
        "n_envs": 16,
        "n_steps": 32,
        "gamma": 0.9,
        "learning_rate": 1e-3,
        "use_sde": True,
        "total_steps": 1_000_000,
        "source": f"{_REINFORCE_SWEEP} (no trial learned Pendulum: best -1,148)",
    },
    "MountainCarContinuous-v0": {
        "n_envs": 16,
        "n_steps": 256,
        "gamma": 0.99,
        "normalize_observations": True,
        "learning_rate": 1e-3,
        "total_steps": 100_000,
        "source": f"{_REINFORCE_SWEEP} (98.9 at 100,000 steps)",
    },
    "HalfCheetah-v5": {
        **_REINFORCE_MUJOCO,
        "learning_rate": 3e-3,
        "source": f"{_REINFORCE_SWEEP} (874 at 500,000 steps)",
    },
    "Hopper-v5": {
        **_REINFORCE_MUJOCO,
        "learning_rate": 1e-3,
        "source": f"{_REINFORCE_SWEEP} (591 at 500,000 steps)",
    },
    # probcalc's own bandit test (tests/rl/test_reinforce.py)
    "probcalc/ContinuousBandit-v0": {
        "policy": "linear",
        "n_envs": 64,
        "n_steps": 2,
        "learning_rate": 0.02,
        "lr_schedule": "linear",
        "log_std_init": math.log(0.2),
        "learn_std": False,
        "total_steps": 60_000,
        "source": "probcalc tests/rl/test_reinforce.py",
    },
}

# DDPG: rl-zoo3's ddpg.yml gives DDPG the settings of td3.yml on these tasks
TUNED["ddpg"] = {
    task: {**settings, "source": settings["source"].replace("td3.yml", "ddpg.yml")}
    for task, settings in TUNED["td3"].items()
}

# NaturalPG is TRPO without the line search: rl-zoo3 has no entries for it, so it takes
# TRPO's (not swept)
TUNED["npg"] = {
    task: {
        **settings,
        "source": settings["source"].replace("rl-zoo3", "TRPO's settings from rl-zoo3")
        + "; not swept for NaturalPG",
    }
    for task, settings in TUNED["trpo"].items()
}


def _entry(algorithm: object, env: object) -> dict[str, Any]:
    for name, value in (("algorithm", algorithm), ("env", env)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    return TUNED.get(algorithm.lower(), {}).get(env, {})


def tuned(algorithm: str, env: str) -> dict[str, Any]:
    """The tuned constructor settings of ``algorithm`` (a name of probcalc.rl.ALGORITHMS,
    any case) on ``env`` (a Gymnasium id), {} if none, without the step budget (see
    :func:`tuned_steps`) and the source.

    Raises:
        TypeError: algorithm or env is not a str.
    """
    settings = dict(_entry(algorithm, env))
    settings.pop("source", None)
    settings.pop("total_steps", None)
    return settings


def tuned_steps(algorithm: str, env: str) -> int | None:
    """The step budget the tuned settings of ``algorithm`` on ``env`` were made for, or None.

    Raises:
        TypeError: algorithm or env is not a str.
    """
    return _entry(algorithm, env).get("total_steps")
