"""The probcalc command: train, resume, evaluate, plot, settings from TOML and flags."""

import json
import subprocess
import sys

import pytest
import torch

import probcalc as pc
from probcalc import cli


def test_train_evaluate_and_plot_a_run(tmp_path, capsys):
    config = tmp_path / "lqr.toml"
    config.write_text("n_envs = 4\nn_steps = 50\nlearning_rate = 1e-3\n")
    out = tmp_path / "run"
    cli.main(["train", "reinforce", "--env", "probcalc/ContinuousBandit-v0", "--steps", "1200",
              "--seed", "3", "--out", str(out), "--config", str(config), "--set", "n_envs=2",
              "--set", "lr_schedule=constant", "--no-progress",
              "--eval-episodes", "2"])  # fmt: skip
    assert "evaluation return" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    # the tuned bandit settings, overridden by the TOML file, overridden by the flags
    tuned = pc.rl.TUNED["reinforce"]["probcalc/ContinuousBandit-v0"]
    assert run["settings"]["n_envs"] == 2 and run["settings"]["n_steps"] == 50
    assert run["settings"]["log_std_init"] == tuned["log_std_init"]
    agent = pc.rl.load(out / "model.pt")
    assert isinstance(agent, pc.rl.REINFORCE) and agent.num_timesteps == 1200
    assert agent.config["learning_rate"] == 1e-3 and agent.config["lr_schedule"] == "constant"
    assert agent.config["policy"] == tuned["policy"] and agent.seed == 3
    for name in ("progress.csv", "episodes.csv", "checkpoint.pt"):
        assert (out / name).exists(), name

    cli.main(["evaluate", str(out), "--episodes", "2"])
    mean, _ = pc.rl.evaluate(agent, n_episodes=2, seed=0)
    assert f"return {mean:.2f}" in capsys.readouterr().out

    pytest.importorskip("matplotlib")
    cli.main(["plot", str(out)])
    png = (out / "learning_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    def command(out):
        return ["train", "a2c", "--env", "probcalc/LQR-v0", "--steps", "400", "--seed", "0",
                "--out", str(out), "--set", "n_envs=2", "--set", "n_steps=20",
                "--checkpoint-every", "200", "--no-progress", "--eval-episodes", "1"]  # fmt: skip

    cli.main(command(tmp_path / "whole"))
    update = pc.rl.A2C.update

    def interrupted(agent, batch):  # Ctrl-C during the update after step 300
        if agent.num_timesteps > 300:
            raise KeyboardInterrupt
        return update(agent, batch)

    monkeypatch.setattr(pc.rl.A2C, "update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(command(tmp_path / "stopped"))
    monkeypatch.undo()
    assert pc.rl.load(tmp_path / "stopped" / "checkpoint.pt").num_timesteps == 200
    with pytest.raises(SystemExit, match="a run of a2c"):
        cli.main(["train", "ppo", "--env", "probcalc/LQR-v0", "--out", str(tmp_path / "stopped"),
                  "--resume"])  # fmt: skip
    # the stopped run's settings and length come from its run.json: no --steps needed
    cli.main(["train", "a2c", "--env", "probcalc/LQR-v0", "--out", str(tmp_path / "stopped"),
              "--resume", "--no-progress", "--eval-episodes", "1"])  # fmt: skip
    whole, resumed = (pc.rl.load(tmp_path / name / "model.pt") for name in ("whole", "stopped"))
    assert resumed.num_timesteps == 400
    for a, b in zip(whole.policy.parameters(), resumed.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_trpo_trains_and_loads_through_the_command(tmp_path):
    out = tmp_path / "trpo"
    cli.main(["train", "trpo", "--env", "Pendulum-v1", "--steps", "512", "--seed", "0",
              "--out", str(out), "--set", "n_envs=2", "--set", "n_steps=128",
              "--no-progress", "--eval-episodes", "1"])  # fmt: skip
    agent = pc.rl.load(out / "model.pt")
    assert isinstance(agent, pc.rl.TRPO) and agent.num_timesteps == 512


def test_missing_step_budget_and_bad_flags_exit_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="--steps"):
        cli.main(["train", "ppo", "--env", "probcalc/PointMass-v0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="key=value"):
        cli.main(["train", "ppo", "--env", "Pendulum-v1", "--out", str(tmp_path), "--set", "x"])
    with pytest.raises(SystemExit, match=r"model\.pt"):
        cli.main(["evaluate", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit, match=r"episodes\.csv"):
        cli.main(["plot", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit, match="checkpoint"):
        cli.main(["train", "ppo", "--env", "Pendulum-v1", "--out", str(tmp_path / "none"),
                  "--steps", "10", "--resume"])  # fmt: skip


def test_python_dash_m_probcalc_runs_the_command():
    result = subprocess.run([sys.executable, "-m", "probcalc", "train", "--help"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert "--env" in result.stdout and "--resume" in result.stdout


def test_tuned_settings_construct_an_agent_and_carry_their_budget_apart():
    settings = pc.rl.tuned("PPO", "Pendulum-v1")
    assert "total_steps" not in settings and "source" not in settings
    assert pc.rl.tuned_steps("ppo", "Pendulum-v1") == 100_000
    agent = pc.rl.PPO("Pendulum-v1", seed=0, **settings)
    assert (agent.n_envs, agent.n_steps, agent.gamma) == (4, 1024, 0.9)
    assert pc.rl.tuned("ppo", "no-such-env") == {} and pc.rl.tuned_steps("a2c", "x") is None
