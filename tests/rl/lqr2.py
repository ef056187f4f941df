"""A 2-state LQR (a double integrator) registered for the RL tests."""

import gymnasium
import numpy as np

LQR2 = "probcalc-test/LQR2-v0"
A = np.array([[1.0, 0.1], [0.0, 1.0]])  # a double integrator, dt = 0.1
B = np.array([[0.0], [0.1]])
LQR2_SETTINGS = {"A": A, "B": B, "gamma": 0.95, "noise_std": 0.05, "action_scale": 10.0}
if LQR2 not in gymnasium.registry:
    gymnasium.register(LQR2, entry_point="probcalc.envs.lqr:LQREnv", kwargs=LQR2_SETTINGS,
                       max_episode_steps=100)  # fmt: skip
