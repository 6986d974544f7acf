"""acx's n-step A2C against Stable-Baselines3 A2C on MuJoCo (HalfCheetah-v5, Hopper-v5): writes the
"MuJoCo" section of docs/benchmarks.md and the raw numbers to docs/mujoco.json.

    make bench-mujoco ARGS="--budget 1000000"   # creates bench/.venv-sb3 if needed; hours on 2 cores
    python bench/mujoco_a2c.py --sb3-python bench/.venv-sb3/bin/python [--envs halfcheetah hopper] [--seeds 3]
                           [--budget 1000000] [--eval-every 50000]
    python bench/mujoco_a2c.py --report-only        # rewrite the section from docs/mujoco.json

Both sides get rl-baselines3-zoo's hyperparams/a2c.yml MuJoCo entry (``&mujoco-defaults``: SB3 A2C's
defaults, 1M steps, VecNormalize): one env, 5-step rollouts, lr 7e-4, gamma 0.99, gae_lambda 1.0 (plain
n-step returns), ent_coef 0, vf_coef 0.5, max_grad_norm 0.5, no advantage normalisation, separate 64x64
tanh MLPs (orthogonal init, state-independent log-std starting at 0), running observation normalisation
(clip 10). acx runs ``env=halfcheetah`` / ``env=hopper``, whose tuned defaults (conf/tuned/*_nstep.yaml)
are those settings with one difference: Adam (eps 1e-5) where SB3 uses RMSprop (alpha 0.99, eps 1e-5).

Reward normalisation: the zoo's entry says ``normalize: true``, which its ExpManager turns into
``VecNormalize(norm_obs=True, norm_reward=True)``; so do acx's tuned files (``normalize.obs`` and
``normalize.reward``) and the SB3 side (gamma 0.99, clip 10 on both). ``--no-norm-reward`` switches
reward normalisation off on both sides.

Every run is a fresh process printing one JSON line: ``python bench/mujoco_a2c.py acx <env> --seed N ...``
(through bench/acx_side.py's ``run_train``, the real config tree) and ``<sb3 venv>/python
bench/mujoco_a2c.py sb3 <env> --seed N ...`` (that side never imports acx). The sides alternate run by run,
one torch thread each, the same budget and seeds, no early stop. Both evaluate every ``--eval-every``
env steps and at the end over 10 deterministic episodes on a separate 10-env vector env (seeded
seed + 1,000,000) with the training observation statistics frozen; wall time counts from the first env
step and includes the evaluations.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.compare import cpu_name, median_min_max, run, save_and_report, versions  # the A2C bench's helpers

ROOT = Path(__file__).resolve().parent.parent
ENV_IDS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5"}
ZOO_BUDGET = 1_000_000  # the zoo's n_timesteps for the MuJoCo entry
EVAL_EPISODES = 10
BEGIN, END = "<!-- MuJoCo: written by bench/mujoco_a2c.py -->", "<!-- end of bench/mujoco_a2c.py's section -->"


# ---- one run per process ----------------------------------------------------------------------


def acx_run(env: str, seed: int, budget: int, every: int, norm_reward: bool) -> dict:
    """One acx run (acx's venv): the tuned defaults of conf/tuned/<env>_nstep.yaml, a fixed budget."""
    from bench.acx_side import peak_rss_mib, run_train

    overrides = [
        f"env={env}", f"seed={seed}", f"total_steps={budget}", "stop=budget", f"eval.every_steps={every}",
        f"eval.episodes={EVAL_EPISODES}", "eval.confirm_episodes=0", "logger=none",
    ]  # fmt: skip
    if not norm_reward:
        overrides.append("normalize.reward=false")
    summary, rows = run_train(overrides)
    setup = summary["setup_seconds"]  # wall times in metrics.jsonl count from train()'s start
    curve = [(r["env_step"], r["wall_time"] - setup, r["eval/return_mean"]) for r in rows if "eval/return_mean" in r]
    return {
        "train_seconds": summary["wall_seconds"] - setup,
        "env_steps": summary["env_steps"],
        "curve": curve,
        "final_eval": summary["final_eval_return"],
        "peak_rss_mib": peak_rss_mib(),
    }


def sb3_run(env: str, seed: int, budget: int, every: int, norm_reward: bool) -> dict:
    """One SB3 A2C run (the SB3 venv) with the zoo's MuJoCo settings: A2C's defaults + VecNormalize."""
    import resource

    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

    torch.set_num_threads(1)
    env_id = ENV_IDS[env]
    train_env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), norm_obs=True, norm_reward=norm_reward)
    eval_env = VecNormalize(
        make_vec_env(env_id, n_envs=EVAL_EPISODES, seed=seed + 1_000_000),
        training=False,
        norm_obs=True,
        norm_reward=False,
    )
    # A2C's defaults are the zoo's entry: n_steps 5, RMSprop (use_rms_prop) lr 7e-4 eps 1e-5, gamma 0.99,
    # gae_lambda 1.0, ent_coef 0.0, vf_coef 0.5, max_grad_norm 0.5, normalize_advantage False; spelt out
    hp = dict(n_steps=5, learning_rate=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5)
    hp.update(max_grad_norm=0.5, use_rms_prop=True, rms_prop_eps=1e-5, normalize_advantage=False)
    model = A2C("MlpPolicy", train_env, seed=seed, device="cpu", verbose=0, **hp)

    def evaluate() -> float:
        sync_envs_normalization(train_env, eval_env)  # eval_env.obs_rms = deepcopy(train_env.obs_rms)
        rets, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True, return_episode_rewards=True
        )
        return float(sum(rets) / len(rets))  # Monitor's raw episode returns (under VecNormalize)

    class Evals(BaseCallback):
        def __init__(self):
            super().__init__()
            self.t0, self.next_eval, self.curve = 0.0, every, []

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.next_eval += every
                ret = evaluate()  # the time after the evaluation, as acx's eval rows
                self.curve.append((self.num_timesteps, time.perf_counter() - self.t0, ret))
            return True  # fixed budget, no early stop

    evals = Evals()
    model.learn(total_timesteps=budget, callback=evals)
    if not evals.curve or evals.curve[-1][0] != model.num_timesteps:  # the final model, unless it just was
        ret = evaluate()
        evals.curve.append((int(model.num_timesteps), time.perf_counter() - evals.t0, ret))
    return {
        "train_seconds": time.perf_counter() - evals.t0,
        "env_steps": int(model.num_timesteps),
        "curve": evals.curve,
        "final_eval": evals.curve[-1][2],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ---- the benchmark -------------------------------------------------------------------------------


def mujoco_version(python: str) -> str:
    code = "import importlib.metadata as m\ntry: print(m.version('mujoco'))\nexcept m.PackageNotFoundError: print('-')"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def command(args: argparse.Namespace) -> str:
    sb3 = Path(args.sb3_python)
    sb3 = sb3.relative_to(ROOT) if sb3.is_absolute() and sb3.is_relative_to(ROOT) else sb3
    cmd = ["python", "bench/mujoco_a2c.py", "--sb3-python", str(sb3), "--envs", *args.envs, "--seeds", str(args.seeds)]
    cmd += ["--budget", str(args.budget), "--eval-every", str(args.eval_every)]
    return "PYTHONPATH=. " + shlex.join(cmd + ([] if args.norm_reward else ["--no-norm-reward"]))


def bench(args: argparse.Namespace) -> dict:
    here = [sys.executable, "bench/mujoco_a2c.py"]
    sb3 = [args.sb3_python, "bench/mujoco_a2c.py"]
    R: dict[str, list[dict]] = {f"{side}_{env}": [] for env in args.envs for side in ("acx", "sb3")}
    load_before, started = os.getloadavg()[0], time.perf_counter()
    opts = ["--budget", str(args.budget), "--eval-every", str(args.eval_every)]
    opts += [] if args.norm_reward else ["--no-norm-reward"]
    for env in args.envs:
        for seed in range(args.seeds):
            for side in ("acx", "sb3"):  # alternating run by run
                r = run([*(here if side == "acx" else sb3), side, env, "--seed", str(seed), *opts])
                r["seed"] = seed
                R[f"{side}_{env}"].append(r)
                brief = {k: v for k, v in r.items() if k != "curve"}
                brief["steps_per_s"] = round(r["env_steps"] / r["train_seconds"], 1)
                print(f"{side}_{env:<12} seed {seed}: {json.dumps(brief)}", file=sys.stderr, flush=True)
    R["meta"] = [
        {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
            "machine": f"{cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
            "acx_versions": f"{versions(sys.executable)}, mujoco {mujoco_version(sys.executable)}",
            "sb3_versions": f"{versions(args.sb3_python)}, mujoco {mujoco_version(args.sb3_python)}",
            "load": f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
            "minutes": (time.perf_counter() - started) / 60,
            "command": command(args),
            "envs": list(args.envs),
            "seeds": f"0-{args.seeds - 1}",
            "budget": args.budget,
            "eval_every": args.eval_every,
            "norm_reward": args.norm_reward,
        }
    ]
    return R


def env_table(R: dict, env: str) -> str:
    rows, walls = [], {}
    for side, label in (("acx", "acx `algo=nstep` (tuned defaults, Adam)"), ("sb3", "SB3 A2C (zoo, RMSprop)")):
        runs = R.get(f"{side}_{env}") or []
        if not runs:
            continue
        walls[side] = statistics.median(r["train_seconds"] for r in runs)
        finals = [r["final_eval"] for r in runs]
        per_seed = ", ".join(f"{r['seed']}: {r['final_eval']:.0f}" for r in runs)
        sps = statistics.median(r["env_steps"] / r["train_seconds"] for r in runs)
        rows.append(
            [
                label,
                median_min_max(finals, "{:,.0f}"),
                per_seed,
                median_min_max([r["train_seconds"] for r in runs], "{:,.0f}"),
                f"{sps:,.0f}",
                f"{statistics.median(r['env_steps'] for r in runs):,.0f}",
                f"{statistics.median(r['peak_rss_mib'] for r in runs):.0f}",
            ]
        )
    ratio = f"{walls['acx'] / walls['sb3']:.2f}x" if "acx" in walls and "sb3" in walls else "-"
    for row in rows:
        row.append(ratio if row is rows[0] and "acx" in walls else "")
    header = (
        "| side | final eval return: median (min-max) | per seed (seed: return) | train wall s: median (min-max) "
        "| env steps/s: median | env steps | peak RSS (MiB) | wall time acx / SB3 (medians) |"
    )
    lines = [f"### {ENV_IDS[env]}", "", header, "|---|---|---|---|---|---|---|---|"]
    return "\n".join(lines + [f"| {' | '.join(r)} |" for r in rows])


def section(R: dict) -> str:
    """The markdown of the MuJoCo section."""
    meta = R["meta"][0]
    budget, every = meta["budget"], meta["eval_every"]
    short = (
        f"**The budget, {budget:,} env steps, is below the zoo's {ZOO_BUDGET:,}: these returns are not "
        "comparable with the zoo's published 1M-step results.**\n\n"
        if budget < ZOO_BUDGET
        else ""
    )
    reward = (
        "both sides normalise rewards too (acx `normalize.reward=true`, SB3 `norm_reward=True`;\n  "
        "gamma 0.99, clip 10), as the zoo's `normalize: true` does."
        if meta["norm_reward"]
        else "neither side normalises rewards (`--no-norm-reward`), where the zoo's `normalize: true`\n  would."
    )
    tables = "\n\n".join(env_table(R, env) for env in meta["envs"])
    return f"""{BEGIN}
## MuJoCo: acx n-step A2C against Stable-Baselines3 A2C

Written by `make bench-mujoco` (`bench/mujoco_a2c.py`) on {meta["date"]}; do not edit by hand, rerun instead.
Not part of `make bench` (hours long). Command:

    {meta["command"]}

{short}- Budget: {budget:,} env steps per run, fixed (no early stop); seeds {meta["seeds"]} on each side and
  env. Raw numbers of every run, eval curves included: `docs/mujoco.json`.
- Machine: {meta["machine"]}; load average {meta["load"]}; the whole run took {meta["minutes"]:.1f} min.
- acx side: {meta["acx_versions"]}
- SB3 side (its own venv, `bench/.venv-sb3`): {meta["sb3_versions"]}

{tables}

- **Settings**: rl-baselines3-zoo's `hyperparams/a2c.yml` MuJoCo entry (`&mujoco-defaults`: SB3 A2C's
  defaults with `VecNormalize`) on both sides: one env, 5-step rollouts, lr 7e-4 constant, gamma 0.99,
  gae_lambda 1.0 (n-step returns), ent_coef 0, vf_coef 0.5, max_grad_norm 0.5, no advantage
  normalisation, separate 64x64 tanh actor and critic with orthogonal init and a state-independent
  log-std starting at 0, running observation normalisation clipped at 10.
  acx: `acx train env=halfcheetah` / `env=hopper` (conf/tuned/*_nstep.yaml). SB3: `A2C("MlpPolicy")`
  with `VecNormalize(norm_obs=True, norm_reward={meta["norm_reward"]})`, device cpu.
- **Rewards**: {reward}
- **The one difference**: the optimizer. acx uses Adam (eps 1e-5), SB3 RMSprop (alpha 0.99, eps 1e-5,
  `use_rms_prop=True`, its default and the zoo's).
- **Protocol**: both evaluate every {every:,} env steps and at the end over 10 deterministic episodes
  on a separate 10-env vector env (seeded seed + 1,000,000), with the training observation statistics
  frozen (SB3: `VecNormalize(training=False)` synced by `sync_envs_normalization` before each
  evaluation; acx: the statistics inside its network); the final eval return is the last of these. Wall
  time counts from the first env step and includes the evaluations; env steps/s is env steps over that
  wall time. One torch thread per process, each run a fresh process, the two sides alternating run by
  run on the same seeds. acx counts the transitions it learns from (not its autoreset steps, so a run
  can end a few steps past the budget), SB3 every `step()`.
{END}
"""


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("acx", "sb3"):  # one run, in this process
        side, env, *rest = sys.argv[1:]
        parser = argparse.ArgumentParser()
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--budget", type=int, required=True)
        parser.add_argument("--eval-every", type=int, required=True)
        parser.add_argument("--no-norm-reward", dest="norm_reward", action="store_false")
        a = parser.parse_args(rest)
        r = (acx_run if side == "acx" else sb3_run)(env, a.seed, a.budget, a.eval_every, a.norm_reward)
        print(json.dumps(r))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sb3-python", default=str(ROOT / "bench/.venv-sb3/bin/python"))
    parser.add_argument("--envs", nargs="+", choices=sorted(ENV_IDS), default=["halfcheetah", "hopper"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 on each side and env")
    parser.add_argument("--budget", type=int, default=ZOO_BUDGET, help="env steps per run (the zoo's: 1M)")
    parser.add_argument("--eval-every", type=int, default=50_000)
    parser.add_argument("--no-norm-reward", dest="norm_reward", action="store_false",
                        help="no reward normalisation on either side (the zoo's has it)")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where mujoco.json and benchmarks.md are")
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from docs/mujoco.json")
    args = parser.parse_args()
    save_and_report(Path(args.out), "mujoco", args.report_only, lambda: bench(args), section, BEGIN, END)


if __name__ == "__main__":
    main()
