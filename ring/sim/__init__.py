"""Deterministic simulation of a ringkv cluster (TigerBeetle's VOPR, FoundationDB's simulator).

The production node core (``ring.core.node.Node``) runs K times in one process over a simulated
network, disks and clocks, with every choice drawn from one ``random.Random(seed)``. A run has a
safety phase (clients and faults) and a liveness phase (heal, converge), then checkers judge the
history; a failing seed replays exactly: ``RINGKV_SIM_SEED=<n> python -m ring.sim``.
"""

from ring.sim.history import Violation
from ring.sim.runner import RunResult, SimConfig, run_seed

__all__ = ["RunResult", "SimConfig", "Violation", "run_seed"]
