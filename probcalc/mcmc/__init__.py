"""Markov chain Monte Carlo with every chain in one batch, and the convergence diagnostics
of Vehtari et al. (2021), equal to ArviZ's.

- :func:`nuts` (multinomial NUTS, generalized U-turn criterion) and :func:`hmc` (fixed
  number of leapfrog steps), with Stan's windowed warmup; both return an
  :class:`MCMCResult`.
- :func:`rhat`, :func:`ess_bulk`, :func:`ess_tail`, :func:`mcse_mean` for draws shaped
  (chains, draws, *event); :func:`summary_table` and :func:`summary_rows` for the table
  users know from ArviZ and Stan.
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
from .hmc import hmc
from .nuts import nuts
from .result import MCMCResult

__all__ = [
    "MCMCResult",
    "SummaryRow",
    "ess_bulk",
    "ess_tail",
    "hmc",
    "mcse_mean",
    "nuts",
    "rhat",
    "summary_rows",
    "summary_table",
]
