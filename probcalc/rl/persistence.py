"""Agent files and checkpoints: what ``save`` writes and what ``load`` and
``learn(resume_from=...)`` read.

A file is a ``torch.save`` zip archive of tensors and plain data only (dict, list, tuple,
str, int, float, bool, None, bytes), read with ``torch.load(weights_only=True)``, which
builds no other object and so runs no code from the file. It holds the format version,
the algorithm, its configuration, the networks, the optimizer, the normalization
statistics, the step count and, per process, the action-noise generator and (checkpoints)
the environments.

The environments are saved as data wherever that is possible: every attribute of every
layer of each environment (the wrappers' counters, the environment's own state, its
``np_random`` bit generator), MuJoCo's simulation state (``mj_getState`` with
``mjSTATE_INTEGRATION``, and the arrays of ``MjData`` that the model fixes in size) and the
vector environment's autoreset flags; they are restored exactly. An environment holding
something else (a function, a custom object) is saved pickled instead, in bytes that
loading unpickles only when asked with ``trust_pickle=True``: unpickling runs code, so a
file from someone else is code once you opt in. Without the opt-in the environments are
reset, with a warning. Configuration values that are not plain data (an ``env_kwargs``
entry that is a function, say) are kept pickled the same way.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import math
import os
import pickle
import re
import sys
import warnings
import weakref
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import gymnasium
import numpy as np
import torch
from gymnasium.envs.registration import EnvSpec

from ..core import distributed
from ..core.errors import CheckpointError
from .config import DTYPES

if TYPE_CHECKING:
    from .agent import Agent
    from .config import AgentConfig

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "read", "resume", "save"]

FORMAT = "probcalc.rl agent"
FORMAT_VERSION = 3  # the config dataclass's fields, dtype by name; earlier versions are not read
TAG = "__probcalc_type__"  # marks an encoded value that is not a tensor or plain data
# constructor arguments kept by wrappers and EzPickle for re-creation: configuration, which
# the agent's own construction repeats, not state
CONSTRUCTOR_ARGUMENTS = ("_saved_kwargs", "_ezpickle_args", "_ezpickle_kwargs")
# MujocoEnv attributes saved through MuJoCo's own state functions, or holding none (the
# compiled model and the renderer)
MUJOCO_ATTRIBUTES = ("model", "data", "mujoco_renderer")
TRUST_HINT = (
    "pass trust_pickle=True to unpickle them if you trust the file (unpickling "
    "runs code from the file)"
)

# the warnings already given, per agent: checkpoints warn once per run
_warned: weakref.WeakKeyDictionary[Any, set[Any]] = weakref.WeakKeyDictionary()


class _NotDataError(Exception):
    """A value that cannot be stored as plain data; the message says where and what."""


class _BadDataError(Exception):
    """Encoded data in a file that does not decode (a corrupted or hand-made file)."""


# ---------------------------------------------------------------------------- plain data
def to_data(value: Any, where: str) -> Any:
    """``value`` as tensors and plain data that ``torch.load(weights_only=True)`` reads:
    numpy arrays, numpy scalars and numpy Generators are tagged dicts, containers are
    converted item by item.

    Raises:
        _NotDataError: something else (a function, an object), named with ``where``.
    """
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes):
        return value
    if kind is torch.Tensor and value.device.type == "cpu":
        return value.detach().clone()
    if kind is np.ndarray:
        if value.dtype.hasobject or value.dtype.fields is not None:
            raise _NotDataError(f"{where} (a numpy array of dtype {value.dtype})")
        native = np.array(value, dtype=value.dtype.newbyteorder("="), order="C")  # a copy
        try:
            tensor = torch.from_numpy(native)
        except TypeError as error:
            raise _NotDataError(f"{where} (a numpy array of dtype {value.dtype})") from error
        return {TAG: "ndarray", "dtype": value.dtype.str, "data": tensor}
    if isinstance(value, np.generic):
        return {TAG: "numpy_scalar", "value": to_data(np.asarray(value), where)}
    if kind is np.random.Generator:
        return {TAG: "generator", "state": to_data(value.bit_generator.state, where)}
    if kind in (list, tuple):
        return kind(to_data(item, f"{where}[{i}]") for i, item in enumerate(value))
    if kind is dict:
        if TAG in value or not all(type(key) in (str, int) for key in value):
            raise _NotDataError(f"{where} (a dict with keys other than str and int)")
        return {key: to_data(item, f"{where}[{key!r}]") for key, item in value.items()}
    raise _NotDataError(f"{where} (a {kind.__module__}.{kind.__qualname__})")


def from_data(data: Any, into: Any = None) -> Any:
    """The value ``to_data`` encoded. A Generator is restored into ``into`` when that is a
    Generator of the same bit generator (so that every holder of it sees the state).

    Raises:
        _BadDataError: the data is not what ``to_data`` writes.
    """
    kind = type(data)
    if data is None or kind in (bool, int, float, str, bytes, torch.Tensor):
        return data.clone() if kind is torch.Tensor else data
    if kind in (list, tuple):
        return kind(from_data(item) for item in data)
    if kind is not dict:
        raise _BadDataError(f"an unexpected {kind.__name__}")
    tag = data.get(TAG)
    if tag is None:
        return {key: from_data(item) for key, item in data.items()}
    if tag == "ndarray" and type(data.get("data")) is torch.Tensor:
        array = data["data"].numpy().copy()
        return array.astype(np.dtype(str(data["dtype"])), copy=False)
    if tag == "numpy_scalar":
        array = from_data(data["value"])
        if type(array) is not np.ndarray or array.ndim != 0:
            raise _BadDataError("a numpy scalar that is not a 0-d array")
        return array[()]
    if tag == "generator":
        state = from_data(data["state"])
        name = state.get("bit_generator") if type(state) is dict else None
        bit_generator = getattr(np.random, name, None) if type(name) is str else None
        if not (
            isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)
        ):
            raise _BadDataError(f"an unknown bit generator {name!r}")
        if type(into) is np.random.Generator and type(into.bit_generator) is bit_generator:
            generator = into
        else:
            generator = np.random.Generator(bit_generator())
        try:
            generator.bit_generator.state = state
        except (TypeError, ValueError, KeyError) as error:
            raise _BadDataError(f"a {name} state that does not fit ({error})") from error
        return generator
    raise _BadDataError(f"an unknown tag {tag!r}")


# ---------------------------------------------------------------------------- environments
def _layers(env: gymnasium.Env) -> list[gymnasium.Env]:
    """The wrappers of ``env`` from the outermost, then the environment itself."""
    layers = [env]
    while isinstance(layers[-1], gymnasium.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _class_name(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _is_mujoco(env: gymnasium.Env) -> bool:
    # MuJoCo environments are MujocoEnv instances: the module is loaded whenever one exists
    module = sys.modules.get("gymnasium.envs.mujoco.mujoco_env")
    return module is not None and isinstance(env, module.MujocoEnv)


def _mujoco_arrays(model: Any, data: Any) -> dict[str, np.ndarray]:
    """The writable arrays of ``data`` whose size the model fixes (their size in a fresh
    MjData): the positions, velocities, forces and matrices derived from the state, which
    an environment may read before its next mj_step (Ant reads the torso's xpos left by
    the last step). The constraint arrays sized by the current contacts are left out: each
    step rebuilds them."""
    import mujoco

    fresh = mujoco.MjData(model)
    arrays = {}
    for name in dir(data):
        if name.startswith("_"):
            continue
        value, reference = getattr(data, name, None), getattr(fresh, name, None)
        if (
            isinstance(value, np.ndarray)
            and value.flags.writeable
            and isinstance(reference, np.ndarray)
            and reference.shape == value.shape
        ):
            arrays[name] = value
    return arrays


def _capture_mujoco(model: Any, data: Any) -> dict[str, Any]:
    """MuJoCo's integration state (time, qpos, qvel, act, warmstart, controls, applied
    forces, mocap, userdata, plugins: what mj_step reads) with mj_getState, and the
    derived arrays, packed in one flat tensor per dtype with an index of (name, dtype,
    offset, shape): the next steps are bit-identical to those of the uninterrupted run."""
    import mujoco

    spec = int(mujoco.mjtState.mjSTATE_INTEGRATION)
    state = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state, spec)
    index, chunks = [], {}
    for name, value in _mujoco_arrays(model, data).items():
        parts = chunks.setdefault(value.dtype.str, [])
        offset = sum(part.size for part in parts)
        index.append([name, value.dtype.str, offset, list(value.shape)])
        parts.append(value.reshape(-1))
    packed = {dtype: torch.from_numpy(np.concatenate(parts)) for dtype, parts in chunks.items()}
    return {"spec": spec, "state": torch.from_numpy(state), "index": index, "arrays": packed}


def _mujoco_views(saved: dict[str, Any]) -> dict[str, np.ndarray]:
    """The saved derived arrays by name, as views into the packed tensors.

    Raises:
        _BadDataError: an index entry that does not fit the packed tensors.
    """
    views = {}
    for entry in saved["index"]:
        if not (
            type(entry) is list
            and len(entry) == 4
            and [type(item) for item in entry] == [str, str, int, list]
            and all(type(n) is int and n >= 0 for n in entry[3])
        ):
            raise _BadDataError("a MuJoCo array entry that is not (name, dtype, offset, shape)")
        name, dtype, offset, shape = entry
        flat = saved["arrays"].get(dtype)
        size = math.prod(shape)
        if (
            type(flat) is not torch.Tensor
            or flat.dim() != 1
            or not 0 <= offset <= flat.numel() - size
        ):
            raise _BadDataError(f"MjData.{name} lies outside the saved arrays")
        views[name] = flat.numpy()[offset : offset + size].reshape(shape)
    return views


def _mujoco_misfit(model: Any, data: Any, saved: Any) -> str | None:
    import mujoco

    if (
        type(saved) is not dict
        or type(saved.get("state")) is not torch.Tensor
        or saved.get("spec") != int(mujoco.mjtState.mjSTATE_INTEGRATION)
        or type(saved.get("index")) is not list
        or type(saved.get("arrays")) is not dict
    ):
        raise _BadDataError("a MuJoCo state without its spec, state and arrays")
    if saved["state"].shape != (mujoco.mj_stateSize(model, saved["spec"]),):
        return "the MuJoCo state has another size: another model"
    current = _mujoco_arrays(model, data)
    for name, view in _mujoco_views(saved).items():
        if name in current and (
            view.shape != current[name].shape or view.dtype != current[name].dtype
        ):
            return f"MjData.{name} has another shape: another model"
    return None


def _restore_mujoco(model: Any, data: Any, saved: dict[str, Any]) -> None:
    import mujoco

    current = _mujoco_arrays(model, data)
    for name, view in _mujoco_views(saved).items():
        if name in current:
            current[name][...] = view
    mujoco.mj_setState(model, data, saved["state"].numpy(), saved["spec"])


def _capture_environment(env: gymnasium.Env, where: str) -> dict[str, Any]:
    """Every attribute of every layer of ``env`` as data, but the wrapped environment,
    the spaces and specs (the construction makes them again) and the constructor's
    arguments; a MuJoCo environment's simulation through MuJoCo's state functions.

    Raises:
        _NotDataError: an attribute that is not data.
    """
    attributes, mujoco_state = [], None
    for layer in _layers(env):
        mujoco_layer = _is_mujoco(layer)
        if not hasattr(layer, "__dict__"):
            raise _NotDataError(f"{where}: {type(layer).__name__} keeps its attributes in slots")
        saved = {}
        for name, value in vars(layer).items():
            if (
                (isinstance(layer, gymnasium.Wrapper) and name == "env")
                or name in CONSTRUCTOR_ARGUMENTS
                or isinstance(value, gymnasium.spaces.Space | EnvSpec)
                or (mujoco_layer and name in MUJOCO_ATTRIBUTES)
            ):
                continue
            saved[name] = to_data(value, f"{where}: {type(layer).__name__}.{name}")
        attributes.append(saved)
        if mujoco_layer:
            mujoco_state = _capture_mujoco(layer.model, layer.data)
    return {
        "classes": [_class_name(layer) for layer in _layers(env)],
        "attributes": attributes,
        "mujoco": mujoco_state,
    }


def _capture_vector_env(envs: gymnasium.vector.VectorEnv) -> dict[str, Any]:
    if not isinstance(envs, gymnasium.vector.SyncVectorEnv):
        raise _NotDataError(f"{type(envs).__name__} steps its environments in other processes")
    return {
        "environments": [
            _capture_environment(env, f"environment {i}") for i, env in enumerate(envs.envs)
        ],
        "autoreset": torch.from_numpy(np.array(envs._autoreset_envs, dtype=bool)),
    }


def _vector_misfit(envs: gymnasium.vector.VectorEnv, saved: Any) -> str | None:
    """Why ``saved`` cannot be restored into ``envs`` (None if it can).

    Raises:
        _BadDataError: ``saved`` is not what _capture_vector_env writes.
    """
    if (
        type(saved) is not dict
        or type(saved.get("environments")) is not list
        or type(saved.get("autoreset")) is not torch.Tensor
    ):
        raise _BadDataError("an environment state without its environments and autoreset flags")
    if not isinstance(envs, gymnasium.vector.SyncVectorEnv):
        return f"this agent's {type(envs).__name__} takes no saved state"
    count = len(envs.envs)
    if len(saved["environments"]) != count or saved["autoreset"].shape != (count,):
        return f"{len(saved['environments'])} environments were saved, this agent has {count}"
    for env, part in zip(envs.envs, saved["environments"], strict=True):
        if type(part) is not dict or type(part.get("attributes")) is not list:
            raise _BadDataError("an environment state without its attributes")
        classes = [_class_name(layer) for layer in _layers(env)]
        if part.get("classes") != classes or len(part["attributes"]) != len(classes):
            return f"the saved environments are {part.get('classes')}, this agent's are {classes}"
        if any(
            type(layer) is not dict or not all(_attribute_name(name) for name in layer)
            for layer in part["attributes"]
        ):
            raise _BadDataError("an environment layer whose attributes are not a dict of names")
        for layer in part["attributes"]:  # every value decodes: restoring cannot fail halfway
            for data in layer.values():
                from_data(data)
        unwrapped = env.unwrapped
        if _is_mujoco(unwrapped) != (part.get("mujoco") is not None):
            raise _BadDataError("a MuJoCo state on an environment that is not MuJoCo's, or none")
        if part["mujoco"] is not None:
            misfit = _mujoco_misfit(unwrapped.model, unwrapped.data, part["mujoco"])
            if misfit is not None:
                return misfit
    return None


def _attribute_name(name: object) -> bool:
    """An attribute that capture writes: an identifier, not a special name."""
    return type(name) is str and name.isidentifier() and not name.startswith("__")


def _restore_vector_env(envs: gymnasium.vector.SyncVectorEnv, saved: dict[str, Any]) -> None:
    """Write ``saved`` (checked by _vector_misfit) into ``envs``, attribute by attribute."""
    for env, part in zip(envs.envs, saved["environments"], strict=True):
        for layer, attributes in zip(_layers(env), part["attributes"], strict=True):
            for name, data in attributes.items():
                setattr(layer, name, from_data(data, into=vars(layer).get(name)))
        if part["mujoco"] is not None:
            _restore_mujoco(env.unwrapped.model, env.unwrapped.data, part["mujoco"])
    envs._autoreset_envs = saved["autoreset"].numpy().copy()


# ---------------------------------------------------------------------------- writing
def _digest(agent: Agent) -> str:
    parameters = hashlib.sha256()  # to check at checkpoints that the ranks still agree
    for network in agent.networks.values():
        for tensor in network.state_dict().values():
            parameters.update(tensor.detach().cpu().numpy().tobytes())
    return parameters.hexdigest()


def _local_state(agent: Agent, environments: bool) -> dict[str, Any]:
    """What this rank alone holds: the action-noise generator, the discounted returns of
    the reward normalizer and, with ``environments``, the environments: as data, else
    pickled (with why), else nothing (with why)."""
    normalizer = agent.reward_normalizer
    local: dict[str, Any] = {
        "parameters": _digest(agent),
        "generator": agent.generator.get_state(),
        "reward_returns": None
        if normalizer is None
        else torch.from_numpy(normalizer.returns.copy()),
        "environments": None,
        # what the algorithm keeps beyond networks and optimizers (a replay buffer)
        "extra": agent.local_extra_state(environments),
    }
    if environments:
        saved: dict[str, Any] = {
            "obs": torch.from_numpy(np.array(agent._obs)),
            "last_done": torch.from_numpy(np.array(agent._last_done, dtype=bool)),
            "episode_return": torch.from_numpy(np.array(agent._episode_return)),
            "episode_length": torch.from_numpy(np.array(agent._episode_length)),
            "state": None,
            "pickle": None,
            "why": None,
        }
        try:
            saved["state"] = _capture_vector_env(agent.envs)
        except _NotDataError as error:
            saved["why"] = str(error)
            if isinstance(agent.envs, gymnasium.vector.SyncVectorEnv):
                try:
                    saved["pickle"] = cloudpickle.dumps(agent.envs)
                except Exception as failure:
                    saved["why"] += f"; pickling it failed too ({type(failure).__name__})"
        local["environments"] = saved
    return local


def _config_data(config: AgentConfig) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The config's fields as data (the dtype by name), the entries that are not data (to
    pickle), and their names: ``env_kwargs`` entry by entry."""
    data: dict[str, Any] = {}
    pickled: dict[str, Any] = {}
    names: list[str] = []
    fields = config.as_dict()
    fields["dtype"] = str(config.dtype).removeprefix("torch.")
    for key, value in fields.items():
        if key == "env_kwargs":
            data[key] = {}
            for name, item in value.items():
                try:
                    data[key][name] = to_data(item, name)
                except _NotDataError as error:
                    pickled.setdefault(key, {})[name] = item
                    names.append(f"env_kwargs[{error}]")
            continue
        try:
            data[key] = to_data(value, key)
        except _NotDataError as error:
            pickled[key] = value
            names.append(str(error))
    return data, pickled, names


def _warn_once(agent: Agent, key: Any, message: str) -> None:
    given = _warned.setdefault(agent, set())
    if key not in given:
        given.add(key)
        # from here: _file_content, save, Agent.save, and its caller
        warnings.warn(message, UserWarning, stacklevel=5)


def save(
    agent: Agent,
    path: str | Path,
    *,
    environments: bool = False,
    run_start: int | None = None,
    run_steps: int | None = None,
) -> None:
    """Write ``agent`` to ``path`` atomically (a temporary file in the same folder, synced,
    then renamed over ``path``): see Agent.save."""
    group = agent.group
    collective = environments and group is not False
    local = _local_state(agent, environments)
    parts = distributed.gather_objects(local, group, to_first=True) if collective else [local]
    if collective and agent.rank != 0:
        distributed.agree(None, group)  # rank 0's write succeeded, or raise
        return
    path = Path(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with distributed.agreed(group if collective else False):  # rank 0's failure reaches all
        state = _file_content(agent, parts, run_start, run_steps, environments, collective)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as handle:
                torch.save(state, handle)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before the rename makes it the file
            os.replace(partial, path)  # a crash while writing never leaves a broken file
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def _file_content(
    agent: Agent,
    parts: list[dict[str, Any]],
    run_start: int | None,
    run_steps: int | None,
    environments: bool,
    collective: bool,
) -> dict[str, Any]:
    """What the file holds (warning about what cannot be saved as data)."""
    if collective and len({part["parameters"] for part in parts}) > 1:
        warnings.warn(
            "the ranks' parameters differ (different CPUs or thread counts make the same "
            "update round differently): the checkpoint holds rank 0's",
            RuntimeWarning,
            stacklevel=4,
        )
    if environments:
        whys = [part["environments"]["why"] for part in parts if part["environments"]["why"]]
        pickled = all(
            part["environments"]["pickle"] is not None
            for part in parts
            if part["environments"]["why"]
        )
        if whys and pickled:
            _warn_once(
                agent,
                ("environments", run_start),
                (
                    f"the environments cannot be saved as data ({whys[0]}): the checkpoint holds "
                    f"them pickled, and resuming from it restores them exactly only with "
                    f"trust_pickle=True (unpickling runs code from the file: only for files you "
                    f"trust); without it they are reset and the episodes in progress start "
                    f"over"
                ),
            )
        elif whys:
            _warn_once(
                agent,
                ("environments", run_start),
                (
                    f"the environments cannot be saved ({whys[0]}): resuming from the checkpoint "
                    f"resets them and the episodes in progress start over"
                ),
            )
    config, pickled_config, names = _config_data(agent.config)
    pickled = None
    if pickled_config:
        try:
            pickled = {"keys": sorted(pickled_config), "pickle": cloudpickle.dumps(pickled_config)}
        except Exception as error:
            raise TypeError(
                f"cannot save the configuration: {', '.join(names)} are neither "
                f"plain data nor picklable ({error})"
            ) from error
        _warn_once(
            agent,
            "config",
            (
                f"configuration entries that are not plain data are saved pickled: "
                f"{', '.join(names)}; loading the file needs them passed again (e.g. env_kwargs=) "
                f"or trust_pickle=True"
            ),
        )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": type(agent).__name__,
        "env": agent.env_id,
        "config": config,
        # the entries that are not data, by key, pickled (unpickled only on trust_pickle)
        "pickled_config": pickled,
        "networks": {name: net.state_dict() for name, net in agent.networks.items()},
        "optimizer": agent.optimizer_state(),
        "extra": agent.extra_state(),
        "num_timesteps": int(agent.num_timesteps),
        "ranks": parts,  # what each rank alone holds: random state, environments
        "recent_returns": [float(r) for r in agent.recent_returns],
        "obs_normalizer": None
        if agent.obs_normalizer is None
        else _statistics_data(agent.obs_normalizer.state_dict()),
        "reward_normalizer": None
        if agent.reward_normalizer is None
        else {
            "stats": _statistics_data(agent.reward_normalizer.stats.state_dict()),
            "returns": torch.from_numpy(agent.reward_normalizer.returns.copy()),
        },
        "run_start": run_start,
        "run_steps": run_steps,
    }


def _statistics_data(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "mean": torch.from_numpy(np.array(stats["mean"], dtype=np.float64)),
        "var": torch.from_numpy(np.array(stats["var"], dtype=np.float64)),
        "count": int(stats["count"]),
    }


def _statistics(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "mean": data["mean"].numpy().copy(),
        "var": data["var"].numpy().copy(),
        "count": int(data["count"]),
    }


# ---------------------------------------------------------------------------- reading
def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"cannot load {path}: {what}", path=path)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(repr(key) for key in list(value)[:5])
        return f"a dict with keys {keys}{', ...' if len(value) > 5 else ''}"
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def _check_structure(state: dict[str, Any], path: Path) -> None:
    """The entries a file of this format holds, with their types."""

    def statistics(value: Any) -> bool:
        return (
            type(value) is dict
            and type(value.get("count")) is int
            and all(type(value.get(k)) is torch.Tensor for k in ("mean", "var"))
        )

    checks = {
        "algorithm": lambda v: type(v) is str,
        "env": lambda v: v is None or type(v) is str,
        "config": lambda v: type(v) is dict,
        "pickled_config": lambda v: (
            v is None
            or (
                type(v) is dict
                and type(v.get("pickle")) is bytes
                and type(v.get("keys")) is list
                and all(type(key) is str for key in v["keys"])
            )
        ),
        "networks": lambda v: type(v) is dict and all(isinstance(w, dict) for w in v.values()),
        "optimizer": lambda v: isinstance(v, dict),
        "num_timesteps": lambda v: type(v) is int and v >= 0,
        "recent_returns": lambda v: type(v) is list,
        "obs_normalizer": lambda v: v is None or statistics(v),
        "reward_normalizer": lambda v: (
            v is None
            or (
                type(v) is dict
                and statistics(v.get("stats"))
                and type(v.get("returns")) is torch.Tensor
            )
        ),
        "run_start": lambda v: v is None or type(v) is int,
        "run_steps": lambda v: v is None or type(v) is int,
        "ranks": lambda v: (
            type(v) is list
            and len(v) > 0
            and all(
                type(part) is dict
                and type(part.get("generator")) is torch.Tensor
                and part.get("generator").dtype == torch.uint8
                and (
                    part.get("reward_returns") is None
                    or type(part.get("reward_returns")) is torch.Tensor
                )
                and (part.get("environments") is None or type(part.get("environments")) is dict)
                for part in v
            )
        ),
    }
    for key, check in checks.items():
        if key not in state:
            raise _fail(path, f"the entry {key!r} is missing (a damaged or hand-made file)")
        if not check(state[key]):
            raise _fail(path, f"the entry {key!r} is malformed ({_describe(state[key])})")


def _unpickling_failure(path: Path, error: pickle.UnpicklingError) -> CheckpointError:
    """What torch's weights-only unpickler refused: an object other than tensors and plain
    data (its message names the global it would have called), or bytes that are no pickle."""
    text = str(error)
    detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
    detail = detail[0].strip() if detail else text
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found is None and "Unsupported operand" in detail:
        return _fail(path, f"it is corrupted (its pickle does not decode: {detail})")
    what = f"it refers to {found[1]}" if found else detail[:200]
    return _fail(
        path,
        f"it holds Python objects other than tensors and plain data ({what}), "
        f"which loading never unpickles (unpickling can run code)",
    )


def read(path: str | Path) -> dict[str, Any]:
    """The content of an agent file or checkpoint, loaded with
    ``torch.load(weights_only=True)`` (no code from the file runs) and checked.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        CheckpointError: the file is empty, truncated, corrupted (a member of the zip archive
            fails its CRC-32 check, or does not decode), not an agent file, holds
            Python objects other than tensors and plain data, or has a format version this
            release does not read.
    """
    path = _path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    if path.is_dir():
        raise _fail(path, "it is a directory, not an agent file")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives
        size = path.stat().st_size
        what = "it is empty" if size == 0 else f"it is not a torch.save archive ({size} bytes)"
        raise _fail(
            path, f"{what}: a truncated file (a copy or a write cut short), or another kind of file"
        )
    try:
        with zipfile.ZipFile(path) as archive:  # every member against its CRC-32
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise _fail(path, f"it is corrupted ({error})") from error
    if damaged is not None:
        raise _fail(path, f"it is corrupted: {damaged} fails its CRC-32 check")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _unpickling_failure(path, error) from error
    except Exception as error:
        first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise _fail(path, f"it is corrupted ({first})") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise _fail(path, f"it is not a probcalc.rl agent file: it holds {_describe(state)}")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        newer = type(version) is int and version > FORMAT_VERSION
        raise _fail(
            path,
            f"it has format version {version!r}; this release reads version "
            f"{FORMAT_VERSION}{': upgrade probcalc' if newer else ''}",
        )
    _check_structure(state, path)
    return state


def _algorithm(state: dict[str, Any], cls: type, path: Path) -> type:
    from .agent import Agent

    algorithm = Agent.registry.get(state["algorithm"])
    if algorithm is None:
        known = ", ".join(Agent.registry)
        raise _fail(
            path,
            f"it holds a {state['algorithm']!r} agent, an algorithm this "
            f"program does not define (known: {known})",
        )
    if cls is not Agent and not issubclass(algorithm, cls):
        raise _fail(path, f"it holds an agent of {state['algorithm']}, not of {cls.__name__}")
    return algorithm


def _config(
    state: dict[str, Any], path: Path, overrides: dict[str, Any], trust_pickle: bool
) -> dict[str, Any]:
    """The saved configuration with ``overrides``; the entries saved pickled come from
    ``overrides`` or, with ``trust_pickle``, from the file."""
    try:
        config = from_data(state["config"])
    except (_BadDataError, KeyError, TypeError) as error:
        raise _fail(path, f"its configuration does not decode ({error})") from error
    pickled = state["pickled_config"]
    missing = [key for key in (pickled or {}).get("keys", []) if key not in overrides]
    if missing and not trust_pickle:
        raise _fail(
            path,
            f"its configuration entries {missing} are not plain data and were "
            f"saved pickled: pass them again (e.g. {missing[0]}=...), or "
            f"{TRUST_HINT}",
        )
    if missing:
        try:
            values = cloudpickle.loads(pickled["pickle"])
        except Exception as error:
            raise _fail(
                path,
                f"its pickled configuration does not unpickle ({type(error).__name__}: {error})",
            ) from error
        if type(values) is not dict:
            raise _fail(path, f"its pickled configuration is {_describe(values)}, not a dict")
        for key, value in values.items():
            if key == "env_kwargs" and type(value) is dict:
                config["env_kwargs"] = {**config.get("env_kwargs", {}), **value}
            else:
                config[key] = value
    return {**config, **overrides}


def _local_part(agent: Agent, state: dict[str, Any]) -> dict[str, Any] | None:
    """This rank's part, when the file was written by as many processes as run now."""
    parts = state["ranks"]
    return parts[agent.rank] if len(parts) == agent.world_size else None


def _check_fits(agent: Agent, state: dict[str, Any], path: Path) -> None:
    """The networks, normalizers and generator state fit ``agent`` (checked before any
    change, so that a file that does not fit leaves the agent as it was)."""
    networks = state["networks"]
    if set(networks) != set(agent.networks):
        raise _fail(
            path,
            f"it holds the networks {sorted(networks)}, this agent has {sorted(agent.networks)}",
        )
    for name, weights in networks.items():
        current = agent.networks[name].state_dict()
        shapes = {key: tuple(value.shape) for key, value in current.items()}
        saved = {
            key: tuple(value.shape) if isinstance(value, torch.Tensor) else None
            for key, value in weights.items()
        }
        if saved != shapes:
            raise _fail(
                path,
                f"its {name} network does not fit this agent's (other layers or "
                f"sizes: was it made with other settings?)",
            )
    for key in ("obs_normalizer", "reward_normalizer"):
        normalizer = getattr(agent, key)
        if state[key] is not None and normalizer is not None:
            stats = state[key] if key == "obs_normalizer" else state[key]["stats"]
            for entry in ("mean", "var"):
                if tuple(stats[entry].shape) != normalizer.stats.mean.shape:
                    raise _fail(path, f"its {key} statistics have another shape")
    local = _local_part(agent, state)
    if local is not None and local["generator"].shape != agent.generator.get_state().shape:
        raise _fail(path, "its action-noise generator state is malformed")
    misfit = agent.extra_state_misfit(
        state.get("extra"), None if local is None else local.get("extra")
    )
    if misfit is not None:
        raise _fail(path, misfit)


def _restore_learning(agent: Agent, state: dict[str, Any], path: Path) -> None:
    """Optimizer, networks, step count, normalization statistics and this rank's random
    state and running returns (fresh, reproducible ones when the file was written by
    another number of processes)."""
    try:
        agent.load_optimizer_state(state["optimizer"])  # checks before it changes
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise _fail(path, f"its optimizer state does not fit this agent's ({error})") from error
    for name, weights in state["networks"].items():
        agent.networks[name].load_state_dict(weights)
    agent.num_timesteps = state["num_timesteps"]
    if state["obs_normalizer"] is not None and agent.obs_normalizer is not None:
        agent.obs_normalizer.load_state_dict(_statistics(state["obs_normalizer"]))
    if state["reward_normalizer"] is not None and agent.reward_normalizer is not None:
        agent.reward_normalizer.load_state_dict(
            {
                "stats": _statistics(state["reward_normalizer"]["stats"]),
                "returns": state["reward_normalizer"]["returns"].numpy().copy(),
            }
        )
    local = _local_part(agent, state)
    agent.load_extra_state(state.get("extra"), None if local is None else local.get("extra"))
    if local is not None:
        agent.generator.set_state(local["generator"])
        returns = local["reward_returns"]
        if agent.reward_normalizer is not None and returns is not None:
            agent.reward_normalizer.load_state_dict(
                {
                    "stats": agent.reward_normalizer.stats.state_dict(),
                    "returns": returns.numpy().copy(),
                }
            )
    else:
        agent.generator.manual_seed((agent._rank_seed + agent.num_timesteps) % 2**63)
        if agent.reward_normalizer is not None:  # rank 0's episodes are not this rank's
            agent.reward_normalizer.returns[:] = 0.0


EPISODE_ARRAYS = ("obs", "last_done", "episode_return", "episode_length")


def _environment_plan(
    agent: Agent, state: dict[str, Any], path: Path, trust_pickle: bool
) -> tuple[str, Any]:
    """How to bring back this rank's environments: ("state", saved data), ("envs", the
    unpickled vector env) or ("reset", why); everything checked, nothing changed yet."""
    local = _local_part(agent, state)
    if local is None:
        return "reset", f"written by {len(state['ranks'])} processes, resumed by {agent.world_size}"
    saved = local["environments"]
    if saved is None:
        return "reset", "a file written by save() without environments"
    if not all(type(saved.get(name)) is torch.Tensor for name in EPISODE_ARRAYS):
        raise _fail(path, "its episodes in progress are malformed")
    if any(saved[name].shape[:1] != (agent.n_envs,) for name in EPISODE_ARRAYS):
        return "reset", f"written with {saved['obs'].shape[0]} environments, not {agent.n_envs}"
    if saved.get("state") is not None:
        try:
            why = _vector_misfit(agent.envs, saved["state"])
        except (_BadDataError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise _fail(path, f"its environment state is malformed ({error})") from error
        return ("reset", why) if why is not None else ("state", saved)
    if type(saved.get("pickle")) is not bytes:
        return "reset", str(saved.get("why"))
    if not trust_pickle:
        return "reset", f"{saved.get('why')}; the checkpoint holds them pickled: {TRUST_HINT}"
    try:
        envs = cloudpickle.loads(saved["pickle"])
    except Exception as error:
        raise _fail(
            path, f"its pickled environments do not unpickle ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(envs, gymnasium.vector.VectorEnv) or envs.num_envs != agent.n_envs:
        raise _fail(
            path,
            f"its pickled environments are {_describe(envs)}, not "
            f"{agent.n_envs} vector environments",
        )
    return "envs", envs


def _restore_environments(
    agent: Agent, saved: dict[str, Any], plan: tuple[str, Any], path: Path
) -> None:
    how, payload = plan
    if how == "reset":
        warnings.warn(
            f"the checkpoint holds no environment state for this process ({payload}): the "
            "environments are reset and the episodes in progress start over",
            UserWarning,
            stacklevel=4,
        )
        agent._reset_environments(agent._rank_seed + agent.num_timesteps, update_statistics=False)
        return
    if how == "envs":
        agent.envs.close()
        agent.envs = payload
    else:
        try:
            _restore_vector_env(agent.envs, payload["state"])
        except (_BadDataError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise _fail(path, f"its environment state is malformed ({error})") from error
    agent._obs = saved["obs"].numpy().copy()
    agent._last_done = saved["last_done"].numpy().copy()
    agent._episode_return = saved["episode_return"].numpy().copy()
    agent._episode_length = saved["episode_length"].numpy().copy()


def _path(path: object, name: str = "path") -> Path:
    """``path`` as a Path.

    Raises:
        TypeError: it is not a str or os.PathLike.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    return Path(path)


def _saved_config(algorithm: type[Agent], fields: dict[str, Any], path: Path) -> AgentConfig:
    """The algorithm's config from the fields saved in the file."""
    fields = dict(fields)
    if type(fields.get("dtype")) is str:
        fields["dtype"] = DTYPES.get(fields["dtype"], fields["dtype"])
    try:
        return algorithm.Config(**fields)
    except (TypeError, ValueError) as error:
        raise _fail(
            path, f"its configuration is not a valid {algorithm.Config.__name__} ({error})"
        ) from error


def load(
    cls: type[Agent],
    path: str | Path,
    env: str | gymnasium.Env | None,
    trust_pickle: bool,
    overrides: dict[str, Any],
) -> Agent:
    """The agent saved at ``path``: see Agent.load."""
    path = _path(path)
    state = read(path)
    algorithm = _algorithm(state, cls, path)
    saved = _config(
        state,
        path,
        {key: value for key, value in overrides.items() if key == "env_kwargs"},
        trust_pickle,
    )
    config = _saved_config(algorithm, saved, path)
    if env is None:
        env = state["env"]
    if env is None:
        raise ValueError(f"{path} was saved from an unregistered environment instance: pass env=")
    agent = algorithm(env, config=config, **overrides)
    _check_fits(agent, state, path)
    _restore_learning(agent, state, path)
    return agent


def resume(agent: Agent, path: str | Path, total_steps: int, trust_pickle: bool) -> int:
    """Continue ``agent`` from the checkpoint at ``path`` of a run of ``total_steps``:
    everything ``save(environments=True)`` wrote. Returns the run's first step. Every
    check comes before any change: a file that does not fit leaves the agent as it was.

    Raises:
        FileNotFoundError, CheckpointError: as :func:`read`, or a file of another algorithm
            or whose networks do not fit the agent.
        ValueError: a checkpoint of a run of another length.
    """
    path = _path(path, "resume_from")
    state = read(path)
    _algorithm(state, type(agent), path)
    if state["run_steps"] not in (None, total_steps):
        raise ValueError(
            f"{path} is a checkpoint of a run of {state['run_steps']} steps, not "
            f"{total_steps}: pass the stopped run's total_steps"
        )
    _check_fits(agent, state, path)
    recent = state["recent_returns"]
    if not all(type(r) is float for r in recent):
        raise _fail(path, "its recent returns are not numbers")
    plan = _environment_plan(agent, state, path, trust_pickle)
    saved_seed = state["config"].get("seed")
    if agent._seed_drawn and type(saved_seed) is int:  # the stopped run's seed, not a new one
        agent.config = dataclasses.replace(agent.config, seed=saved_seed)
        agent._rank_seed = distributed.rank_seed(saved_seed, agent.group)
        agent._seed_drawn = False
    _restore_learning(agent, state, path)
    agent.recent_returns.clear()
    agent.recent_returns.extend(recent)
    local = _local_part(agent, state)
    _restore_environments(agent, None if local is None else local["environments"], plan, path)
    return state["run_start"] if state["run_start"] is not None else agent.num_timesteps
