"""Gymnasium environments of probcalc, installed as ``probcalc.envs``.

This package imports only gymnasium and numpy/scipy (see DESIGN.md). Environments are
registered by string entry point when ``probcalc`` is imported, so defining one here
costs nothing until ``gymnasium.make("probcalc/...")`` asks for it.
"""
