"""Markov chain Monte Carlo with every chain in one batch, and the convergence diagnostics
of Vehtari et al. (2021), equal to ArviZ's.

- :func:`nuts` (multinomial NUTS, generalized U-turn criterion) and :func:`hmc` (fixed
  number of leapfrog steps), with Stan's windowed warmup; both return an
  :class:`MCMCResult`.
- :func:`rhat`, :func:`ess_bulk`, :func:`ess_tail`, :func:`mcse_mean` for draws shaped
  (chains, draws, *event); :func:`summary_table` and :func:`summary_rows` for the table
  users know from ArviZ and Stan.
- :meth:`MCMCResult.to_arviz` / :func:`to_inference_data` (ArviZ data) and :func:`plot`
  (trace and rank plots, matplotlib).
- ``constraints=`` names each coordinate's support (torch.distributions.constraints, or
  :data:`ordered_vector`); the chains move on the unconstrained space of ``biject_to``.
"""

from .diagnostics import (
    SummaryRow,
    ess_bulk,
    ess_tail,
    mcse_mean,
    rhat,
    summary_rows,
    summary_table,
)
from .export import to_inference_data
from .hmc import hmc
from .integrator import CompileFallbackWarning
from .nuts import nuts
from .plot import plot
from .result import MCMCResult
from .support import OrderedTransform, change_of_variables, ordered_vector
from .target import VmapFallbackWarning

__all__ = [
    "CompileFallbackWarning",
    "MCMCResult",
    "OrderedTransform",
    "SummaryRow",
    "VmapFallbackWarning",
    "change_of_variables",
    "ess_bulk",
    "ess_tail",
    "hmc",
    "mcse_mean",
    "nuts",
    "ordered_vector",
    "plot",
    "rhat",
    "summary_rows",
    "summary_table",
    "to_inference_data",
]
