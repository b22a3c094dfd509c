"""SUMO traffic-signal control through a pool of libsumo worker processes."""
