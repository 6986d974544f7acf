"""Environments: the factories that ``conf/env`` builds (Gymnasium, envpool, Atari through ale-py), and
the joining of several members' vector envs into one. Nothing here imports torch or the run."""
