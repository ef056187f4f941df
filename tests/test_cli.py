"""The probcalc command: train, resume, evaluate, plot, settings from TOML and flags."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import probcalc as pc
from probcalc import cli


def test_train_evaluate_and_plot_a_run(tmp_path, capsys):
    config = tmp_path / "lqr.toml"
    config.write_text("n_envs = 4\nn_steps = 50\nlearning_rate = 1e-3\n")
    out = tmp_path / "run"
    cli.main(
        [
            "train",
            "reinforce",
            "--env",
            "probcalc/ContinuousBandit-v0",
            "--steps",
            "1200",
            "--seed",
            "3",
            "--out",
            str(out),
            "--config",
            str(config),
            "--set",
            "n_envs=2",
            "--set",
            "lr_schedule=constant",
            "--no-progress",
            "--eval-episodes",
            "2",
        ]
    )
    assert "evaluation return" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    # the tuned bandit settings, overridden by the TOML file, overridden by the flags
    tuned = pc.rl.TUNED["reinforce"]["probcalc/ContinuousBandit-v0"]
    assert run["settings"]["n_envs"] == 2 and run["settings"]["n_steps"] == 50
    assert run["settings"]["log_std_init"] == tuned["log_std_init"]
    agent = pc.rl.load(out / "model.pt")
    assert isinstance(agent, pc.rl.REINFORCE) and agent.num_timesteps == 1200
    assert agent.config.learning_rate == 1e-3 and agent.config.lr_schedule == "constant"
    assert agent.config.policy == tuned["policy"] and agent.config.seed == 3
    for name in ("progress.csv", "episodes.csv", "checkpoint.pt"):
        assert (out / name).exists(), name

    cli.main(["evaluate", str(out), "--episodes", "2"])
    mean, _ = pc.rl.evaluate(agent, n_episodes=2, seed=0)
    assert f"return {mean:.2f}" in capsys.readouterr().out

    pytest.importorskip("matplotlib")
    cli.main(["plot", str(out)])
    png = (out / "learning_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    def command(out):
        return [
            "train",
            "a2c",
            "--env",
            "probcalc/LQR-v0",
            "--steps",
            "400",
            "--seed",
            "0",
            "--out",
            str(out),
            "--set",
            "n_envs=2",
            "--set",
            "n_steps=20",
            "--checkpoint-every",
            "200",
            "--no-progress",
            "--eval-episodes",
            "1",
        ]

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
    with pytest.raises(SystemExit) as stop:
        cli.main(
            [
                "train",
                "ppo",
                "--env",
                "probcalc/LQR-v0",
                "--out",
                str(tmp_path / "stopped"),
                "--resume",
            ]
        )
    assert stop.value.code == 2 and "a run of a2c" in capsys.readouterr().err
    # the stopped run's settings and length come from its run.json: no --steps needed
    cli.main(
        [
            "train",
            "a2c",
            "--env",
            "probcalc/LQR-v0",
            "--out",
            str(tmp_path / "stopped"),
            "--resume",
            "--no-progress",
            "--eval-episodes",
            "1",
        ]
    )
    whole, resumed = (pc.rl.load(tmp_path / name / "model.pt") for name in ("whole", "stopped"))
    assert resumed.num_timesteps == 400
    for a, b in zip(whole.policy.parameters(), resumed.policy.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("algorithm", ["sac", "td3", "ddpg"])
def test_an_off_policy_run_interrupted_resumes_to_the_uninterrupted_result(
    tmp_path, monkeypatch, algorithm
):
    """SAC, TD3 and DDPG through the command: a run stopped by Ctrl-C in an update after its
    checkpoint and resumed with --resume ends with the uninterrupted run's networks, bit
    for bit; the tuned settings for Pendulum-v1 (rl-zoo3's) are the ones used."""

    def command(out, *extra):
        return [
            "train",
            algorithm,
            "--env",
            "Pendulum-v1",
            "--out",
            str(out),
            "--no-progress",
            "--eval-episodes",
            "1",
            *extra,
        ]

    settings = ["--steps", "300", "--seed", "1", "--checkpoint-every", "150"]
    small = ["--set", "hidden=[16,16]", "--set", "learning_starts=50", "--set", "batch_size=16"]
    cli.main(command(tmp_path / "whole", *settings, *small))
    cls = pc.rl.ALGORITHMS[algorithm]
    step = cls.gradient_step

    def interrupted(agent, batch):
        if agent.num_timesteps > 200:
            raise KeyboardInterrupt
        return step(agent, batch)

    monkeypatch.setattr(cls, "gradient_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(command(tmp_path / "stopped", *settings, *small))
    monkeypatch.undo()
    cli.main(command(tmp_path / "stopped", "--resume"))
    whole, resumed = (pc.rl.load(tmp_path / name / "model.pt") for name in ("whole", "stopped"))
    assert type(resumed) is cls and resumed.num_timesteps == 300
    assert resumed.config.learning_rate == pc.rl.tuned(algorithm, "Pendulum-v1")["learning_rate"]
    for name, network in whole.networks.items():
        for a, b in zip(
            network.state_dict().values(), resumed.networks[name].state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name


def test_trpo_trains_and_loads_through_the_command(tmp_path):
    out = tmp_path / "trpo"
    cli.main(
        [
            "train",
            "trpo",
            "--env",
            "Pendulum-v1",
            "--steps",
            "512",
            "--seed",
            "0",
            "--out",
            str(out),
            "--set",
            "n_envs=2",
            "--set",
            "n_steps=128",
            "--no-progress",
            "--eval-episodes",
            "1",
        ]
    )
    agent = pc.rl.load(out / "model.pt")
    assert isinstance(agent, pc.rl.TRPO) and agent.num_timesteps == 512


def _fails(capsys, argv, *words):
    """The command stops with exit status 2 and one line on stderr holding ``words``."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("probcalc: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    return err


def _train(out, *extra, algorithm="reinforce", env="probcalc/ContinuousBandit-v0"):
    return [
        "train",
        algorithm,
        "--env",
        env,
        "--steps",
        "64",
        "--out",
        str(out),
        "--no-progress",
        "--eval-episodes",
        "1",
        "--set",
        "n_envs=2",
        "--set",
        "n_steps=16",
        *extra,
    ]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The command sets torch's thread count for the process; give the next test its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_missing_step_budget_and_bad_flags_exit_with_a_message(tmp_path, capsys):
    _fails(
        capsys,
        ["train", "ppo", "--env", "probcalc/PointMass-v0", "--out", str(tmp_path)],
        "--steps",
    )
    _fails(
        capsys,
        ["train", "ppo", "--env", "Pendulum-v1", "--out", str(tmp_path), "--set", "x"],
        "key=value",
    )
    _fails(capsys, ["evaluate", str(tmp_path / "nothing")], "model.pt")
    _fails(capsys, ["plot", str(tmp_path / "nothing")], "episodes.csv")
    _fails(
        capsys,
        [
            "train",
            "ppo",
            "--env",
            "Pendulum-v1",
            "--out",
            str(tmp_path / "none"),
            "--steps",
            "10",
            "--resume",
        ],
        "checkpoint",
    )
    assert not (tmp_path / "none").exists() and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ("lerning_rate = 1e-3\n", ["lerning_rate", "did you mean 'learning_rate'", "n_epochs"]),
        ("n_envs = = 2\n", ["not valid TOML", "line 1"]),
        ("n_envs = 2.5\n", ["n_envs must be an int", "2.5"]),
        ("hidden = 64\n", ["hidden must be a tuple of ints"]),
        ("learning_rate = nan\n", ["learning_rate must be finite"]),
        ("group = false\n", ["no setting 'group'"]),
    ],
)
def test_a_bad_config_file_stops_the_start_in_one_line(tmp_path, capsys, config, words):
    path = tmp_path / "bad.toml"
    path.write_text(config)
    out = tmp_path / "runs" / "run"
    _fails(
        capsys,
        _train(out, "--config", str(path), algorithm="ppo", env="Pendulum-v1"),
        str(path),
        *words,
    )
    assert not (tmp_path / "runs").exists()


def test_a_missing_config_file_stops_the_start(tmp_path, capsys):
    _fails(
        capsys,
        _train(tmp_path / "run", "--config", str(tmp_path / "none.toml")),
        "none.toml",
        "cannot read",
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("lerning_rate=1e-3", ["lerning_rate", "did you mean 'learning_rate'", "clip_range"]),
        ("learning_rate=fast", ["learning_rate must be a float", "'fast'"]),
        ("n_envs=2.5", ["n_envs must be an int"]),
        ("n_steps=true", ["n_steps must be an int"]),
        ("hidden=64", ["hidden must be a tuple of ints"]),
        ("squash=yes", ["squash must be a bool"]),
        ("total_steps=1e4", ["total_steps must be an int"]),
        ("batch_size=100000", ["batch_size 100000", "2 x 16 = 32"]),  # checked by PPO itself
        ("gae_lambda=1.5", ["gae_lambda must lie in [0, 1]"]),
    ],
)
def test_a_bad_set_flag_stops_the_start_in_one_line(tmp_path, capsys, item, words):
    out = tmp_path / "run"
    argv = _train(out, "--set", "batch_size=16", "--set", item, algorithm="ppo", env="Pendulum-v1")
    _fails(capsys, argv, *words)
    assert not out.exists()


def test_toml_lists_become_tuples_and_ints_pass_for_floats(tmp_path):
    config = tmp_path / "net.toml"
    config.write_text("hidden = [16, 8]\nlearning_rate = 1\n[env_kwargs]\ng = 9.0\n")
    out = tmp_path / "run"
    cli.main(
        _train(out, "--config", str(config), "--set", "gamma=1", algorithm="a2c", env="Pendulum-v1")
    )
    agent = pc.rl.load(out / "model.pt")
    assert agent.config.hidden == (16, 8) and agent.config.env_kwargs == {"g": 9.0}
    assert agent.config.learning_rate == 1 and agent.config.gamma == 1
    assert agent.envs.envs[0].unwrapped.g == 9.0


@pytest.mark.parametrize("steps", [[], ["--steps", "10"]])
def test_an_unknown_environment_is_named_with_gymnasiums_hint(tmp_path, capsys, steps):
    out = tmp_path / "run"
    argv = ["train", "ppo", "--env", "Pendulm-v1", "--out", str(out), *steps]
    err = _fails(capsys, argv, "Pendulm-v1", "Did you mean", "Pendulum")
    assert "step budget" not in err
    _fails(capsys, ["train", "ppo", "--env", "Pendulum-v9", "--out", str(out), *steps], "v1")
    _fails(capsys, ["train", "ppo", "--env", "nope/Thing-v0", "--out", str(out), *steps], "nope")
    assert not out.exists()


@pytest.mark.parametrize("algorithm", sorted(pc.rl.ALGORITHMS))
def test_an_action_space_the_algorithm_cannot_use_stops_the_start(tmp_path, capsys, algorithm):
    out = tmp_path / "a" / "b"
    _fails(
        capsys,
        ["train", algorithm, "--env", "CartPole-v1", "--steps", "10", "--out", str(out)],
        "CartPole-v1",
        "Discrete",
        "Box",
    )
    assert not (tmp_path / "a").exists()


def test_a_failed_write_of_run_json_removes_the_folders_it_made(tmp_path, capsys, monkeypatch):
    def unwritable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "run.json")

    monkeypatch.setattr(cli.Path, "write_text", unwritable)
    _fails(capsys, _train(tmp_path / "new" / "run"), "Permission denied")
    assert not (tmp_path / "new").exists()


def _files(folder):
    return {
        path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()
    }


def test_a_folder_that_holds_a_run_is_refused_and_overwrite_replaces_only_its_files(
    tmp_path, capsys
):
    out = tmp_path / "run"
    cli.main(_train(out, "--seed", "1"))
    (out / "notes.txt").write_text("mine")
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"old events")
    (out / "tensorboard" / "mine.txt").write_text("mine too")
    (out / "model.pt.123.partial").write_bytes(b"half")
    before = _files(out)
    for extra in ([], ["--set", "n_envs=4"]):
        _fails(capsys, _train(out, "--seed", "2", *extra), str(out), "--resume", "--overwrite")
    # a failed start with --overwrite (bad input) keeps the old run too
    _fails(capsys, _train(out, "--overwrite", "--set", "n_envs=two"), "n_envs")
    for marker in ("run.json", "checkpoint.pt", "model.pt"):  # any one makes a run
        lone = tmp_path / f"lone_{marker}"
        lone.mkdir()
        (lone / marker).write_bytes(b"x")
        _fails(capsys, _train(lone), marker)
        assert _files(lone) == {Path(marker): b"x"}
    assert _files(out) == before  # byte for byte

    cli.main(_train(out, "--seed", "2", "--overwrite", "--steps", "96"))
    after = _files(out)
    assert after[Path("notes.txt")] == b"mine"
    assert after[Path("tensorboard/mine.txt")] == b"mine too"
    assert Path("tensorboard/events.out.tfevents.1.host") not in after
    assert Path("model.pt.123.partial") not in after
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["seed"] == 2 and run["total_steps"] == 96
    assert pc.rl.load(out / "model.pt").num_timesteps == 96
    assert len((out / "episodes.csv").read_text().splitlines()) == 1 + 96 // 2  # one-step episodes


def test_resume_and_overwrite_together_are_refused_by_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(_train(tmp_path, "--resume", "--overwrite"))
    assert stop.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_threads_are_applied_and_recorded(tmp_path):
    torch.set_num_threads(3)
    cli.main(_train(tmp_path / "one"))
    assert torch.get_num_threads() == 1  # the default
    assert json.loads((tmp_path / "one" / "run.json").read_text())["threads"] == 1
    cli.main(_train(tmp_path / "two", "--threads", "2"))
    assert torch.get_num_threads() == 2
    assert json.loads((tmp_path / "two" / "run.json").read_text())["threads"] == 2
    cli.main(["evaluate", str(tmp_path / "two"), "--episodes", "1", "--threads", "3"])
    assert torch.get_num_threads() == 3


def test_a_resumed_run_keeps_its_thread_count_unless_told(tmp_path, monkeypatch):
    out = tmp_path / "run"
    update = pc.rl.REINFORCE.update

    def interrupted(agent, batch):
        if agent.num_timesteps > 32:
            raise KeyboardInterrupt
        return update(agent, batch)

    monkeypatch.setattr(pc.rl.REINFORCE, "update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(_train(out, "--threads", "2", "--checkpoint-every", "32"))
    monkeypatch.undo()
    torch.set_num_threads(1)
    cli.main(
        [
            "train",
            "reinforce",
            "--env",
            "probcalc/ContinuousBandit-v0",
            "--out",
            str(out),
            "--resume",
            "--no-progress",
            "--eval-episodes",
            "1",
        ]
    )
    assert torch.get_num_threads() == 2
    assert pc.rl.load(out / "model.pt").num_timesteps == 64


def _run_folder(tmp_path):
    out = tmp_path / "run"
    cli.main(_train(out, "--checkpoint-every", "32"))
    return out


@pytest.mark.parametrize("damage", ["truncated", "foreign", "empty"])
def test_an_unreadable_checkpoint_or_model_is_named_in_one_line(tmp_path, capsys, damage):
    out = _run_folder(tmp_path)
    for name in ("checkpoint.pt", "model.pt"):
        path = out / name
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif damage == "foreign":
            torch.save({"weights": torch.zeros(3)}, path)
        else:
            path.write_bytes(b"")
    capsys.readouterr()
    _fails(capsys, ["evaluate", str(out)], "model.pt")
    _fails(
        capsys,
        [
            "train",
            "reinforce",
            "--env",
            "probcalc/ContinuousBandit-v0",
            "--out",
            str(out),
            "--resume",
            "--no-progress",
        ],
        "checkpoint.pt",
    )


def test_a_damaged_run_json_is_named_in_one_line(tmp_path, capsys):
    out = _run_folder(tmp_path)
    (out / "run.json").write_text("{not json")
    _fails(
        capsys,
        [
            "train",
            "reinforce",
            "--env",
            "probcalc/ContinuousBandit-v0",
            "--out",
            str(out),
            "--resume",
        ],
        "run.json",
    )
    (out / "run.json").write_text(json.dumps({"algorithm": "reinforce"}))
    _fails(
        capsys,
        [
            "train",
            "reinforce",
            "--env",
            "probcalc/ContinuousBandit-v0",
            "--out",
            str(out),
            "--resume",
        ],
        "run.json",
    )


def test_a_failed_start_in_a_real_process_prints_one_line_and_exits_2(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "probcalc",
            "train",
            "ppo",
            "--env",
            "CartPole-v1",
            "--steps",
            "10",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("probcalc: error: ") and result.stderr.count("\n") == 1
    assert "Box" in result.stderr and not out.exists()


def test_python_dash_m_probcalc_runs_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "probcalc", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--env" in result.stdout and "--resume" in result.stdout


def test_tuned_settings_construct_an_agent_and_carry_their_budget_apart():
    settings = pc.rl.tuned("PPO", "Pendulum-v1")
    assert "total_steps" not in settings and "source" not in settings
    assert pc.rl.tuned_steps("ppo", "Pendulum-v1") == 100_000
    agent = pc.rl.PPO("Pendulum-v1", seed=0, **settings)
    assert (agent.n_envs, agent.n_steps, agent.config.gamma) == (4, 1024, 0.9)
    assert pc.rl.tuned("ppo", "no-such-env") == {} and pc.rl.tuned_steps("a2c", "x") is None


def test_a_failed_start_under_torchrun_stops_every_rank_alike(tmp_path):
    """Two ranks join the group and fail to build the agent (a Discrete action space): each
    says so in one line and exits with status 2 (no traceback of probcalc's; torchrun adds
    its own summary), none waits on the other, and no run folder is made."""
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "probcalc",
            "train",
            "ppo",
            "--env",
            "CartPole-v1",
            "--steps",
            "10",
            "--out",
            str(out),
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("probcalc: error:")]
    assert len(lines) == 2 and all("Discrete" in line for line in lines), result.stderr
    assert result.stderr.count("exitcode  : 2") == 2, result.stderr  # torchrun's summary
    assert "cli.py" not in result.stderr and "probcalc/rl/" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("env", pc.rl.TASKS)
@pytest.mark.parametrize("algorithm", sorted(pc.rl.ALGORITHMS))
def test_every_algorithm_trains_on_every_task_without_steps(tmp_path, monkeypatch, algorithm, env):
    """`probcalc train ALGO --env ID` without --steps takes the tuned budget and settings
    (run.json records them, equal to TUNED's entry) and trains; learn() is cut here to the
    first round past 64 steps (up to 4,096), the budget being up to a million."""
    real_learn = pc.rl.Agent.learn
    budgets = []

    def short_learn(agent, total_steps, **options):
        budgets.append(total_steps)
        options.pop("checkpoint_every")
        return real_learn(agent, 64, **options)

    monkeypatch.setattr(pc.rl.Agent, "learn", short_learn)
    out = tmp_path / "run"
    command = ["train", algorithm, "--env", env, "--out", str(out), "--no-progress"]
    cli.main([*command, "--seed", "0", "--eval-episodes", "1"])
    assert budgets == [pc.rl.tuned_steps(algorithm, env)]
    record = json.loads((out / "run.json").read_text())
    assert record["total_steps"] == budgets[0]
    tuned = pc.rl.tuned(algorithm, env)
    assert {key: record["settings"][key] for key in tuned} == {
        key: list(value) if isinstance(value, tuple) else value for key, value in tuned.items()
    }
    assert pc.rl.TUNED[algorithm][env]["source"]
