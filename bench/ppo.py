"""acx PPO against Stable-Baselines3 PPO on this machine: writes the "PPO" section of
docs/benchmarks.md and the raw numbers to docs/ppo.json.

    make bench-ppo                  # creates bench/.venv-sb3 if needed, then runs this
    python bench/ppo.py --sb3-python bench/.venv-sb3/bin/python [--seeds 10] [--pendulum-seeds 5]
    python bench/ppo.py --report-only    # rewrite the section from docs/ppo.json

Both sides get rl-baselines3-zoo's hyperparams/ppo.yml settings (copied below, so no rl_zoo3 install is
needed). Every run is a fresh process that prints one JSON line: ``python bench/ppo.py acx ...`` for
acx (through bench/acx_side.py's ``run_train``, the real config tree), ``<sb3 venv>/python
bench/ppo.py sb3 ...`` for SB3 (that side never imports acx). The sides alternate run by run, one torch
thread each. Both evaluate every ``eval_every`` env steps over 10 deterministic episodes on 10 envs
and stop at the first mean >= the threshold; wall time counts from the first env step and includes
the evaluations.

    CartPole-v1: n_envs 8, n_steps 32, batch_size 256 (8 x 32: one minibatch per epoch), n_epochs 20,
                 gamma 0.98, gae_lambda 0.8, ent_coef 0.0, learning_rate lin_1e-3, clip_range lin_0.2,
                 n_timesteps 1e5 (SB3 PPO's defaults for the rest: vf_coef 0.5, max_grad_norm 0.5,
                 normalize_advantage, Adam eps 1e-5, separate 64x64 tanh actor and critic)
    Pendulum-v1: n_envs 4, n_steps 1024, batch_size 64 (64 minibatches of 4096), n_epochs 10, gamma 0.9,
                 gae_lambda 0.95, ent_coef 0.0, learning_rate 1e-3, clip_range 0.2, n_timesteps 1e5;
                 the zoo's use_sde=True is off on both sides (acx has no gSDE): experiment=ppo_pendulum
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from bench.compare import cpu_name, median_min_max, run, save_and_report, versions  # the A2C bench's helpers

ROOT = Path(__file__).resolve().parent.parent
SOLVED = {"cartpole": 475.0, "pendulum": -200.0}
BUDGET = 100_000  # the zoo's n_timesteps for both
EVAL_EVERY = {"cartpole": 2000, "pendulum": 8192}
BEGIN, END = "<!-- PPO: written by bench/ppo.py -->", "<!-- end of bench/ppo.py's section -->"

# the zoo's CartPole-v1 entry in acx's keys (clip_range lin_0.2: the clip follows the linear lr schedule)
ACX_ZOO_CARTPOLE = [
    "algo=ppo", "network=mlp", "algo.num_envs=8", "algo.n_steps=32", "algo.minibatches=1", "algo.epochs=20",
    "algo.gamma=0.98", "algo.advantage.gae_lambda=0.8", "algo.loss.ent_coef=0.0", "algo.loss.vf_coef=0.5",
    "algo.loss.clip_range=0.2", "algo.loss.clip_range_vf=null", "algo.loss.anneal_clip=true",
    "algo.loss.normalize_advantage=true", "algo.max_grad_norm=0.5", "optimizer=adam", "optimizer.lr=1e-3",
    "optimizer.eps=1e-5", "lr_schedule=linear",
]  # fmt: skip
ARMS = {  # name: (side, task, what it runs)
    "acx_zoo": ("acx", "cartpole", ACX_ZOO_CARTPOLE),
    "sb3_zoo": ("sb3", "cartpole", []),
    "acx_default": ("acx", "cartpole", ["algo=ppo"]),  # acx's own algo=ppo defaults (CleanRL's ppo.py)
    "acx_pendulum": ("acx", "pendulum", ["experiment=ppo_pendulum"]),
    "sb3_pendulum": ("sb3", "pendulum", []),
}


# ---- one run per process ----------------------------------------------------------------------


def acx_run(task: str, seed: int, overrides: list[str]) -> dict:
    """One acx run (acx's venv): the first eval >= the threshold stops it (no confirmation episodes)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from acx_side import peak_rss_mib, run_train

    stop = [
        f"seed={seed}", f"total_steps={BUDGET}", f"eval.every_steps={EVAL_EVERY[task]}", "eval.episodes=10",
        "eval.confirm_episodes=0", "stop=eval_threshold", f"stop.threshold={SOLVED[task]}", "logger=none",
    ]  # fmt: skip
    summary, rows = run_train([*overrides, *stop])
    setup = summary["setup_seconds"]  # wall times in metrics.jsonl count from train()'s start
    curve = [(r["env_step"], r["wall_time"] - setup, r["eval/return_mean"]) for r in rows if "eval/return_mean" in r]
    return {
        "train_seconds": summary["wall_seconds"] - setup,
        "env_steps": summary["env_steps"],
        "curve": curve,
        "final_eval": summary["final_eval_return"],
        "peak_rss_mib": peak_rss_mib(),
    }


def sb3_run(task: str, seed: int) -> dict:
    """One SB3 PPO run (the SB3 venv) with the zoo's settings; the same evaluation and stop."""
    import resource

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    env_id = {"cartpole": "CartPole-v1", "pendulum": "Pendulum-v1"}[task]
    if task == "cartpole":
        env = make_vec_env(env_id, n_envs=8, seed=seed)
        lin = lambda start: lambda remaining: remaining * start  # noqa: E731 (the zoo's lin_<start>)
        hp = dict(n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, ent_coef=0.0)
        hp.update(learning_rate=lin(1e-3), clip_range=lin(0.2))
    else:
        env = make_vec_env(env_id, n_envs=4, seed=seed)
        hp = dict(n_steps=1024, batch_size=64, n_epochs=10, gamma=0.9, gae_lambda=0.95, ent_coef=0.0)
        hp.update(learning_rate=1e-3, clip_range=0.2, use_sde=False)
    eval_env = make_vec_env(env_id, n_envs=10, seed=seed + 1_000_000)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hp)
    every, threshold = EVAL_EVERY[task], SOLVED[task]

    class Timer(BaseCallback):
        def __init__(self):
            super().__init__()
            self.t0, self.next_eval, self.curve = 0.0, every, []

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += every
            rets, _ = evaluate_policy(
                self.model, eval_env, n_eval_episodes=10, deterministic=True, return_episode_rewards=True
            )
            mean = float(sum(rets) / len(rets))
            self.curve.append((self.num_timesteps, time.perf_counter() - self.t0, mean))
            return mean < threshold

    timer = Timer()
    model.learn(total_timesteps=BUDGET, callback=timer)
    return {
        "train_seconds": time.perf_counter() - timer.t0,
        "env_steps": int(model.num_timesteps),
        "curve": timer.curve,
        "final_eval": timer.curve[-1][2] if timer.curve else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ---- the benchmark -------------------------------------------------------------------------------


def first_solve(curve: list, threshold: float) -> tuple[int, float] | None:
    """(env steps, seconds since the first env step) of the first eval at or above the threshold."""
    return next(((steps, secs) for steps, secs, ret in curve if ret >= threshold), None)


def bench(args: argparse.Namespace) -> dict:
    here = [sys.executable, "bench/ppo.py"]
    sb3 = [args.sb3_python, "bench/ppo.py"]
    R: dict[str, list[dict]] = {name: [] for name in ARMS}
    load_before, started = os.getloadavg()[0], time.perf_counter()
    plan = [(seed, name) for seed in range(args.first_seed, args.first_seed + args.seeds) for name in ARMS
            if ARMS[name][1] == "cartpole"]  # fmt: skip
    plan += [(seed, name) for seed in range(args.first_seed, args.first_seed + args.pendulum_seeds) for name in ARMS
             if ARMS[name][1] == "pendulum"]  # fmt: skip
    for seed, name in plan:
        side, task, overrides = ARMS[name]
        cmd = [*(here if side == "acx" else sb3), side, task, "--seed", str(seed), *overrides]
        r = run(cmd)
        r["seed"] = seed
        R[name].append(r)
        print(f"{name:<14} seed {seed}: {json.dumps({k: v for k, v in r.items() if k != 'curve'})}", file=sys.stderr)
    R["meta"] = [
        {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
            "machine": f"{cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
            "acx_versions": versions(sys.executable),
            "sb3_versions": versions(args.sb3_python),
            "load": f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
            "minutes": (time.perf_counter() - started) / 60,
            "seeds": f"{args.first_seed}-{args.first_seed + args.seeds - 1}",
            "pendulum_seeds": f"{args.first_seed}-{args.first_seed + args.pendulum_seeds - 1}",
        }
    ]
    return R


def section(R: dict) -> str:
    """The markdown of the PPO section."""
    meta = R["meta"][0]
    rows = []
    for label, name, task in (
        ("acx, the zoo's settings", "acx_zoo", "cartpole"),
        ("SB3 PPO, the zoo's settings", "sb3_zoo", "cartpole"),
        ("acx `algo=ppo` (its defaults: CleanRL's ppo.py)", "acx_default", "cartpole"),
        ("acx `experiment=ppo_pendulum`", "acx_pendulum", "pendulum"),
        ("SB3 PPO, the zoo's settings without gSDE", "sb3_pendulum", "pendulum"),
    ):
        runs = R.get(name) or []
        if not runs:
            continue
        hits = [first_solve(r["curve"], SOLVED[task]) for r in runs]
        solved = [h for h in hits if h is not None]
        env = {"cartpole": "CartPole-v1", "pendulum": "Pendulum-v1"}[task]
        rows.append(
            f"| {env} | {label} | {len(solved)}/{len(runs)} | {median_min_max([h[1] for h in solved], '{:.1f}')} | "
            f"{median_min_max([h[0] for h in solved], '{:,.0f}')} | "
            f"{statistics.median(r['peak_rss_mib'] for r in runs):.0f} |"
        )
    ratio = ""
    a = [h[1] for h in (first_solve(r["curve"], 475) for r in R.get("acx_zoo", [])) if h]
    s = [h[1] for h in (first_solve(r["curve"], 475) for r in R.get("sb3_zoo", [])) if h]
    if a and s:
        ratio = (
            f"On CartPole acx takes {statistics.median(a) / statistics.median(s):.2f}x SB3's median wall time "
            "to solve with the same settings.\n\n"
        )
    header = (
        f"| env | run | solved within {BUDGET:,} steps | time-to-solve, wall s: median (min-max) "
        "| env steps to solve: median (min-max) | peak RSS (MiB) |"
    )
    return f"""{BEGIN}
## PPO: acx against Stable-Baselines3 PPO

Written by `make bench-ppo` (`bench/ppo.py`) on {meta["date"]}; do not edit by hand, rerun instead.
`make bench` runs it after `bench/compare.py`, which keeps this section when it rewrites the rest.

- Machine: {meta["machine"]}; load average {meta["load"]}; the whole run took {meta["minutes"]:.1f} min.
- acx side: {meta["acx_versions"]}
- SB3 side (its own venv, `bench/.venv-sb3`): {meta["sb3_versions"]}
- Seeds: CartPole {meta["seeds"]}, Pendulum {meta["pendulum_seeds"]} (settings were tried on seeds 100 and
  up, never on these). Raw numbers of every run: `docs/ppo.json`.

{header}
|---|---|---|---|---|---|
{chr(10).join(rows)}

{ratio}- **Settings**: rl-baselines3-zoo's `hyperparams/ppo.yml` entries on both sides (`bench/ppo.py`
  lists them). CartPole-v1: 8 envs x 32 steps, 20 epochs of one 256-transition minibatch, gamma 0.98,
  GAE(0.8), no entropy bonus, Adam 1e-3 and clip 0.2 both decaying linearly to 0 (acx:
  `lr_schedule=linear algo.loss.anneal_clip=true`). Pendulum-v1: `experiment=ppo_pendulum` against the
  zoo's entry with `use_sde=False` (acx has no gSDE). The acx `algo=ppo` row is acx's own defaults
  (CleanRL's 4 envs x 128 steps, 4 x 4 minibatches, Adam 7e-4 constant).
- **Protocol**: as the A2C rows above. Both evaluate every {EVAL_EVERY["cartpole"]:,} (Pendulum
  {EVAL_EVERY["pendulum"]:,}) env steps over 10 deterministic episodes on a 10-env vector env and stop at
  the first mean >= 475 (Pendulum: >= -200), acx with `eval.confirm_episodes=0`; wall time counts from
  the first env step and includes the evaluations; one torch thread per process; the two sides
  alternate run by run. acx counts the transitions it learns from (not its autoreset steps), SB3 every
  `step()`.
{END}
"""


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("acx", "sb3"):  # one run, in this process
        side, task, *rest = sys.argv[1:]
        parser = argparse.ArgumentParser()
        parser.add_argument("--seed", type=int, default=0)
        seed_args, overrides = parser.parse_known_args(rest)
        r = acx_run(task, seed_args.seed, overrides) if side == "acx" else sb3_run(task, seed_args.seed)
        print(json.dumps(r))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sb3-python", default=str(ROOT / "bench/.venv-sb3/bin/python"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--pendulum-seeds", type=int, default=5, help="0: no Pendulum runs")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from docs/ppo.json")
    args = parser.parse_args()
    save_and_report(Path(args.out), "ppo", args.report_only, lambda: bench(args), section, BEGIN, END)


if __name__ == "__main__":
    main()
