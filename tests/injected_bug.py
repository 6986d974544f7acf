"""A return estimator with a bug in it, for tests/test_validation.py: a ValueError that no input check
raised must reach the user as a traceback (exit 1), not as a one-line input error."""


def estimator(*args, **kwargs):
    raise ValueError("an injected bug")
