"""The top eigenpairs of a symmetric curvature known by its products: the "lowrank"
structure of :func:`probcalc.laplace.fit` and :func:`probcalc.laplace.fit_module`.

torch has no eigensolver for a matrix given only as products (``torch.lobpcg`` takes the
matrix as a dense or sparse tensor, and needs d >= 3k), so scipy's ARPACK (implicitly
restarted Lanczos) runs on the products, with each vector moving between numpy and the
input's device; the results come back on that device, in its dtype.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg
import torch
from torch.func import vmap

from ..core.random import Seed, integer_seed

__all__ = ["check_rank", "top_eigenpairs"]

# scipy >= 1.15 draws ARPACK's random vectors (the start, and any restart it asks for) from
# an ``rng`` argument, earlier versions from ARPACK's own generator; the start vector is
# passed either way.
_EIGSH_TAKES_RNG = "rng" in inspect.signature(scipy.sparse.linalg.eigsh).parameters


def check_rank(rank: object, d: int) -> int:
    """``rank`` for the "lowrank" structure of a curvature of size d x d: an integer with
    1 <= rank <= d (rank = d keeps every eigenpair, as "full" does).

    Args:
        rank: the value given as ``rank=``.
        d: the number of parameters.

    Returns:
        rank as an int.

    Raises:
        ValueError: rank missing (None), not an integer, or outside 1..d; the message names
            the value received and the range.
    """
    integer = isinstance(rank, int | np.integer) and not isinstance(rank, bool)
    if not integer or not 1 <= int(rank) <= d:
        raise ValueError(
            f"structure='lowrank' needs rank= an integer with 1 <= rank <= d = {d}, got {rank!r}"
        )
    return int(rank)


def top_eigenpairs(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    rank: int,
    like: torch.Tensor,
    *,
    matrix: torch.Tensor | None = None,
    seed: Seed = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``rank`` largest eigenvalues (ascending) and their orthonormal eigenvectors of a
    symmetric d x d matrix A known by its products ``matvec(v) = A v``.

    ARPACK's Lanczos (scipy.sparse.linalg.eigsh, which="LA") on the products when
    rank < d - 1, from a random start vector; otherwise (where ARPACK cannot go)
    torch.linalg.eigh of ``matrix``, or of A formed from d products (vmapped). Given
    ``matrix``, eigh runs on it whatever the rank, and nothing is drawn.

    Args:
        matvec: v (d,) -> A v (d,), traceable by torch.func.vmap for the dense path.
        rank: the number of eigenpairs, 1 <= rank <= d (see :func:`check_rank`).
        like: a tensor whose numel is d and whose dtype and device the results take.
        matrix: A itself, when it is already formed.
        seed: ARPACK's start vector (and any restart vector it asks for): an int (the same
            eigenpairs, bit for bit, on every call), a torch.Generator (one int drawn from
            it) or None (fresh entropy; the eigenpairs then agree to ARPACK's tolerance
            only).

    Returns:
        (eigenvalues (rank,), eigenvectors (d, rank)), on ``like``'s device, in its dtype.
    """
    d = like.numel()
    dtype, device = like.dtype, like.device
    if matrix is None and rank >= d - 1:
        matrix = vmap(matvec)(torch.eye(d, dtype=dtype, device=device))
    if matrix is not None:
        values, vectors = torch.linalg.eigh(matrix)
        return values[-rank:], vectors[:, -rank:]

    def numpy_matvec(v: np.ndarray) -> np.ndarray:
        product = matvec(torch.as_tensor(v.reshape(-1), dtype=dtype, device=device))
        return product.detach().cpu().numpy()

    operator = scipy.sparse.linalg.LinearOperator((d, d), matvec=numpy_matvec, dtype=np.float64)
    rng = np.random.default_rng(integer_seed(seed))
    start = rng.uniform(-1.0, 1.0, size=d)
    options = {"rng": rng} if _EIGSH_TAKES_RNG else {}
    values, vectors = scipy.sparse.linalg.eigsh(operator, k=rank, which="LA", v0=start, **options)
    return (
        torch.as_tensor(values, dtype=dtype, device=device),
        torch.as_tensor(vectors, dtype=dtype, device=device),
    )
