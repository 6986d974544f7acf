"""The algorithm's maths: networks, normalisation, return/advantage estimators, losses, optimizers, the
update and the stacking of members. Nothing here imports from the run, the envs, the sweeps or the analysis."""
