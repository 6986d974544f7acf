"""A training run: the loop over a cohort of members (a single run is a cohort of one), rollout
collection, evaluation, records (metrics, loggers, checkpoints), stop rules, signals, and the builders
that turn a config into these; ``acx eval`` and ``acx export`` read what runs leave."""
