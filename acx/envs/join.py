"""Several members' vector envs stepped as one: ``JoinedEnvs`` is Gymnasium's vector API over the
concatenation of the members' env columns (member k's envs are columns k*N to (k+1)*N - 1). Each member
keeps its own vector env (its seeds, its episodes, its own random draws), so it sees what
``acx train seed=s`` alone would see, and it can leave or join without disturbing the others.

By default each member's vector env is stepped in turn, whatever its kind (Gymnasium's sync and async
envs, envpool's, ale-py's Atari env). A native NumPy vector env whose class is listed in
``NATIVE_COLUMNS`` is stepped as one instance for all members instead: one NumPy call for P x N envs.
That listing is this module's small interface for such envs, and says what it relies on:

- the arrays that hold the envs' state, one column per env, and the axis of their columns
  (CartPoleVectorEnv: ``state`` (4, n), ``steps`` (n,), ``prev_done`` (n,));
- that the env draws the start states of the envs it resets with one
  ``np_random.uniform(low, high, size=(k, n_resetting))`` call, columns in order: the joined env's
  ``np_random`` (``MemberDraws``) serves each member's columns from that member's own generator.

The joined instance is made by the member envs' own factory (the same constructor arguments), and the
columns go back to the members' envs (``detach``) before the members are regrouped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

# native NumPy vector envs that join into one instance: their per-env state arrays and column axes
NATIVE_COLUMNS: dict[type, dict[str, int]] = {
    CartPoleVectorEnv: {"state": 1, "steps": 0, "prev_done": 0},
}
# what a vector env may report in ``info`` for the learner (acx.envs.atari's LearningSignals)
LEARNING_KEYS = ("learning_reward", "learning_terminated")


class MemberDraws:
    """The ``np_random`` of a joined native env: the start states of the envs that reset are drawn from
    their members' generators, member by member, as each member's own env would draw them."""

    def __init__(self, joined: Any, generators: list[np.random.Generator], bounds: np.ndarray):
        self.joined, self.generators, self.bounds = joined, generators, bounds

    def uniform(self, low: float, high: float, size: tuple[int, int]) -> np.ndarray:
        resetting = self.joined.prev_done
        parts = []
        for generator, a, b in zip(self.generators, self.bounds[:-1], self.bounds[1:], strict=True):
            n = int(resetting[a:b].sum())
            if n:
                parts.append(generator.uniform(low=low, high=high, size=(size[0], n)))
        return np.concatenate(parts, axis=1) if parts else np.empty(size)


class JoinedEnvs:
    """The members' vector envs as one vector env. ``make(n)`` makes a vector env of ``n`` envs of the
    members' kind (their factory's ``make_vector``), for the native path."""

    def __init__(self, envs: Sequence[Any], make: Callable[[int], Any] | None = None):
        self.envs, self.make = list(envs), make
        self.bounds = np.cumsum([0, *[e.num_envs for e in self.envs]])
        self.num_envs = int(self.bounds[-1])
        self.single_observation_space = self.envs[0].single_observation_space
        self.single_action_space = self.envs[0].single_action_space
        columns = NATIVE_COLUMNS.get(type(self.envs[0]))
        same = all(type(e) is type(self.envs[0]) for e in self.envs)
        native = make is not None and columns is not None and same and len(self.envs) > 1
        self.columns = columns if native else None
        self.joined = None
        if self.columns is not None:
            self.joined = make(self.num_envs)
            self._pull()

    def _pull(self) -> None:
        """The joined instance takes the members' columns, and draws resets from their generators."""
        for name, axis in self.columns.items():
            setattr(self.joined, name, np.concatenate([getattr(e, name) for e in self.envs], axis=axis))
        self.joined._np_random = MemberDraws(self.joined, [e.np_random for e in self.envs], self.bounds)

    def detach(self) -> None:
        """Each member's env takes back its columns of the joined instance (before a regroup)."""
        if self.joined is None:
            return
        for e, a, b in zip(self.envs, self.bounds[:-1], self.bounds[1:], strict=True):
            for name, axis in self.columns.items():
                setattr(e, name, np.take(getattr(self.joined, name), np.arange(a, b), axis=axis).copy())

    def reset(self) -> tuple[np.ndarray, dict]:
        """Each member's envs reset (no seed: their generators go on), as a member's own run starts."""
        obs = np.concatenate([e.reset()[0] for e in self.envs])
        if self.joined is not None:
            self._pull()
        return obs, {}

    def step(self, actions: np.ndarray):
        if self.joined is not None:
            return self.joined.step(actions)
        if len(self.envs) == 1:  # a cohort of one: its own env as it is
            return self.envs[0].step(actions)
        out = [e.step(actions[a:b]) for e, a, b in zip(self.envs, self.bounds[:-1], self.bounds[1:], strict=True)]
        obs, reward, terminated, truncated = (np.concatenate([o[i] for o in out]) for i in range(4))
        info = {key: np.concatenate([o[4][key] for o in out]) for key in LEARNING_KEYS if key in out[0][4]}
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """The joined instance only: each member's envs close with the member."""
        if self.joined is not None:
            self.joined.close()
