"""Gymnasium vector environments for the agents: from a registered id or an instance, sync
or async, with the spaces checked before any training starts."""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Any

import gymnasium

__all__ = ["env_id", "make_vector_env", "registered"]

VECTORIZATION = ("sync", "async")


def env_id(env: str | gymnasium.Env) -> str | None:
    """The registered id of ``env`` (an id, or an instance made by gymnasium.make), or None."""
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    return None if spec is None else spec.id


def registered(env_id: str) -> gymnasium.envs.registration.EnvSpec:
    """Gymnasium's spec of ``env_id``.

    Raises:
        ValueError: the id is not registered (with Gymnasium's "did you mean", if any).
    """
    try:
        return gymnasium.spec(env_id)
    except gymnasium.error.Error as error:
        raise ValueError(f"env {env_id!r} is not a registered Gymnasium id: {error}") from None


def _time_limit(env: str | gymnasium.Env, env_kwargs: dict[str, Any]) -> int | None:
    if isinstance(env, str):
        return env_kwargs.get("max_episode_steps", registered(env).max_episode_steps)
    layer = env
    while isinstance(layer, gymnasium.Wrapper):
        if isinstance(layer, gymnasium.wrappers.TimeLimit):
            return layer._max_episode_steps
        layer = layer.env
    return None


def make_vector_env(
    env: str | gymnasium.Env,
    n_envs: int,
    vectorization: str = "sync",
    env_kwargs: dict[str, Any] | None = None,
) -> gymnasium.vector.VectorEnv:
    """``n_envs`` copies of ``env`` stepped together; Gymnasium's default next-step autoreset.

    Args:
        env: a registered id (made with ``env_kwargs``) or an environment instance (deep-copied
            into each slot).
        n_envs: the number of copies.
        vectorization: "sync" (one process) or "async" (a process per copy).
        env_kwargs: keywords for gymnasium.make when env is an id.

    Raises:
        TypeError: env is neither a str nor a gymnasium.Env, its action or observation
            space is not a Box, or env_kwargs holds keywords the environment does not take.
        ValueError: unknown vectorization, n_envs < 1, or an id that is not registered.
    """
    env_kwargs = dict(env_kwargs or {})
    if vectorization not in VECTORIZATION:
        raise ValueError(f"unknown vectorization {vectorization!r}; valid: 'sync', 'async'")
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}")
    if not isinstance(env, str | gymnasium.Env):
        raise TypeError(
            f"env must be a registered Gymnasium id or a gymnasium.Env, got {type(env).__name__}"
        )
    name = env if isinstance(env, str) else type(env.unwrapped).__name__
    if _time_limit(env, env_kwargs) is None:
        warnings.warn(
            f"{name} has no time limit (max_episode_steps): an episode that never terminates "
            f"is never cut, and its returns are taken only within each rollout",
            UserWarning,
            stacklevel=3,
        )
    if isinstance(env, str):
        try:
            envs = gymnasium.make_vec(
                env, num_envs=n_envs, vectorization_mode=vectorization, **env_kwargs
            )
        except TypeError as error:  # gymnasium re-raises the constructor's, from its frame
            raise TypeError(f"env_kwargs {env_kwargs!r} do not fit {env}: {error}") from None
    else:
        factory = functools.partial(copy.deepcopy, env)
        vector_class = (
            gymnasium.vector.SyncVectorEnv
            if vectorization == "sync"
            else gymnasium.vector.AsyncVectorEnv
        )
        envs = vector_class([factory] * n_envs)
    for space_name, space in (
        ("action", envs.single_action_space),
        ("observation", envs.single_observation_space),
    ):
        if not isinstance(space, gymnasium.spaces.Box):
            envs.close()
            raise TypeError(
                f"{name} has a {type(space).__name__} {space_name} space; the policy gradients "
                f"of probcalc.rl need a Box (continuous {space_name}s)"
            )
    return envs
