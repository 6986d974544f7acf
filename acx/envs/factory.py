"""Environment factories: vectorised training envs, evaluation envs, and a single env for rendering.

A factory is what ``conf/env/*.yaml`` instantiates. Other families (Atari) provide a factory with the
same four members: ``spec_id``, ``observation_space``/``action_space``, ``make_vector`` and ``make_single``.

``vectorization: envpool`` steps the classic-control envs in envpool's C++ vector env
(:class:`EnvpoolVectorEnv`, the optional ``envpool`` extra); ``tests/test_envpool.py`` checks its
observations, rewards and episode ends against Gymnasium's envs.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from acx.envs.dict_obs import PackDict, check_keys
from acx.errors import ConfigError


class UnknownEnvError(ConfigError):
    """An env id that Gymnasium does not know."""


def check_env_id(env_id: str, module: str | None = None) -> None:
    """Raise a one-line error with close registered ids if ``env_id`` is unknown."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    where = f"registered by importing {module!r}" if module else "a registered Gymnasium environment"
    if not module and ":" not in env_id and not close:
        hint = "; an env of your own: env.id=<module>:<EnvId>, the module registering it"
    raise UnknownEnvError(f"env.id={env_id!r} is not {where}{hint}")


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """Gymnasium's ``module:EnvId``: the module to import first (None if none) and the registered id."""
    module, sep, name = env_id.rpartition(":")
    return (module, name) if sep else (None, env_id)


def import_env_module(module: str, env_id: str) -> Path | None:
    """Import the module that registers a user's env (as ``gym.make("module:EnvId")`` does); one line
    naming the module and the error if it fails. Returns the folder it was imported from (the
    ``sys.path`` entry), which checkpoints record so that ``acx eval`` finds it from anywhere."""
    # from the folder acx runs in, as `python -m` and a script calling gym.make would (appended: an
    # installed package of the same name wins); PWD too, for launcher workers that start elsewhere
    for folder in (str(Path.cwd()), os.environ.get("PWD")):
        add_import_path(folder)
    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # not found, or the module itself raised
        detail = str(exc).splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"env.id={env_id!r}: cannot import module {module!r} ({type(exc).__name__}: {detail})"
        ) from None
    file = getattr(imported, "__file__", None)
    if not file:
        return None
    depth = module.count(".") + (Path(file).name == "__init__.py")
    return Path(file).resolve().parents[depth]


def add_import_path(folder: str | None) -> None:
    """Let an env module be imported from ``folder`` (a checkpoint's record of where it was found)."""
    if folder and Path(folder).is_dir() and folder not in sys.path:
        sys.path.append(folder)


class OneHot(gym.ObservationWrapper):
    """Discrete observations (FrozenLake, Taxi) as float32 one-hot vectors, as SB3 encodes them."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.n, self.start = int(env.observation_space.n), int(env.observation_space.start)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.n,), np.float32)

    def observation(self, observation):
        onehot = np.zeros(self.n, dtype=np.float32)
        onehot[int(observation) - self.start] = 1.0
        return onehot


class Wrap:
    """``env.wrappers``: Gymnasium wrappers (``_target_`` configs, applied in order, the first one
    innermost), as rl-baselines3-zoo's ``env_wrapper``; a picklable callable for ``gym.make_vec``."""

    def __init__(self, wrappers: Sequence[Mapping[str, Any]], one_hot: bool = False, pack: bool = False):
        self.wrappers, self.one_hot, self.pack = [dict(w) for w in wrappers], one_hot, pack

    def __call__(self, env: gym.Env) -> gym.Env:
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        for i, wrapper in enumerate(self.wrappers):
            try:
                env = instantiate(wrapper, env=env)
            except InstantiationException as exc:
                cause = exc.__cause__ or exc
                raise ConfigError(f"env.wrappers[{i}]: {str(cause).strip().splitlines()[0]}") from None
        if self.pack:  # Dict observations as one flat vector (acx.envs.dict_obs)
            return PackDict(env)
        return OneHot(env) if self.one_hot else env

    def __bool__(self) -> bool:
        return bool(self.wrappers) or self.one_hot or self.pack


# the action spaces acx has a policy head for (acx.algo.networks): categorical, one categorical per part, a Gaussian
ACTION_SPACES = (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary, gym.spaces.Box)


def check_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """One line naming the space for what acx cannot train on: observations that are not Box, Discrete
    or a Dict of those (Tuple, Text, Graph, Sequence, ...), actions without a head (Tuple, Text, ...)."""
    if isinstance(observation_space, gym.spaces.Dict):
        check_keys(observation_space, env_id)
    elif not isinstance(observation_space, (gym.spaces.Box, gym.spaces.Discrete)):
        hint = (
            " (a Tuple: flatten it with env.wrappers=[{_target_: gymnasium.wrappers.FlattenObservation}])"
            if isinstance(observation_space, gym.spaces.Tuple)
            else ""
        )
        raise ConfigError(
            f"env: {env_id} has {observation_space} observations; acx trains on Box, Discrete and Dict "
            f"observations{hint}"
        )
    if not isinstance(action_space, ACTION_SPACES):
        raise ConfigError(
            f"env: {env_id} has {action_space} actions; acx supports Discrete, MultiDiscrete, MultiBinary and Box "
            "actions"
        )


def _cartpole_terminated(obs: np.ndarray, reward: np.ndarray) -> np.ndarray:
    # Gymnasium's CartPole: the cart leaves [-2.4, 2.4] or the pole leans more than 12 degrees
    return (np.abs(obs[:, 0]) > 2.4) | (np.abs(obs[:, 2]) > 12 * 2 * np.pi / 360)


def _acrobot_terminated(obs: np.ndarray, reward: np.ndarray) -> np.ndarray:
    return reward == 0.0  # Acrobot pays -1 on every step but the one that reaches the line


def _mountain_car_terminated(obs: np.ndarray, reward: np.ndarray) -> np.ndarray:
    return (obs[:, 0] >= 0.5) & (obs[:, 1] >= 0.0)  # at the flag (0.5) and not rolling back


def _mountain_car_continuous_terminated(obs: np.ndarray, reward: np.ndarray) -> np.ndarray:
    return reward > 50.0  # +100 at the flag, minus 0.1 * action**2 <= 0.1; -0.1 * action**2 <= 0 elsewhere


# The ids envpool runs as Gymnasium does (tests/test_envpool.py), each with the test of its terminal
# states: envpool reports an episode that ends on the time limit's last step as truncated only, and
# Gymnasium's TimeLimit as terminated *and* truncated, so the adapter restores ``terminated`` there.
ENVPOOL_IDS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Acrobot-v1": _acrobot_terminated,
    "CartPole-v0": _cartpole_terminated,
    "CartPole-v1": _cartpole_terminated,
    "MountainCar-v0": _mountain_car_terminated,
    "MountainCarContinuous-v0": _mountain_car_continuous_terminated,
}
# Ids envpool has whose dynamics are not Gymnasium's
ENVPOOL_DIFFERS = {
    "Pendulum-v1": "envpool's Pendulum-v1 moves the angle by the unclipped speed when |thdot| reaches 8, "
    "Gymnasium's by the clipped one",
}
ENVPOOL_THREADS = 1  # one C++ worker thread per pool: envs step in the calling process's core


class EnvpoolVectorEnv(gym.vector.VectorEnv):
    """envpool's C++ vector env behind Gymnasium's vector API, with Gymnasium's next-step autoreset.

    - Autoreset: envpool's own is next-step: the step that ends an episode returns its real final
      observation, the env's next step only resets it (its action ignored) and returns the start
      observation with reward 0, terminated and truncated False -- enforced here as well.
    - Seeding: envpool seeds each env once, when the pool is made (env i with ``seed + i``, as a
      Gymnasium vector env's ``reset(seed=seed)`` seeds its sub-envs); its ``reset(seed=...)`` ignores
      the seed. So ``reset(seed=s)`` here makes a new pool seeded with s (about 10 ms for 512 envs)
      and the same s always gives the same start states; ``reset()`` resets all envs with their
      generators going on. Start states come from envpool's generator, not NumPy's: a seed gives
      other start states than Gymnasium's envs do for it.
    - Time limit: ``max_episode_steps`` (Gymnasium's registered limit unless given). An episode that
      terminates on the limit's last step is terminated and truncated, as under Gymnasium's TimeLimit.
    - Observations are float32 arrays, rewards float32, ``info`` is envpool's (``elapsed_step``, ...).
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        single_observation_space: gym.Space,
        single_action_space: gym.Space,
        max_episode_steps: int,
        num_threads: int = ENVPOOL_THREADS,
    ):
        import envpool  # ~1 s to import: only where a run asks for it

        self._envpool = envpool
        self.env_id, self.num_envs, self.num_threads = env_id, num_envs, num_threads
        self.max_episode_steps = max_episode_steps
        self._terminated = ENVPOOL_IDS[env_id]
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = gym.vector.utils.batch_space(single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(single_action_space, num_envs)
        self._pool = None
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def _make_pool(self, seed: int | list[int] | None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        seeds = [int(s) % 2**31 for s in seed] if isinstance(seed, list | tuple) else None
        if seeds is None:
            seeds = [(int(seed) + i) % 2**31 for i in range(self.num_envs)]  # envpool takes int32 seeds
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset(seed=...) got {len(seeds)} seeds for {self.num_envs} envs")
        if self._pool is not None:
            self._pool.close()
        self._pool = self._envpool.make(
            self.env_id,
            env_type="gymnasium",
            num_envs=self.num_envs,
            seed=seeds,
            num_threads=self.num_threads,
            max_episode_steps=self.max_episode_steps,
        )

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if seed is not None or self._pool is None:
            self._make_pool(seed)
        obs, info = self._pool.reset()
        self._autoreset[:] = False
        return obs, info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self._pool.step(np.asarray(actions))
        if self._autoreset.any():  # envpool already returns these on its reset steps
            reward[self._autoreset] = 0.0
            terminated[self._autoreset] = False
            truncated[self._autoreset] = False
        if truncated.any():  # ended on the time limit's last step: terminated too if at a terminal state
            cut = np.flatnonzero(truncated)
            terminated[cut] |= self._terminated(obs[cut], reward[cut])
        self._autoreset = terminated | truncated
        return obs, reward, terminated, truncated, info

    def close_extras(self, **kwargs) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def check_envpool(env_id: str, kwargs: dict[str, Any]) -> None:
    """Raise a one-line error unless envpool is installed and runs ``env_id`` as Gymnasium does."""
    if env_id in ENVPOOL_DIFFERS:
        raise ConfigError(f"env.vectorization=envpool cannot run {env_id}: {ENVPOOL_DIFFERS[env_id]}")
    if env_id not in ENVPOOL_IDS:
        raise ConfigError(f"env.vectorization=envpool cannot run {env_id!r}; it runs {', '.join(sorted(ENVPOOL_IDS))}")
    if kwargs:
        raise ConfigError(f"env.kwargs: envpool's {env_id} takes none (got {', '.join(sorted(kwargs))})")
    if importlib.util.find_spec("envpool") is None:
        raise ConfigError("env.vectorization=envpool needs the envpool package: pip install 'acx[envpool]'")


class GymEnvFactory:
    """Builds Gymnasium envs by id, picking the fastest vector implementation the env offers."""

    def __init__(
        self,
        id: str,
        kwargs: dict[str, Any] | None = None,
        vectorization: str = "auto",
        max_episode_steps: int | None = None,
        reward_threshold: float | None = None,
        wrappers: Sequence[Mapping[str, Any]] | None = None,
    ):
        from omegaconf import OmegaConf  # the config's nodes as plain data (built with _recursive_=False)

        kwargs, wrappers = (OmegaConf.to_container(x, resolve=True) if OmegaConf.is_config(x) else x
                            for x in (kwargs, wrappers))  # fmt: skip
        module, name = split_env_id(id)
        # a user's env: env.id=my_pkg.envs:Maze-v0 imports my_pkg.envs (which registers Maze-v0) first
        self.module = module
        self.module_path = import_env_module(module, id) if module else None
        # importing acx.envs.atari registers ALE's ids with Gymnasium; an id Gymnasium already knows as a
        # non-ALE env (CartPole) needs no ale-py import (~6 MiB of memory, ~0.06 s of start-up)
        if name not in gym.registry or str(gym.spec(name).entry_point).startswith("ale_py"):
            from acx.envs.atari import is_atari_id

            if is_atari_id(name):  # raw 210x160 RGB frames: Atari needs the preprocessing of env=atari
                raise ConfigError(f"env.id={id!r} is an Atari game: train it with env=atari env.id={name}")
        check_env_id(name, module)
        self.id = name  # the registered id (summaries, reports, reference scores)
        self.make_id = id  # what gym.make is given: with its module, so that subprocess envs import it too
        self.kwargs = dict(kwargs or {})
        if vectorization == "envpool":
            if module or wrappers:
                raise ConfigError("env.vectorization=envpool runs envpool's own envs: no env module or wrappers")
            check_envpool(name, self.kwargs)
        self.vectorization = vectorization
        self.max_episode_steps = max_episode_steps
        self.spec = gym.spec(name)
        self.wrap = Wrap(wrappers or [])
        try:
            probe = self.make_single()
        except TypeError as exc:  # a keyword the env's constructor (or a wrapper's) does not take
            raise ConfigError(f"env.kwargs: {id} does not take them ({exc})") from None
        check_spaces(name, probe.observation_space, probe.action_space)
        # the space the network is built for: a Dict's keys are packed into one vector at the env and split
        # again by the network (acx.envs.dict_obs); Discrete observations (FrozenLake, Taxi) are one-hot encoded
        self.observation_space = probe.observation_space
        if isinstance(probe.observation_space, (gym.spaces.Discrete, gym.spaces.Dict)):
            self.wrap.one_hot = isinstance(probe.observation_space, gym.spaces.Discrete)
            self.wrap.pack = not self.wrap.one_hot
            probe.close()
            probe = self.make_single()
            if self.wrap.one_hot:
                self.observation_space = probe.observation_space
        self.action_space = probe.action_space
        self.episode_limit = probe.spec.max_episode_steps if probe.spec else None
        probe.close()
        # the env's own "solved" bar unless the config names one
        self.reward_threshold = reward_threshold if reward_threshold is not None else self.spec.reward_threshold

    def _mode(self) -> str:
        if self.vectorization != "auto":
            return self.vectorization
        # a native vector env (CartPole's) steps all copies in one NumPy call; it takes no wrappers
        return "vector_entry_point" if self.spec.vector_entry_point and not self.wrap else "sync"

    def make_vector(self, num_envs: int, seed: int | None = None) -> gym.vector.VectorEnv:
        """``num_envs`` copies in one vector env with next-step autoreset, reset with ``seed``."""
        mode = self._mode()
        if mode == "envpool":
            envs = EnvpoolVectorEnv(
                self.id,
                num_envs,
                self.observation_space,
                self.action_space,
                self.max_episode_steps or self.episode_limit,
            )
            envs.reset(seed=seed)
            envs.action_space.seed(seed)
            return envs
        kwargs = dict(self.kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        if self.wrap:
            if mode == "vector_entry_point":
                raise ConfigError(f"env.vectorization=vector_entry_point: {self.id}'s vector env takes no wrappers")
            kwargs["wrappers"] = [self.wrap]
        envs = gym.make_vec(self.make_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
        return envs

    def make_single(self, render_mode: str | None = None) -> gym.Env:
        """One env, e.g. for rendering to a window or to video frames."""
        kwargs = dict(self.kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        if render_mode is not None:  # an env of a user's own may take no render_mode at all
            kwargs["render_mode"] = render_mode
        env = gym.make(self.make_id, **kwargs)
        return self.wrap(env) if self.wrap else env

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """What the env is sent for sampled actions: Box actions clipped to the space's bounds; the
        indices of (Multi)Discrete actions shifted by the space's ``start``, in the space's dtype."""
        space = self.action_space
        if isinstance(space, gym.spaces.Box):
            return np.clip(actions, space.low, space.high)
        if isinstance(space, gym.spaces.Discrete):
            return actions + int(space.start) if space.start else actions
        if isinstance(space, gym.spaces.MultiDiscrete):  # the head's parts are the flattened nvec
            actions = actions + np.asarray(space.start).reshape(-1)
        return actions.reshape(*actions.shape[:-1], *space.shape).astype(space.dtype, copy=False)
