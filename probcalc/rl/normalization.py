"""Running normalization of observations and rewards, saved with the agent.

- Observations: (o - mean) / sqrt(var + eps), clipped, with the mean and variance of every
  observation seen so far.
- Rewards: r / sqrt(var(R) + eps), clipped, where R is the running discounted return
  R_t = γ R_(t-1) + r_t of each environment, reset at episode ends. γ is the algorithm's
  discount, not a default of 0.99 (vwxyzjn/cleanrl #203).

The statistics are float64 numpy arrays updated by Chan et al.'s parallel rule, so a batch
update, or a merge of two sets of statistics, gives the mean and variance of the
concatenated data exactly (up to rounding), as numpy would compute them. Across processes
(torch.distributed), ``synchronize`` merges every rank's new data in rank order, so all
ranks hold the statistics of all the data seen by any rank, bit for bit alike.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..core import distributed

__all__ = ["ObservationNormalizer", "RewardNormalizer", "RunningMeanStd"]


def _shape(shape: object) -> tuple[int, ...]:
    """A shape: an int or a sequence of non-negative ints; TypeError/ValueError otherwise."""
    items = (shape,) if isinstance(shape, numbers.Integral) else shape
    if (
        isinstance(items, str)
        or not isinstance(items, tuple | list)
        or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in items)
    ):
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}")
    if any(n < 0 for n in items):
        raise ValueError(f"shape must not have negative sizes, got {shape!r}")
    return tuple(int(n) for n in items)


def _real(value: object, name: str, *, minimum: float, strict: bool, finite: bool) -> float:
    """A real number above ``minimum`` (or at it, unless ``strict``), finite if asked."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    above = value > minimum if strict else value >= minimum
    if not above or (finite and not math.isfinite(value)):
        relation = ">" if strict else ">="
        kind = "a finite number " if finite else "a number "
        raise ValueError(f"{name} must be {kind}{relation} {minimum}, got {value}")
    return float(value)


def _array(values: object, name: str) -> np.ndarray:
    """``values`` as a float64 array of finite real numbers; TypeError/ValueError otherwise."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got an array of dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} must be finite, got values such as {array[~np.isfinite(array)][:3].tolist()}"
        )
    return array


class RunningMeanStd:
    """Mean and (population) variance of a stream of arrays of a fixed shape.

    Args:
        shape: the shape of one item.
        shared: the statistics are shared across processes: ``synchronize`` merges the
            ranks' data added by ``update`` since the previous call (every rank must make the
            same calls; a ``merge`` into shared statistics is overwritten by it).
    """

    def __init__(self, shape: tuple[int, ...] = (), shared: bool = False) -> None:
        shape = _shape(shape)
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 0
        # across processes: the statistics every rank agreed on at the last synchronize(),
        # and this rank's data since (the rank-local view above is their merge)
        self._agreed = RunningMeanStd(shape) if shared else None
        self._pending = RunningMeanStd(shape) if shared else None

    def update(self, batch: np.ndarray) -> None:
        """Add a batch (n, *shape) of items.

        Raises:
            ValueError: items of another shape, or values that are not finite.
            TypeError: values that are not real numbers.
        """
        batch = _array(batch, "batch")
        if batch.ndim != self.mean.ndim + 1 or batch.shape[1:] != self.mean.shape:
            raise ValueError(f"batch must have shape (n, *{self.mean.shape}), got {batch.shape}")
        if batch.shape[0] == 0:
            return
        self.merge(batch.mean(axis=0), batch.var(axis=0), batch.shape[0])
        if self._pending is not None:
            self._pending.merge(batch.mean(axis=0), batch.var(axis=0), batch.shape[0])

    def synchronize(self, group: distributed.Group | bool = False) -> None:
        """Across processes: every rank's statistics become those of the data every rank
        has added, merged in rank order onto the statistics agreed at the previous call.
        One all_gather of (count, mean, var); nothing for unshared statistics."""
        if group is False or self._agreed is None:
            return
        pending = self._pending
        row = np.concatenate([[pending.count], pending.mean.reshape(-1), pending.var.reshape(-1)])
        rows = distributed.gather_rows(torch.from_numpy(row), group).numpy()
        size = self.mean.size
        for part in rows:
            count = int(part[0])
            if count > 0:
                self._agreed.merge(
                    part[1 : 1 + size].reshape(self.mean.shape),
                    part[1 + size :].reshape(self.mean.shape),
                    count,
                )
        self.mean, self.var = self._agreed.mean.copy(), self._agreed.var.copy()
        self.count = self._agreed.count
        self._pending = RunningMeanStd(self.mean.shape)

    @property
    def agreed_count(self) -> int:
        """The count every rank agreed on at the last synchronize (the count if unshared)."""
        return self.count if self._agreed is None else self._agreed.count

    def _copy(self) -> RunningMeanStd:
        copy = RunningMeanStd(self.mean.shape)
        copy.load_state_dict(self.state_dict())
        return copy

    def merge(self, mean: np.ndarray, var: np.ndarray, count: int) -> None:
        """Combine with the statistics (mean, population var, count) of other data."""
        if self.count == 0:
            self.mean, self.var = np.array(mean, np.float64), np.array(var, np.float64)
            self.count = count
            return
        total = self.count + count
        delta = mean - self.mean
        # Chan, Golub and LeVeque (1979): M2 = M2_a + M2_b + delta² n_a n_b / n
        m2 = self.var * self.count + var * count + delta**2 * self.count * count / total
        self.mean = self.mean + delta * count / total
        self.var = m2 / total
        self.count = total

    def usable_var(self) -> np.ndarray:
        """The variance to scale by: 1 until two items are in (one item's variance is 0,
        and dividing by it would blow the first values up to the clip)."""
        return self.var if self.count > 1 else np.ones_like(self.var)

    def state_dict(self) -> dict[str, object]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.mean = np.array(state["mean"], dtype=np.float64)
        self.var = np.array(state["var"], dtype=np.float64)
        self.count = int(state["count"])
        if self._agreed is not None:  # every rank loads the same state: it is the agreed one
            self._agreed, self._pending = self._copy(), RunningMeanStd(self.mean.shape)


class ObservationNormalizer:
    """(o - mean) / sqrt(var + eps), clipped to ±clip, with running statistics.

    Args:
        shape: the shape of one observation.
        clip: the bound of the normalized values (SB3's VecNormalize uses 10).
        eps: added to the variance.
        shared: statistics shared across processes (see RunningMeanStd).
    """

    def __init__(
        self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8, shared: bool = False
    ) -> None:
        self.stats = RunningMeanStd(shape, shared)
        self.clip = _real(clip, "clip", minimum=0.0, strict=True, finite=False)
        self.eps = _real(eps, "eps", minimum=0.0, strict=False, finite=True)

    def update(self, observations: np.ndarray) -> None:
        self.stats.update(observations)

    def state_dict(self) -> dict[str, object]:
        return self.stats.state_dict()

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.stats.load_state_dict(state)

    def __call__(self, observations: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """The normalized observations, shape (..., *shape), in ``dtype``.

        Raises:
            ValueError: observations whose trailing dimensions are not ``shape``, or that
                are not finite.
            TypeError: values that are not real numbers.
        """
        observations = _array(observations, "observations")
        item = self.stats.mean.shape
        trailing = observations.shape[observations.ndim - len(item) :]
        if observations.ndim < len(item) or trailing != item:
            raise ValueError(
                f"observations must have shape (..., *{item}), got {observations.shape}"
            )
        scaled = (observations - self.stats.mean) / np.sqrt(self.stats.usable_var() + self.eps)
        return np.clip(scaled, -self.clip, self.clip).astype(dtype)


class RewardNormalizer:
    """r / sqrt(var(R) + eps), clipped, R the discounted return of each environment.

    Args:
        n_envs: the number of environments stepped together.
        gamma: the algorithm's discount.
        clip: the scaled rewards are clipped to [-clip, clip].
        eps: added to the variance before the square root.
        shared: as for :class:`ObservationNormalizer`: the statistics are merged over the
            ranks of a process group.
    """

    def __init__(
        self, n_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8, shared: bool = False
    ) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, numbers.Integral) or n_envs < 1:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        gamma = _real(gamma, "gamma", minimum=0.0, strict=False, finite=True)
        if gamma > 1:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        self.stats = RunningMeanStd((), shared)
        self.returns = np.zeros(int(n_envs), dtype=np.float64)
        self.gamma = gamma
        self.clip = _real(clip, "clip", minimum=0.0, strict=True, finite=False)
        self.eps = _real(eps, "eps", minimum=0.0, strict=False, finite=True)

    def update(self, rewards: np.ndarray, done: np.ndarray, skip: np.ndarray | None = None) -> None:
        """Add one step's rewards (n_envs,). ``done`` marks the episodes that ended with this
        step; ``skip`` the environments whose step was an autoreset (no transition).

        Raises:
            ValueError: arrays not of shape (n_envs,), or rewards that are not finite.
            TypeError: rewards that are not real numbers.
        """
        rewards = _array(rewards, "rewards")
        done, skip = self._mask(done, "done"), None if skip is None else self._mask(skip, "skip")
        if rewards.shape != self.returns.shape:
            raise ValueError(
                f"rewards must have shape {self.returns.shape} (n_envs), got {rewards.shape}"
            )
        live = np.ones(len(rewards), dtype=bool) if skip is None else ~skip
        self.returns = np.where(live, self.returns * self.gamma + rewards, self.returns)
        self.stats.update(self.returns[live])
        self.returns[done] = 0.0

    def _mask(self, values: object, name: str) -> np.ndarray:
        array = np.asarray(values)
        if array.dtype.kind not in "biuf" or array.shape != self.returns.shape:
            raise ValueError(
                f"{name} must be booleans of shape {self.returns.shape} (n_envs), got {array!r:.80}"
            )
        return array.astype(bool)

    def state_dict(self) -> dict[str, object]:
        return {"stats": self.stats.state_dict(), "returns": self.returns.copy()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.stats.load_state_dict(state["stats"])
        returns = np.array(state["returns"], dtype=np.float64)
        # the episodes in progress belong to the saved environments; another number of
        # environments starts them over
        self.returns = (
            returns if returns.shape == self.returns.shape else np.zeros_like(self.returns)
        )

    def __call__(self, rewards: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """The scaled rewards, clipped, in ``dtype``.

        Raises:
            ValueError: rewards that are not finite. TypeError: not real numbers.
        """
        scaled = _array(rewards, "rewards") / np.sqrt(self.stats.usable_var() + self.eps)
        return np.clip(scaled, -self.clip, self.clip).astype(dtype)
