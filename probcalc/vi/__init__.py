"""Variational inference: a Gaussian fitted to an unnormalized density by maximizing the
ELBO, with the pathwise gradient of :mod:`probcalc.mc` and the PSIS k-hat check.

- :func:`fit` (family "meanfield" or "fullrank") returns a :class:`VIResult`: the fitted
  torch distribution, the ELBO trace and k-hat.
"""

from .fit import Family, VIResult, fit

__all__ = ["Family", "VIResult", "fit"]
