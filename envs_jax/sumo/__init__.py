"""SUMO traffic-signal control through a pool of libsumo worker processes.

Modules: ``standardize`` (4 arms / 8 movements / 8 phases per traffic light), ``bridge``
(``SumoEnv``: B simulations in worker processes, numpy in and out), ``plan`` (a scenario's files
and what one worker runs), ``worker_handle`` (the parent's side of a worker process, clean-up at
exit), ``worker`` (the process side), ``features`` (observation, reward components, mask
context), ``metrics`` (tripinfo episode metrics), ``scenarios`` (registry entries ``sumo/...``),
``netgen`` (generated nets and trips), ``baselines`` (fixed-time, MaxPressure, evaluation),
``deps`` (install checks). Importing this package imports no SUMO package.
"""
