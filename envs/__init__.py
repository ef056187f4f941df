"""Gymnasium environments of probcalc, installed as ``probcalc.envs``.

This package imports only gymnasium and numpy/scipy, nothing of probcalc. The environments are
registered by string entry point when ``probcalc`` is imported, so a module here is loaded
only when ``gymnasium.make("probcalc/...")`` asks for it.

- ``probcalc/LQR-v0``: the linear-quadratic regulator, with ``optimal_gain()`` and
  ``policy_cost(K)`` giving the exact answers.
- ``probcalc/ContinuousBandit-v0``: one-step episodes on a quadratic reward surface, with
  the expected reward of a Gaussian policy and its gradient in closed form.
- ``probcalc/PointMass-v0``: a 2-D point pushed by a force to a goal, dense reward.
"""

import gymnasium

_ENVIRONMENTS = {
    "probcalc/LQR-v0": ("probcalc.envs.lqr:LQREnv", 200),
    "probcalc/ContinuousBandit-v0": ("probcalc.envs.bandit:ContinuousBanditEnv", 1),
    "probcalc/PointMass-v0": ("probcalc.envs.point_mass:PointMassEnv", 200),
}


def register_environments() -> None:
    """Register every probcalc environment with Gymnasium (idempotent)."""
    for env_id, (entry_point, max_episode_steps) in _ENVIRONMENTS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)


register_environments()
