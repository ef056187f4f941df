"""Agent files and checkpoints: environments saved as data and resumed bit for bit, nothing
unpickled unless asked, damaged and foreign files named, writes that a crash cannot break."""

import io
import math
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import warnings
import zipfile

import gymnasium
import numpy as np
import pytest
import torch

import probcalc as pc
from probcalc.rl import persistence

SMALL_PPO = {
    "n_envs": 2,
    "n_steps": 64,
    "batch_size": 32,
    "n_epochs": 2,
    "seed": 0,
    "normalize_observations": True,
    "normalize_rewards": True,
}
SMALL_A2C = {
    "n_envs": 2,
    "n_steps": 8,
    "seed": 0,
    "normalize_observations": True,
    "normalize_rewards": True,
}


def _parameters(agent):
    return [p.detach().clone() for net in agent.networks.values() for p in net.parameters()]


def _same_parameters(first, second):
    pairs = list(zip(_parameters(first), _parameters(second), strict=True))
    return all(torch.equal(a, b) for a, b in pairs)


def _stop_at(step):
    return lambda agent, row: row["step"] < step


# ---------------------------------------------------------------------------- exact resume
@pytest.mark.parametrize("env", ["InvertedPendulum-v5", "probcalc/PointMass-v0"])
def test_a_resumed_run_ends_bit_for_bit_and_silently_where_the_uninterrupted_run_ends(
    tmp_path, env
):
    """PPO stopped two updates after its checkpoint at 512 steps (their work lost, as in a
    crash) and resumed: the parameters and statistics equal those of the run that never
    stopped, bit for bit, and nothing warns. InvertedPendulum's episodes end every few
    dozen steps, so the MuJoCo state, the np_random streams of the resets and the
    autoreset flags all matter. Pendulum-v1: tests/rl/test_training.py."""
    whole = pc.rl.PPO(env, **SMALL_PPO).learn(1_024)
    pc.rl.PPO(env, **SMALL_PPO).learn(
        1_024, log_dir=tmp_path, checkpoint_every=512, callback=_stop_at(768)
    )
    resumed = pc.rl.PPO(env, **SMALL_PPO)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed.learn(1_024, log_dir=tmp_path, resume_from=tmp_path / "checkpoint.pt")
    assert resumed.num_timesteps == whole.num_timesteps == 1_024
    assert _same_parameters(whole, resumed)
    np.testing.assert_array_equal(resumed.obs_normalizer.stats.var, whole.obs_normalizer.stats.var)
    np.testing.assert_array_equal(resumed._obs, whole._obs)
    if env.startswith("Inverted"):
        assert len(whole.recent_returns) > 20  # many episodes ended: resets were exercised

    # the same resume with the environments dropped from the file (reset instead) ends
    # elsewhere: the comparison above sees the environments' state
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state["ranks"][0]["environments"] = None
    torch.save(state, tmp_path / "without.pt")
    reset = pc.rl.PPO(env, **SMALL_PPO)
    with pytest.warns(UserWarning, match="environments are reset"):
        reset.learn(1_024, resume_from=tmp_path / "without.pt")
    assert not _same_parameters(whole, reset)


def _vector(env_id, seed):
    envs = gymnasium.make_vec(env_id, num_envs=2, vectorization_mode="sync")
    envs.reset(seed=seed)
    return envs


def _steps(envs, actions):
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = envs.step(action)
        out.append((obs.copy(), reward.copy(), terminated.copy(), truncated.copy(), info))
    return out


@pytest.mark.parametrize("at_an_end", [False, True], ids=["mid-episode", "after-an-end"])
@pytest.mark.parametrize("env_id", ["Ant-v5", "Hopper-v5", "Pendulum-v1", "probcalc/LQR-v0"])
def test_environment_state_is_plain_data_and_gives_the_same_next_steps(env_id, at_an_end):
    """The state of two environments after 40 random steps (or at the first step that ends
    an episode, so that the next step is an autoreset) goes through torch.save and
    torch.load(weights_only=True) into environments reset with another seed: the next 80
    steps (observations, rewards, ends, infos, resets) and the simulation time are those of
    the original, bit for bit. Ant reads the torso position that the last mj_step left (a
    derived array); Hopper's contacts need the solver's warm start."""
    original = _vector(env_id, seed=0)
    rng = np.random.default_rng(1)
    low, high = original.action_space.low, original.action_space.high
    shape = original.action_space.shape
    for step in range(2_000):
        _, _, terminated, truncated, _ = original.step(
            rng.uniform(low, high, shape).astype(np.float32)
        )
        if np.any(terminated | truncated) if at_an_end else step == 39:
            break
    assert np.any(original._autoreset_envs) == at_an_end
    buffer = io.BytesIO()
    torch.save(persistence._capture_vector_env(original), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    restored = _vector(env_id, seed=99)
    assert persistence._vector_misfit(restored, saved) is None
    persistence._restore_vector_env(restored, saved)
    if env_id in ("Ant-v5", "Hopper-v5"):  # the simulation's clock too
        times = [[env.unwrapped.data.time for env in envs.envs] for envs in (original, restored)]
        assert times[0] == times[1] and max(times[0]) > 0
    actions = rng.uniform(low, high, (80, *shape)).astype(np.float32)
    expected, got = _steps(original, actions), _steps(restored, actions)
    for a, b in zip(expected, got, strict=True):
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        assert a[4].keys() == b[4].keys()
        for key in a[4]:
            np.testing.assert_array_equal(a[4][key], b[4][key])


def _roundtrip(value):
    buffer = io.BytesIO()
    torch.save(persistence.to_data(value, "value"), buffer)
    buffer.seek(0)
    return persistence.from_data(torch.load(buffer, weights_only=True))


def test_values_round_trip_as_plain_data_with_their_types():
    """What environments hold comes back equal and of the same type through a weights-only
    load: Python ints past 64 bits (PCG64's state), Generators of other bit generators
    (MT19937's state holds an array), numpy scalars and arrays of any dtype torch stores,
    0-d, strided or big-endian, nested tuples and lists."""
    pcg, mt = np.random.default_rng(3), np.random.Generator(np.random.MT19937(4))
    pcg.normal(size=5)
    values = {
        "big int": 2**127 + 5,
        "negative big int": -(2**90),
        "float": 0.1,
        "nan": math.nan,
        "text": "x",
        "none": None,
        "bytes": b"\x00\x01",
        "flag": True,
        "nested": ([1, (2.5, "a")], {"k": [None]}),
        "float32": np.float32(1.25),
        "int8": np.int8(-3),
        "bool_": np.bool_(True),
        "uint64 array": np.array([2**64 - 1, 0], dtype=np.uint64),
        "0-d": np.array(7.0),
        "strided": np.arange(12.0).reshape(3, 4)[:, ::2],
        "big-endian": np.arange(3, dtype=">f8"),
        "float16": np.ones(2, np.float16),
        "complex": np.array([1 + 2j]),
        "tensor": torch.arange(3),
    }
    back = _roundtrip(values)
    assert back.keys() == values.keys()
    for key, value in values.items():
        got = back[key]
        assert type(got) is type(value), key
        if isinstance(value, np.ndarray | np.generic):
            assert got.dtype == value.dtype, key
            np.testing.assert_array_equal(got, value)
        elif isinstance(value, torch.Tensor):
            assert torch.equal(got, value)
        elif key != "nan":
            assert got == value, key
    assert math.isnan(back["nan"])
    for generator in (pcg, mt):
        copy = _roundtrip(generator)
        assert type(copy.bit_generator) is type(generator.bit_generator)
        np.testing.assert_array_equal(copy.normal(size=4), generator.normal(size=4))


NOT_DATA = {
    "function": lambda x: x,
    "set": {1, 2},
    "object array": np.array([object()]),
    "str array": np.array(["a"]),
    "complex": 1 + 2j,
    "lock": threading.Lock(),
    "tuple key": {(1, 2): 3},
    "RandomState": np.random.RandomState(0),
}


@pytest.mark.parametrize("value", NOT_DATA.values(), ids=NOT_DATA.keys())
def test_values_that_are_not_plain_data_are_named(value):
    with pytest.raises(persistence._NotDataError, match=r"^env\.thing"):
        persistence.to_data(value, "env.thing")


# ---------------------------------------------------------------------------- pickled envs
class _Dynamics:
    """A coefficient kept in an object: not plain data, but picklable."""

    def __init__(self, a):
        self.a = a


class _Handle:
    """An object that copies but does not pickle (as a handle on an open resource)."""

    def __deepcopy__(self, memo):
        return _Handle()

    def __reduce__(self):
        raise TypeError("a _Handle cannot be pickled")


class _Drift(gymnasium.Env):
    """x' = a x + u + noise, reward -x²; ``dynamics`` holds a; ``handle`` (when asked)
    makes the environment unpicklable."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, unpicklable=False):
        self.dynamics = _Dynamics(0.9)
        self.handle = _Handle() if unpicklable else None
        self.x = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.normal())
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x = self.dynamics.a * self.x + float(action[0]) + 0.1 * self.np_random.normal()
        return np.array([self.x], np.float32), -(self.x**2), False, False, {}


def _drift(unpicklable=False):
    return gymnasium.wrappers.TimeLimit(_Drift(unpicklable), max_episode_steps=12)


def _environment_warnings(record):
    return [w for w in record if "environments cannot be saved" in str(w.message)]


def test_environments_that_are_not_data_are_pickled_and_restored_only_on_trust(tmp_path):
    """An environment holding an object: the checkpoints hold it pickled, with one warning
    per run (three checkpoints); a resume without trust_pickle resets the environments,
    with a warning naming the option; with it the run ends bit for bit where the
    uninterrupted run ends."""
    whole = pc.rl.A2C(_drift(), **SMALL_A2C).learn(128)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pc.rl.A2C(_drift(), **SMALL_A2C).learn(
            128, log_dir=tmp_path, checkpoint_every=16, callback=_stop_at(64)
        )
    (warning,) = _environment_warnings(record)
    assert "_Drift.dynamics" in str(warning.message)
    assert "trust_pickle=True" in str(warning.message)

    untrusted = pc.rl.A2C(_drift(), **SMALL_A2C)
    with pytest.warns(UserWarning, match="trust_pickle=True") as record:
        untrusted.learn(128, resume_from=tmp_path / "checkpoint.pt")
    assert any("environments are reset" in str(w.message) for w in record)
    trusted = pc.rl.A2C(_drift(), **SMALL_A2C)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trusted.learn(128, resume_from=tmp_path / "checkpoint.pt", trust_pickle=True)
    assert _same_parameters(whole, trusted)
    assert not _same_parameters(whole, untrusted)


def test_environments_that_cannot_be_saved_warn_once_per_run_and_are_reset(tmp_path):
    agent = pc.rl.A2C(_drift(unpicklable=True), **SMALL_A2C)
    for _ in range(2):  # a warning in each run, not at each checkpoint
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            agent.learn(64, log_dir=tmp_path, checkpoint_every=16)
        (warning,) = _environment_warnings(record)
        assert "pickling it failed too" in str(warning.message)
        assert "resets them" in str(warning.message)
    resumed = pc.rl.A2C(_drift(unpicklable=True), **SMALL_A2C)
    with pytest.warns(UserWarning, match="environments are reset"):
        resumed.learn(64, resume_from=tmp_path / "checkpoint.pt")
    assert resumed.num_timesteps == 128


# ---------------------------------------------------------------------------- no code runs
class _Payload:
    """Unpickling it creates ``marker``: what a hostile file would do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real checkpoint of A2C on probcalc/LQR-v0 (its environments saved as data)."""
    folder = tmp_path_factory.mktemp("run")
    agent = pc.rl.A2C("probcalc/LQR-v0", **SMALL_A2C)
    agent.learn(64, log_dir=folder, checkpoint_every=32)
    return folder / "checkpoint.pt"


def _entry_points(path):
    """Every way a file is read: pc.rl.load, A2C.load, learn(resume_from=)."""
    return {
        "rl.load": lambda: pc.rl.load(path),
        "A2C.load": lambda: pc.rl.A2C.load(path),
        "resume": lambda: pc.rl.A2C("probcalc/LQR-v0", **SMALL_A2C).learn(64, resume_from=path),
    }


PARTS = [
    ("config",),
    ("networks",),
    ("optimizer",),
    ("obs_normalizer",),
    ("recent_returns",),
    ("run_start",),
    ("ranks", 0),
    ("ranks", 0, "generator"),
    ("ranks", 0, "environments"),
    ("ranks", 0, "environments", "state"),
    (),
]


@pytest.mark.parametrize("part", PARTS, ids=lambda part: "/".join(map(str, part)) or "file")
def test_a_hostile_object_in_any_part_that_loading_reads_never_runs(tmp_path, checkpoint, part):
    state = torch.load(checkpoint, weights_only=True)
    marker = tmp_path / "ran"
    if part:
        holder = state
        for key in part[:-1]:
            holder = holder[key]
        holder[part[-1]] = _Payload(marker)
    else:
        state = _Payload(marker)
    torch.save(state, tmp_path / "hostile.pt")  # plain pickle: it takes any object
    for name, read in _entry_points(tmp_path / "hostile.pt").items():
        with pytest.raises(pc.CheckpointError, match="other than tensors and plain data") as info:
            read()
        assert info.value.path == tmp_path / "hostile.pt", name
        assert not marker.exists(), name


def _with_pickled_environments(checkpoint, path, payload):
    state = torch.load(checkpoint, weights_only=True)
    saved = state["ranks"][0]["environments"]
    saved["state"], saved["why"] = None, "environment 0: _Drift.dynamics (an object)"
    saved["pickle"] = pickle.dumps(payload)
    torch.save(state, path)


def _tamper(state, how):
    layers = state["ranks"][0]["environments"]["state"]["environments"][0]["attributes"]
    unwrapped = layers[-1]
    if how == "special name":
        unwrapped["__class__"] = "str"
    elif how == "unknown bit generator":
        unwrapped["_np_random"]["state"]["bit_generator"] = "SeedSequence"
    elif how == "unknown tag":
        unwrapped["_state"] = {persistence.TAG: "function", "name": "os.system"}
    elif how == "another environment":
        state["ranks"][0]["environments"]["state"]["environments"][0]["classes"][-1] = "x.Env"


@pytest.mark.parametrize(
    "how", ["special name", "unknown bit generator", "unknown tag", "another environment"]
)
def test_environment_state_that_does_not_decode_or_fit_is_refused_before_any_change(
    tmp_path, checkpoint, how
):
    state = torch.load(checkpoint, weights_only=True)
    _tamper(state, how)
    torch.save(state, tmp_path / "tampered.pt")
    agent = pc.rl.A2C("probcalc/LQR-v0", **SMALL_A2C)
    before = _parameters(agent)
    if how == "another environment":  # data that fits another environment: a reset
        with pytest.warns(UserWarning, match="saved environments are .*x.Env"):
            agent.learn(64, resume_from=tmp_path / "tampered.pt")
        return
    with pytest.raises(pc.CheckpointError, match="its environment state is malformed"):
        agent.learn(64, resume_from=tmp_path / "tampered.pt")
    assert agent.num_timesteps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, _parameters(agent), strict=True))


def test_the_pickled_environments_are_unpickled_only_on_trust(tmp_path, checkpoint):
    marker = tmp_path / "ran"
    path = tmp_path / "pickled.pt"
    _with_pickled_environments(checkpoint, path, _Payload(marker))
    assert pc.rl.load(path).num_timesteps == 64  # load() never reads the environments
    with pytest.warns(UserWarning, match="trust_pickle=True"):
        pc.rl.A2C("probcalc/LQR-v0", **SMALL_A2C).learn(64, resume_from=path)
    assert not marker.exists()
    agent = pc.rl.A2C("probcalc/LQR-v0", **SMALL_A2C)
    before = _parameters(agent)
    with pytest.raises(pc.CheckpointError, match="pickled environments are"):
        agent.learn(64, resume_from=path, trust_pickle=True)
    assert marker.exists()  # the opt-in unpickles: a file from someone else is code
    assert all(torch.equal(a, b) for a, b in zip(before, _parameters(agent), strict=True))


class _Scale(float):
    """A float of a class of its own: a number to LQREnv, not plain data to a file."""


def test_configuration_that_is_not_data_is_pickled_and_needs_trust_or_the_value(tmp_path):
    agent = pc.rl.A2C("probcalc/LQR-v0", env_kwargs={"noise_std": _Scale(0.2)}, **SMALL_A2C)
    with pytest.warns(UserWarning, match=r"env_kwargs\[noise_std .*_Scale\)\]"):
        agent.save(tmp_path / "agent.pt")
    with pytest.raises(pc.CheckpointError, match=r"\['env_kwargs'\] are not plain data"):
        pc.rl.load(tmp_path / "agent.pt")
    again = pc.rl.load(tmp_path / "agent.pt", env_kwargs={"noise_std": 0.2})
    assert again.envs.envs[0].unwrapped.noise_std == 0.2
    trusted = pc.rl.load(tmp_path / "agent.pt", trust_pickle=True)
    assert isinstance(trusted.config.env_kwargs["noise_std"], _Scale)

    marker = tmp_path / "ran"
    state = torch.load(tmp_path / "agent.pt", weights_only=True)
    state["pickled_config"]["pickle"] = pickle.dumps(_Payload(marker))
    torch.save(state, tmp_path / "hostile.pt")
    with pytest.raises(pc.CheckpointError, match="trust_pickle"):
        pc.rl.load(tmp_path / "hostile.pt")
    assert not marker.exists()
    with pytest.raises(pc.CheckpointError, match="pickled configuration is"):
        pc.rl.load(tmp_path / "hostile.pt", trust_pickle=True)
    assert marker.exists()


def test_arrays_in_the_configuration_are_data(tmp_path):
    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    B = np.array([[0.0], [0.1]])
    agent = pc.rl.A2C("probcalc/LQR-v0", env_kwargs={"A": A, "B": B}, **SMALL_A2C)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agent.save(tmp_path / "agent.pt")
    loaded = pc.rl.load(tmp_path / "agent.pt")
    np.testing.assert_array_equal(loaded.config.env_kwargs["A"], A)
    np.testing.assert_array_equal(loaded.envs.envs[0].unwrapped.B, B)


# ---------------------------------------------------------------------------- bad files
def _make_bad_file(kind, path, checkpoint):
    real = checkpoint.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(real[: len(real) // 2])
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "text":
        path.write_text("step,mean_return\n64,-12.5\n")
    elif kind == "unrelated dict":
        torch.save({"weights": torch.ones(3), "epoch": 4}, path)
    elif kind == "tensor":
        torch.save(torch.ones(3), path)
    elif kind == "flipped byte":  # a byte in the largest tensor's storage changed on disk
        with zipfile.ZipFile(checkpoint) as archive:
            member = max(archive.infolist(), key=lambda info: info.compress_size)
        name_length, extra_length = struct.unpack("<HH", real[member.header_offset + 26 :][:4])
        offset = member.header_offset + 30 + name_length + extra_length + member.compress_size // 2
        path.write_bytes(real[:offset] + bytes([real[offset] ^ 0xFF]) + real[offset + 1 :])
    elif kind in ("future version", "missing entry", "earlier release"):
        state = torch.load(checkpoint, weights_only=True)
        if kind == "future version":
            state["format_version"] = persistence.FORMAT_VERSION + 1
        elif kind == "missing entry":
            del state["optimizer"]
        else:  # the unversioned files of earlier releases held numpy arrays
            state = {"algorithm": "A2C", "config": {}, "generator": np.zeros(3)}
        torch.save(state, path)
    elif kind == "directory":
        path.mkdir()


BAD_FILES = {
    "empty": "it is empty",
    "truncated": "not a torch.save archive",
    "random bytes": "not a torch.save archive",
    "text": "not a torch.save archive",
    "unrelated dict": "not a probcalc.rl agent file: it holds a dict with keys 'weights'",
    "tensor": "not a probcalc.rl agent file: it holds a torch.Tensor",
    "flipped byte": "fails its CRC-32 check",
    "future version": "format version 4; this release reads version 3: upgrade",
    "missing entry": "the entry 'optimizer' is missing",
    "earlier release": "other than tensors and plain data",
    "directory": "is a directory",
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_damaged_or_foreign_file_is_a_checkpoint_error_naming_it(tmp_path, checkpoint, kind):
    path = tmp_path / f"{kind}.pt"
    _make_bad_file(kind, path, checkpoint)
    for name, read in _entry_points(path).items():
        with pytest.raises(pc.CheckpointError, match=BAD_FILES[kind]) as info:
            read()
        assert str(info.value).startswith(f"cannot load {path}: "), name
        assert info.value.path == path, name
        assert isinstance(info.value, ValueError)


def test_a_missing_file_is_file_not_found(tmp_path):
    for read in _entry_points(tmp_path / "nothing.pt").values():
        with pytest.raises(FileNotFoundError, match=r"nothing\.pt"):
            read()


def test_a_file_of_another_algorithm_or_shape_is_refused_and_leaves_the_agent_alone(
    tmp_path, checkpoint
):
    ppo = pc.rl.PPO("probcalc/LQR-v0", n_envs=2, n_steps=8, batch_size=16, seed=0)
    ppo.save(tmp_path / "ppo.pt")
    with pytest.raises(pc.CheckpointError, match="holds an agent of PPO, not of A2C"):
        pc.rl.A2C.load(tmp_path / "ppo.pt")
    agent = pc.rl.A2C("probcalc/LQR-v0", **SMALL_A2C)
    before = _parameters(agent)
    with pytest.raises(pc.CheckpointError, match="holds an agent of PPO, not of A2C"):
        agent.learn(64, resume_from=tmp_path / "ppo.pt")
    wider = pc.rl.A2C("probcalc/LQR-v0", **{**SMALL_A2C, "hidden": (32,)})
    wider_before = _parameters(wider)
    with pytest.raises(pc.CheckpointError, match="policy network does not fit"):
        wider.learn(64, resume_from=checkpoint)
    assert wider.num_timesteps == 0
    assert all(torch.equal(a, b) for a, b in zip(wider_before, _parameters(wider), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before, _parameters(agent), strict=True))


# ---------------------------------------------------------------------------- atomic writes
def test_a_write_that_fails_keeps_the_previous_checkpoint_and_no_temporary_file(
    tmp_path, monkeypatch
):
    """The second checkpoint's write stops halfway with a full disk: learn raises, the first
    checkpoint is still there, whole, and no partial file is left."""
    real_save, calls = torch.save, []

    def disk_fills_up(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, handle, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_fills_up)
    agent = pc.rl.A2C("probcalc/LQR-v0", **SMALL_A2C)
    with pytest.raises(OSError, match="No space left"):
        agent.learn(128, log_dir=tmp_path, checkpoint_every=32)
    monkeypatch.undo()
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if "checkpoint" in p.name) == ["checkpoint.pt"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["num_timesteps"] == 32


KILLED_RUN = """
import os, signal, sys, torch
import probcalc as pc
torch.set_num_threads(1)
torch.set_default_dtype(getattr(torch, sys.argv[2]))  # the initialization's dtype
real_save, calls = torch.save, []
def killed_while_writing(obj, handle, *args, **kwargs):
    calls.append(1)
    if len(calls) < 2:
        return real_save(obj, handle, *args, **kwargs)
    real_save(obj, handle)
    handle.truncate(handle.tell() // 2)
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # the process dies in the middle of the write
torch.save = killed_while_writing
pc.rl.A2C("probcalc/LQR-v0", **{settings}).learn(128, log_dir=sys.argv[1], checkpoint_every=32)
"""


def test_a_run_killed_while_writing_resumes_from_the_previous_checkpoint(tmp_path):
    """A process killed (SIGKILL) with its second checkpoint half written leaves the first
    checkpoint intact; the run resumes from it and ends bit for bit where the
    uninterrupted run ends."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(KILLED_RUN).replace("{settings}", repr(SMALL_A2C)))
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    dtype = str(torch.get_default_dtype()).removeprefix("torch.")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), dtype],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    leftovers = [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".partial")]
    assert len(leftovers) == 1  # the write in progress: never renamed over the checkpoint
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = pc.rl.A2C("probcalc/LQR-v0", **SMALL_A2C).learn(128)
        resumed = pc.rl.A2C("probcalc/LQR-v0", **SMALL_A2C)
        resumed.learn(128, resume_from=tmp_path / "run" / "checkpoint.pt")
    finally:
        torch.set_num_threads(threads)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["num_timesteps"] == 32
    assert _same_parameters(whole, resumed)
