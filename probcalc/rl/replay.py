"""The replay buffer of the off-policy algorithms: preallocated tensors, written in a ring,
sampled uniformly with the agent's own generator."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

__all__ = ["ReplayBuffer", "Transitions"]


class Transitions(NamedTuple):
    """A batch of transitions (s, a, r, s', terminated), each field (batch, ...).

    Attributes:
        obs: the observations, flattened (batch, obs_dim), as the environment gave them.
        actions: the actions in the policy's space [-1, 1], (batch, act_dim).
        rewards: (batch,).
        next_obs: the observations after the step (the true final one at a time limit).
        terminated: whether s' is terminal (no bootstrap), (batch,) bool.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """``capacity`` transitions in preallocated tensors (allocated once, written in place;
    the oldest are overwritten when full). ``nbytes`` is the memory it holds: (2 obs_dim +
    act_dim + 1) x the dtype's size + 1 byte a transition, 165 MB for 10⁶ HalfCheetah
    transitions (17 + 17 + 6 + 1 numbers) in float32.

    Args:
        capacity: the number of transitions held (>= 1).
        obs_dim: the flattened observation size.
        act_dim: the flattened action size.
        dtype: the floating-point dtype of the stored values.

    Raises:
        ValueError: a size below 1.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, dtype: torch.dtype) -> None:
        for name, value in (("capacity", capacity), ("obs_dim", obs_dim), ("act_dim", act_dim)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.capacity = int(capacity)
        # torch.empty maps pages lazily: memory is used as the buffer fills
        self.obs = torch.empty((capacity, obs_dim), dtype=dtype)
        self.next_obs = torch.empty((capacity, obs_dim), dtype=dtype)
        self.actions = torch.empty((capacity, act_dim), dtype=dtype)
        self.rewards = torch.empty(capacity, dtype=dtype)
        self.terminated = torch.empty(capacity, dtype=torch.bool)
        self.position = 0  # where the next transition goes
        self.size = 0  # how many are held

    def _fields(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in Transitions._fields}

    @property
    def nbytes(self) -> int:
        """The bytes the full buffer holds."""
        return sum(t.element_size() * t.numel() for t in self._fields().values())

    def __len__(self) -> int:
        return self.size

    def add(self, transitions: Transitions) -> None:
        """Append k transitions (fields (k, ...)), overwriting the oldest when full."""
        count = len(transitions.rewards)
        if count == 0:
            return
        if count > self.capacity:  # only the newest fit
            transitions = Transitions(*(t[-self.capacity :] for t in transitions))
            self.position = (self.position + count - self.capacity) % self.capacity
            count = self.capacity
        end = self.position + count
        first = min(end, self.capacity) - self.position  # up to the end, then wrap
        for name, values in zip(Transitions._fields, transitions, strict=True):
            store = getattr(self, name)
            store[self.position : self.position + first] = values[:first]
            if first < count:
                store[: count - first] = values[first:]
        self.position = end % self.capacity
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> Transitions:
        """``batch_size`` transitions drawn uniformly with replacement using ``generator``.

        Raises:
            ValueError: the buffer is empty.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = torch.randint(0, self.size, (batch_size,), generator=generator)
        return Transitions(*(store[index] for store in self._fields().values()))

    def state_dict(self) -> dict[str, Any]:
        """The held transitions (the first ``size`` rows), position and size."""
        state: dict[str, Any] = {name: t[: self.size].clone() for name, t in self._fields().items()}
        state.update(position=self.position, size=self.size, capacity=self.capacity)
        return state

    def misfit(self, state: Any) -> str | None:
        """Why ``state`` cannot be loaded into this buffer (None: it can)."""
        if type(state) is not dict:
            return "its replay buffer is malformed"
        for key in ("position", "size", "capacity"):
            if type(state.get(key)) is not int:
                return "its replay buffer is malformed"
        size = state["size"]
        if state["capacity"] != self.capacity:
            return (
                f"its replay buffer holds {state['capacity']} transitions, this agent's "
                f"{self.capacity} (buffer_size)"
            )
        if not 0 <= size <= self.capacity or not 0 <= state["position"] < self.capacity:
            return "its replay buffer is malformed"
        for name, store in self._fields().items():
            saved = state.get(name)
            if (
                type(saved) is not torch.Tensor
                or saved.shape != (size, *store.shape[1:])
                or saved.dtype != store.dtype
            ):
                return f"its replay buffer's {name} do not fit this agent's"
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave (checked with :meth:`misfit` first)."""
        size = state["size"]
        for name, store in self._fields().items():
            store[:size] = state[name]
        self.position, self.size = state["position"], size
