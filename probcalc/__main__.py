"""``python -m probcalc``: the probcalc command (see probcalc.cli)."""

from probcalc.cli import main

main()
