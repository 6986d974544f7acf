"""Env steps per second with random actions: Gymnasium's ``sync`` vector env vs envpool, one core.

    PYTHONPATH=. python bench/envpool_speed.py                      # Acrobot-v1, Pendulum-v1, 512 envs
    PYTHONPATH=. python bench/envpool_speed.py --envs 64 --ids CartPole-v1 --seconds 2

envpool runs with one worker thread (``num_threads=1``): through acx's adapter
(``env.vectorization=envpool``) where acx runs the id, and bare ``envpool.make`` always (Pendulum-v1
only bare: acx excludes it, its dynamics differ from Gymnasium's). Actions are drawn before the clock
starts, so the numbers are the envs' own stepping cost.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from acx.envs.factory import ENVPOOL_IDS, GymEnvFactory  # noqa: E402


def steps_per_second(envs, space: gym.Space, num_envs: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    block = 64
    if isinstance(space, gym.spaces.Discrete):
        actions = rng.integers(0, space.n, (block, num_envs))
    else:
        actions = rng.uniform(space.low, space.high, (block, num_envs, *space.shape)).astype(np.float32)
    envs.reset(seed=0)
    for t in range(10):  # warm-up
        envs.step(actions[t])
    steps, start = 0, time.perf_counter()
    while True:
        for t in range(block):
            envs.step(actions[t])
        steps += block
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", default="Acrobot-v1,Pendulum-v1")
    parser.add_argument("--envs", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import envpool

    rows = []
    for env_id in args.ids.split(","):
        space = gym.make(env_id).action_space
        sides = {"gymnasium sync": lambda env_id=env_id: gym.make_vec(env_id, args.envs, vectorization_mode="sync")}
        if env_id in ENVPOOL_IDS:
            factory = GymEnvFactory(env_id, vectorization="envpool")
            sides["acx envpool adapter"] = lambda factory=factory: factory.make_vector(args.envs, seed=0)
        sides["envpool (bare)"] = lambda env_id=env_id: envpool.make(
            env_id, env_type="gymnasium", num_envs=args.envs, seed=0, num_threads=1
        )
        for side, make in sides.items():
            envs = make()
            rows.append((env_id, side, steps_per_second(envs, space, args.envs, args.seconds)))
            envs.close()
    base = {env_id: sps for env_id, side, sps in rows if side == "gymnasium sync"}
    print(f"{args.envs} envs, random actions, one thread; env steps/s")
    print(f"{'env':<26}{'vector env':<22}{'steps/s':>12}{'vs sync':>9}")
    for env_id, side, sps in rows:
        print(f"{env_id:<26}{side:<22}{sps:>12,.0f}{sps / base[env_id]:>8.1f}x")


if __name__ == "__main__":
    main()
