"""Settings tuned per task, with where they come from.

Default PPO settings fail on some classic tasks (Pendulum-v1 stays near -1,100 after
millions of steps with them: vwxyzjn/cleanrl #504), so, as rl-zoo3 does, probcalc ships
settings per (algorithm, environment). ``total_steps`` is the budget they were tuned for.
The `probcalc train` command starts from these and lets flags or a TOML file override them.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["TUNED", "tuned", "tuned_steps"]

TUNED: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        # rl-zoo3, hyperparams/ppo.yml, Pendulum-v1 (rl-zoo3 adds gSDE, which probcalc does
        # not have; these are the settings of the README's benchmark against Stable-Baselines3)
        "Pendulum-v1": {
            "n_envs": 4,
            "n_steps": 1024,
            "gamma": 0.9,
            "gae_lambda": 0.95,
            "n_epochs": 10,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "clip_range": 0.2,
            "total_steps": 100_000,
            "source": "rl-zoo3 hyperparams/ppo.yml (without gSDE)",
        },
    },
    # rl-zoo3's settings for SAC, TD3 and DDPG: hyperparams/sac.yml, td3.yml and ddpg.yml
    # (their MuJoCo entries name -v3/-v4 tasks; the same settings serve -v5 here)
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
            "hidden": (64, 64),
            "total_steps": 50_000,
            "source": "rl-zoo3 hyperparams/sac.yml (without its gSDE, which probcalc lacks)",
        },
        **{
            task: {
                "learning_starts": 10_000,
                "total_steps": 1_000_000,
                "source": "rl-zoo3 hyperparams/sac.yml, MuJoCo defaults",
            }
            for task in ("HalfCheetah-v5", "Hopper-v5")
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
            "source": (
                "rl-zoo3 hyperparams/td3.yml (its one round of updates per episode is one "
                "update per step here: the same number of updates)"
            ),
        },
        "MountainCarContinuous-v0": {
            "noise_type": "ornstein-uhlenbeck",
            "noise_std": 0.5,
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
                "source": "rl-zoo3 hyperparams/td3.yml, MuJoCo defaults",
            }
            for task in ("HalfCheetah-v5", "Hopper-v5")
        },
    },
    "reinforce": {
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
    },
}


# DDPG: rl-zoo3's ddpg.yml gives DDPG the settings of td3.yml on these tasks
TUNED["ddpg"] = {
    task: {**settings, "source": settings["source"].replace("td3.yml", "ddpg.yml")}
    for task, settings in TUNED["td3"].items()
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
