"""Sweeps: which jobs of a multirun train together, the slots of a cohort process refilled from a
queue, and the Optuna search."""
