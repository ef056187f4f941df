"""Data-parallel policy training on two processes (torch.distributed, gloo, a file store):
the ranks' updates are the single-process updates over the union of their rollouts, every
rank holds the same parameters, failures stop every rank, and a killed torchrun run
resumes from its checkpoint."""

import datetime
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lqr2 import LQR2, PPO_LQR2, learned_gain, start_at_zero_control
from lqr2 import LQR2_SETTINGS as SETTINGS
from probcalc.envs.lqr import LQREnv

import probcalc as pc
from probcalc.rl.normalization import RunningMeanStd

TIMEOUT = datetime.timedelta(seconds=60)  # no test waits on a dead partner for longer

# one minibatch holding the whole rollout (n_envs x n_steps = 80 transitions per rank, fewer
# after the autoreset steps), float64 networks, no gradient clipping: one update's gradient
# is comparable with the union's
EXACT = {
    "PPO": {"n_epochs": 1, "batch_size": 80, "max_grad_norm": None},
    "A2C": {"max_grad_norm": None, "normalize_advantage": True},
    "NaturalPG": {"critic_batch_size": 10_000, "critic_epochs": 2},
}
COMMON = {
    "hidden": (8,),
    "n_envs": 2,
    "n_steps": 40,
    "dtype": torch.float64,
    "normalize_observations": True,
    "seed": 3,
}


def _trainable(agent):
    return torch.cat(
        [p.detach().reshape(-1) for net in agent.networks.values() for p in net.parameters()]
    )


def _gradients(agent):
    return torch.cat(
        [p.grad.reshape(-1) for group in agent.optimizer.param_groups for p in group["params"]]
    )


class _NaNOnRankOne(gymnasium.Env):
    """A one-dimensional task whose reward turns NaN at the 5th step on rank 1."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        bad = dist.get_rank() == 1 and self.t == 5
        return np.zeros(1, np.float32), math.nan if bad else 0.0, False, self.t >= 10, {}


def _uneven(rank):
    """LQR2 with episodes of 3 steps on rank 0 and 40 on rank 1: the autoreset steps after
    them leave the ranks different numbers of transitions (and minibatch slices)."""
    return gymnasium.make(LQR2, max_episode_steps=3 if rank == 0 else 40)


def _worker(rank, world, store, out, lqr_steps):
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world, timeout=TIMEOUT
    )
    torch.set_num_threads(1)
    results = {}
    try:
        # one update from the same start: its gradient (PPO) or its result (A2C, NaturalPG);
        # the ranks hold different numbers of transitions, so the union's mean is not the
        # mean of the ranks' means
        for name, options in EXACT.items():
            agent = pc.rl.ALGORITHMS[name.lower() if name != "NaturalPG" else "npg"](
                _uneven(rank), **COMMON, **options
            )
            start = {
                key: {k: v.clone() for k, v in net.state_dict().items()}
                for key, net in agent.networks.items()
            }
            flat = agent.flatten(agent.collect())
            agent.optimize(flat)
            results[name] = {
                "start": start,
                "flat": flat,
                "after": _trainable(agent),
                "grad": _gradients(agent),
                "obs_stats": agent.obs_normalizer.state_dict(),
            }
        # REINFORCE: the leave-one-out baseline over the environments of both ranks
        agent = pc.rl.REINFORCE(_uneven(rank), **COMMON)
        start = {
            key: {k: v.clone() for k, v in net.state_dict().items()}
            for key, net in agent.networks.items()
        }
        batch = agent.collect()
        agent.update(batch)
        results["REINFORCE"] = {"start": start, "batch": batch, "grad": _gradients(agent)}
        # misuse: a rank that enters learn() differently, a callback failing on one rank,
        # and save() called by rank 0 alone (as with DistributedDataParallel)
        agent = pc.rl.PPO(LQR2, policy="linear", n_envs=2, n_steps=32, seed=1)
        try:
            agent.learn(total_steps=128 * (1 + rank))
        except ValueError as error:
            results["mismatch"] = str(error)

        def fails_on_rank_one(agent, row):
            if dist.get_rank() == 1:
                raise KeyError("rank 1's callback failed")

        try:
            agent.learn(total_steps=256, callback=fails_on_rank_one)
        except (KeyError, RuntimeError) as error:
            results["callback"] = f"{type(error).__name__}: {error}"
        if rank == 0:
            agent.save(f"{out}/alone.pt")
        dist.barrier()  # reached by both: save() alone made no collective call
        # shared normalization statistics: two rounds of rank-local data
        stats = RunningMeanStd((3,), shared=True)
        generator = np.random.default_rng(rank)
        data = []
        for size in (7 + rank, 50 + 13 * rank):
            chunk = generator.normal(rank, 1 + rank, size=(size, 3))
            stats.update(chunk[: size // 2])
            stats.update(chunk[size // 2 :])
            stats.synchronize(None)
            data.append(chunk)
        results["stats"] = (stats.mean, stats.var, stats.count, data)
        # every algorithm trains data-parallel: the same parameters on every rank
        # (episodes of unequal lengths: PPO's minibatches of 20 give rank 0 3 slices of
        # its ~48 transitions and rank 1 4 of its ~62, so rank 0 adds an empty one)
        trained = {}
        for name in ("reinforce", "a2c", "ppo", "trpo"):
            options = {"batch_size": 20} if name == "ppo" else {}
            agent = pc.rl.ALGORITHMS[name](
                _uneven(rank),
                policy="linear",
                n_envs=2,
                n_steps=32,
                seed=1,
                normalize_observations=True,
                normalize_rewards=True,
                **options,
            )
            before = _trainable(agent).clone()
            policy_before = torch.cat([p.detach().reshape(-1) for p in agent.policy.parameters()])
            episodes = []
            agent.learn(
                total_steps=4 * 2 * 32 * world,
                callback=lambda agent, row, kept=episodes: kept.extend(agent.finished_episodes),
            )
            policy_after = torch.cat([p.detach().reshape(-1) for p in agent.policy.parameters()])
            trained[name] = {
                "parameters": _trainable(agent),
                "moved": not torch.equal(before, _trainable(agent)),
                "policy_moved": not torch.equal(policy_before, policy_after),
                "obs_stats": agent.obs_normalizer.state_dict(),
                "reward_stats": agent.reward_normalizer.stats.state_dict(),
                "steps": agent.num_timesteps,
                "episodes": episodes,
                "recent": list(agent.recent_returns),
                "obs": agent._obs.copy(),
            }
        results["trained"] = trained
        # a run stopped after a checkpoint (to resume in one process, in the test), its model
        # loaded on every rank and trained on, and async environments under the group
        agent = pc.rl.PPO(
            LQR2, policy="linear", n_envs=2, n_steps=32, seed=2, normalize_observations=True
        )
        agent.learn(
            total_steps=512,
            log_dir=f"{out}/run",
            checkpoint_every=256,
            callback=lambda agent, row: agent.num_timesteps < 256,
        )
        if rank == 0:
            agent.save(f"{out}/run/model.pt")
        dist.barrier()
        loaded = pc.rl.load(f"{out}/run/model.pt")
        loaded.learn(total_steps=256)
        asynchronous = pc.rl.PPO(
            LQR2, policy="linear", n_envs=2, n_steps=32, seed=2, vectorization="async"
        )
        asynchronous.learn(total_steps=256)
        asynchronous.envs.close()
        results["continued"] = (loaded.num_timesteps, _trainable(loaded), _trainable(asynchronous))
        # a rank whose environment fails stops both ranks, each with its own message
        try:
            pc.rl.PPO(_NaNOnRankOne(), n_envs=1, n_steps=8, batch_size=8, seed=0).collect()
        except Exception as error:
            results["failure"] = f"{type(error).__name__}: {error}"
        if lqr_steps:
            env = LQREnv(**SETTINGS)
            # the single-process test's settings with its 8 environments split over two
            # ranks; minibatches of 128 on each rank (256 in the union: half as many steps)
            agent = pc.rl.PPO(LQR2, **{**PPO_LQR2, "n_envs": 4}, seed=0)
            start_at_zero_control(agent)
            agent.learn(total_steps=lqr_steps)
            gain = learned_gain(agent, env)
            results["lqr"] = (gain, _trainable(agent))
        results["checkpoint"] = Path(f"{out}/run/checkpoint.pt").read_bytes()
        torch.save(results, f"{out}/rank{rank}.pt")
        dist.barrier()  # leave together: gloo aborts a process torn down while a peer works
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, str(folder / "store"), str(folder), 200_000), nprocs=2, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _single_process(name):
    """The algorithm in one process from the ranks' start, fed the union of their rollouts
    (PPO: the environments of both ranks, so that one minibatch holds the union)."""
    algorithm = {"PPO": pc.rl.PPO, "A2C": pc.rl.A2C, "NaturalPG": pc.rl.NaturalPG}[name]
    union = {"n_envs": 4, "batch_size": 160} if name == "PPO" else {}
    return algorithm(LQR2, **{**COMMON, **EXACT[name], **union}, group=False)


def _union(ranks, name):
    flats = [r[name]["flat"] for r in ranks]
    return {key: torch.cat([flat[key] for flat in flats]) for key in flats[0]}


def test_ppo_gradient_across_ranks_equals_the_union_gradient(ranks):
    """The summed gradient of one PPO minibatch step equals the single-process gradient of
    the same loss over the union of the two ranks' transitions (float64, to 1e-6 relative;
    measured about 1e-15)."""
    single = _single_process("PPO")
    for key, net in single.networks.items():
        net.load_state_dict(ranks[0]["PPO"]["start"][key])
    union = _union(ranks, "PPO")
    counts = [r["PPO"]["flat"]["obs"].shape[0] for r in ranks]
    assert 0 < counts[0] < counts[1]  # unequal shares: the union's mean, not the ranks' mean
    single.optimize(union)
    expected = _gradients(single)
    assert expected.norm() > 0
    for r in ranks:
        torch.testing.assert_close(
            r["PPO"]["grad"], expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max())
        )
    # the two ranks saw different transitions (their own seeds), and hold the same gradient
    assert not torch.equal(ranks[0]["PPO"]["flat"]["actions"], ranks[1]["PPO"]["flat"]["actions"])
    assert torch.equal(ranks[0]["PPO"]["grad"], ranks[1]["PPO"]["grad"])


def test_reinforce_gradient_uses_every_ranks_environments_as_baseline(ranks):
    """REINFORCE's summed gradient equals one process's on the union rollout (the ranks'
    environments side by side), whose leave-one-out baseline spans all four environments."""
    single = pc.rl.REINFORCE(LQR2, **{**COMMON, "n_envs": 4}, group=False)
    for key, net in single.networks.items():
        net.load_state_dict(ranks[0]["REINFORCE"]["start"][key])
    batches = [r["REINFORCE"]["batch"] for r in ranks]
    single.update(
        pc.rl.Rollout(*(torch.cat(fields, dim=1) for fields in zip(*batches, strict=True)))
    )
    expected = _gradients(single)
    assert expected.norm() > 0
    for r in ranks:
        torch.testing.assert_close(r["REINFORCE"]["grad"], expected, rtol=1e-9, atol=1e-12)


def test_misuse_raises_on_every_rank_instead_of_hanging(ranks):
    for r in ranks:  # rank 1 asked for another run length than rank 0
        assert "rank(s) [1] enter learn() with another agent or call" in r["mismatch"]
    assert ranks[1]["callback"] == 'KeyError: "rank 1\'s callback failed"'
    assert ranks[0]["callback"] == "RuntimeError: rank 1 of the process group failed; see its error"


@pytest.mark.parametrize("name", ["A2C", "NaturalPG"])
def test_one_update_across_ranks_equals_the_union_update(ranks, name):
    """A2C's step (advantages standardized over the union) and NaturalPG's step (policy
    gradient, Fisher-vector products in CG, the KL-normalized step, then the critic's
    regression) from the same start end where one process ends on the union's transitions."""
    single = _single_process(name)
    for key, net in single.networks.items():
        net.load_state_dict(ranks[0][name]["start"][key])
    single.optimize(_union(ranks, name))
    expected = _trainable(single)
    start = torch.cat(
        [t.reshape(-1) for net in ranks[0][name]["start"].values() for t in net.values()]
    )
    assert (expected - start).abs().max() > 1e-4  # the update moved the parameters
    for r in ranks:
        torch.testing.assert_close(r[name]["after"], expected, rtol=1e-9, atol=1e-12)
    assert torch.equal(ranks[0][name]["after"], ranks[1][name]["after"])


def test_merged_normalization_statistics_equal_numpy_on_all_the_data(ranks):
    everything = np.concatenate([chunk for r in ranks for chunk in r["stats"][3]])
    for r in ranks:
        mean, var, count, _ = r["stats"]
        assert count == len(everything)
        np.testing.assert_allclose(mean, everything.mean(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(var, everything.var(axis=0), rtol=1e-12, atol=0)
    assert np.array_equal(ranks[0]["stats"][0], ranks[1]["stats"][0])


def test_every_algorithm_keeps_the_ranks_parameters_bit_identical(ranks):
    """Four updates on ranks whose episodes have different lengths (3 and 40 steps): the
    parameters moved and are bit-identical on both ranks, and so are the merged normalizer
    statistics and the episodes gathered from both ranks."""
    for name in ("reinforce", "a2c", "ppo", "trpo"):
        first, second = (r["trained"][name] for r in ranks)
        assert first["moved"] and first["policy_moved"], name
        assert torch.equal(first["parameters"], second["parameters"]), name
        for statistics in ("obs_stats", "reward_stats"):
            for a, b in zip(first[statistics].values(), second[statistics].values(), strict=True):
                assert np.array_equal(a, b), (name, statistics)
        # every observation of both ranks: 2 ranks x 2 envs x (the reset + 128 steps)
        assert first["obs_stats"]["count"] == 2 * 2 * 129, name
        assert first["steps"] == second["steps"] == 4 * 2 * 32 * 2, name  # both ranks' steps
        # the episodes of both ranks (3 and 40 steps long), alike on both
        assert first["episodes"] == second["episodes"], name
        assert {length for _, _, length in first["episodes"]} == {3, 40}, name
        assert first["recent"] == second["recent"], name
        assert not np.array_equal(first["obs"], second["obs"]), name  # each rank its own envs


def test_a_model_loaded_on_every_rank_trains_on_alike_and_async_envs_work(ranks):
    first, second = (r["continued"] for r in ranks)
    assert first[0] == second[0] == 256 + 256
    assert torch.equal(first[1], second[1])
    assert torch.equal(first[2], second[2])


def test_a_two_process_checkpoint_resumes_in_one_process_with_a_warning(ranks, tmp_path):
    """Another number of processes cannot take the ranks' environments: they are reset with
    fresh seeds, with a warning, and the run ends at its length."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(ranks[0]["checkpoint"])
    agent = pc.rl.PPO(
        LQR2,
        policy="linear",
        n_envs=2,
        n_steps=32,
        seed=2,
        normalize_observations=True,
        group=False,
    )
    with pytest.warns(UserWarning, match="written by 2 processes, resumed by 1"):
        agent.learn(total_steps=512, resume_from=folder / "checkpoint.pt")
    assert agent.num_timesteps == 512
    assert torch.isfinite(_trainable(agent)).all()
    # the merged statistics of both ranks came with it: 2 ranks x 2 envs x (reset + 64
    # steps); then this process's 2 envs x 128 steps (the fallback reset is not counted)
    assert agent.obs_normalizer.stats.count == 2 * 2 * 65 + 2 * 128


def test_a_failing_rank_stops_both_with_its_error(ranks):
    assert ranks[1]["failure"].startswith("NonFiniteError") and "rank 1" in ranks[1]["failure"]
    assert ranks[0]["failure"] == "RuntimeError: rank 1 of the process group failed; see its error"


def test_data_parallel_ppo_reaches_the_single_process_lqr_tolerance(ranks):
    """Two ranks of 4 environments (the single-process test's 8 split in two) and union
    minibatches of 256, 200,000 steps in all: within 5% of the optimal cost, the gain within
    10%, as in the single-process test; both ranks end with the same parameters."""
    env = LQREnv(**SETTINGS)
    optimal = env.optimal_gain()
    gain, parameters = ranks[0]["lqr"]
    ratio = env.policy_cost(gain) / env.policy_cost(optimal)
    gain_error = np.linalg.norm(gain - optimal) / np.linalg.norm(optimal)
    print(f"data-parallel PPO: cost / optimal cost = {ratio:.4f}, gain error {gain_error:.3f}")
    assert ratio < 1.05
    assert gain_error < 0.10
    assert torch.equal(parameters, ranks[1]["lqr"][1])


def _torchrun(out, *extra):
    command = [
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
        "Pendulum-v1",
        "--steps",
        "40960",
        "--seed",
        "4",
        "--out",
        str(out),
        "--no-tuned",
        "--no-progress",
        "--set",
        "n_envs=2",
        "--set",
        "n_steps=256",
        "--set",
        "n_epochs=4",
        "--set",
        "normalize_observations=true",
        "--set",
        "normalize_rewards=true",
        "--checkpoint-every",
        "4096",
        "--eval-episodes",
        "2",
        "--timeout",
        "60",
        *extra,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _descendants(pid):
    """The processes below ``pid`` (torchrun starts its workers in sessions of their own, so
    they are not in its process group), from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def _finish(process):
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def _csv_without_times(path):
    rows = path.read_text().splitlines()
    header = rows[0].split(",")
    keep = [i for i, name in enumerate(header) if name not in ("time", "steps_per_second")]
    return [[row.split(",")[i] for i in keep] for row in rows]


def test_torchrun_run_killed_mid_training_resumes_to_the_uninterrupted_result(tmp_path):
    """`torchrun -m probcalc train` on 2 processes, killed (SIGKILL to every process) after
    its first checkpoint and resumed with --resume, ends with the parameters, normalization
    statistics and logs of the run that was never stopped, bit for bit."""
    whole = _torchrun(tmp_path / "whole")
    _finish(whole)
    killed = _torchrun(tmp_path / "killed")
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in [killed.pid, *_descendants(killed.pid)]:  # torchrun and its workers
        os.kill(pid, signal.SIGKILL)
    killed.communicate(timeout=60)
    assert checkpoint.exists()
    assert not (tmp_path / "killed" / "model.pt").exists(), "the run ended before the kill"
    stopped_at = torch.load(checkpoint, weights_only=True)["num_timesteps"]
    assert 0 < stopped_at < 40960
    output = _finish(_torchrun(tmp_path / "killed", "--resume"))
    assert "evaluation return" in output
    assert output.count("evaluation return") == 1  # rank 0 alone reports
    whole_model = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    resumed_model = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    assert resumed_model["num_timesteps"] == whole_model["num_timesteps"] == 40960
    for net in whole_model["networks"]:
        for key, value in whole_model["networks"][net].items():
            assert torch.equal(resumed_model["networks"][net][key], value), (net, key)
    for a, b in zip(
        whole_model["obs_normalizer"].values(),
        resumed_model["obs_normalizer"].values(),
        strict=True,
    ):
        assert a == b if isinstance(a, int) else torch.equal(a, b)
    for name in ("progress.csv", "episodes.csv"):
        assert _csv_without_times(tmp_path / "killed" / name) == _csv_without_times(
            tmp_path / "whole" / name
        )
