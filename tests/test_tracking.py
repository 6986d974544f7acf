"""Experiment tracking: a real ``acx train`` with W&B (offline) and TensorBoard, read back with each tool's own
reader and checked against ``metrics.jsonl``; W&B failures that must not stop a run; the update diagnostics
against hand-computed values.

The subprocesses run with W&B offline, a throwaway HOME and an unroutable W&B host, so no test can reach
the network or a real W&B login."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from hydra import compose, initialize_config_dir

import acx
from acx.algo.networks import mlp_actor_critic
from acx.algo.update import explained_variance, gradient_stats
from acx.cli import CONF_DIR
from acx.run.checkpoint import load_checkpoint
from acx.run.loggers import JsonlLogger, LoggerGroup

TRAIN_KEYS = [
    "losses/policy", "losses/value", "losses/entropy", "losses/total",
    "train/episode_return", "train/episode_length", "train/entropy", "train/value_mean",
    "train/advantage_mean", "train/advantage_std", "train/explained_variance",
    "train/grad_norm", "train/grad_l2", "train/grad_max", "train/grad_var", "train/lr", "time/sps",
]  # fmt: skip
EVAL_KEYS = ["eval/return_mean", "eval/return_std", "eval/length_mean"]
# computed only on the updates that are logged
DIAGNOSTIC_KEYS = {
    "train/advantage_std", "train/explained_variance", "train/grad_l2", "train/grad_max", "train/grad_var"
}  # fmt: skip
LOG_EVERY = 5
EVAL_EVERY = 700  # not a divisor of the budget: no eval falls on the final step twice
TOTAL_STEPS = 3000


def offline_env(tmp: Path) -> dict[str, str]:
    """Environment for an ``acx`` subprocess: the acx under test, W&B offline, no login, no route out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    src = str(Path(acx.__file__).resolve().parents[1])
    env.update(
        PYTHONPATH=os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        HOME=str(home),
        WANDB_MODE="offline",
        WANDB_BASE_URL="http://127.0.0.1:9",  # if anything tried to go online it would fail at once
        WANDB_CONFIG_DIR=str(home / "wandb-config"),
        WANDB_CACHE_DIR=str(home / "wandb-cache"),
        WANDB_DATA_DIR=str(home / "wandb-data"),
    )
    return env


def run_acx(args: list[str], tmp: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "acx.cli", *args], env=offline_env(tmp), cwd=tmp, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def run_wandb(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    """W&B's own command line, e.g. ``leet inspect --json RUN_DIR`` (reads the run's ``.wandb`` log)."""
    done = subprocess.run(
        [sys.executable, "-m", "wandb", *args], env=offline_env(tmp), cwd=tmp, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def wandb_records(sync_dir: Path, tmp: Path) -> list[dict]:
    """Every record of an offline run's ``.wandb`` log, as W&B's own reader prints them."""
    return [
        json.loads(line) for line in run_wandb(["leet", "inspect", "--json", str(sync_dir)], tmp).stdout.splitlines()
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def jsonl_series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(row["env_step"], row[key]) for row in rows if key in row]


def without_empty_dicts(tree):
    if isinstance(tree, dict):
        return {k: without_empty_dicts(v) for k, v in tree.items() if v != {}}
    return tree


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> dict:
    """One short CartPole run with ``logger=[wandb,tensorboard]``; the tests below read what it left."""
    tmp = tmp_path_factory.mktemp("tracked")
    run_dir = tmp / "run"
    done = run_acx(
        ["train", "env=cartpole", "logger=[wandb,tensorboard]", "stop=budget", "seed=0",
         f"total_steps={TOTAL_STEPS}", f"log.every_updates={LOG_EVERY}", f"eval.every_steps={EVAL_EVERY}",
         "eval.episodes=3", "progress=false", f"hydra.run.dir={run_dir}"],
        tmp,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {
        "tmp": tmp,
        "dir": run_dir,
        "stdout": done.stdout,
        "stderr": done.stderr,
        "rows": read_jsonl(run_dir / "metrics.jsonl"),
        "summary": json.loads((run_dir / "summary.json").read_text()),
    }


@pytest.mark.slow
def test_metrics_jsonl_rows_are_monotonic_and_hold_the_listed_keys(tracked_run):
    rows, summary = tracked_run["rows"], tracked_run["summary"]
    assert [r["env_step"] for r in rows] == sorted({r["env_step"] for r in rows})  # one row per env step
    assert [r["wall_time"] for r in rows] == sorted(r["wall_time"] for r in rows)
    train_rows = [r for r in rows if "losses/policy" in r]
    eval_rows = [r for r in rows if "eval/return_mean" in r]
    assert all(r in train_rows or r in eval_rows for r in rows)  # a row holds train keys, eval keys or both
    assert len(train_rows) == summary["updates"] // LOG_EVERY
    assert len(eval_rows) == len(range(EVAL_EVERY, summary["env_steps"] + 1, EVAL_EVERY)) + 1  # + the final one
    assert eval_rows[-1]["env_step"] == summary["env_steps"]
    assert eval_rows[-1]["eval/return_mean"] == pytest.approx(summary["final_eval_return"])
    for row in train_rows:
        assert set(TRAIN_KEYS) <= set(row), set(TRAIN_KEYS) - set(row)
        assert all(row[k] is not None and math.isfinite(row[k]) for k in TRAIN_KEYS), row
        assert 0 < row["train/entropy"] <= math.log(2) + 1e-6  # two actions
        assert row["train/episode_length"] == row["train/episode_return"]  # CartPole pays 1 per step
        assert 0 <= row["train/grad_l2"] <= row["train/grad_max"]  # an RMS never exceeds the max
        assert 0 <= row["train/grad_var"] <= row["train/grad_l2"] ** 2 + 1e-12  # Var(g) = E[g^2] - E[g]^2
        assert row["train/advantage_std"] >= 0 and row["train/explained_variance"] <= 1
        assert row["losses/total"] == pytest.approx(
            row["losses/policy"] + row["losses/value"] + row["losses/entropy"], rel=1e-5, abs=1e-6
        )
        assert row["time/sps"] > 0
    for row in eval_rows:
        assert set(EVAL_KEYS) <= set(row)
        assert 0 < row["eval/return_mean"] <= 500 and row["eval/length_mean"] == row["eval/return_mean"]


@pytest.mark.slow
def test_wandb_offline_run_holds_config_metrics_and_model(tracked_run):
    run_dir, rows, summary = tracked_run["dir"], tracked_run["rows"], tracked_run["summary"]
    sync_dirs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(sync_dirs) == 1
    sync_dir = sync_dirs[0]
    # the one line acx prints about W&B tells where the run is and how to upload it; W&B itself prints nothing
    assert f"acx: W&B offline run in {sync_dir}; upload it with: wandb sync {sync_dir}" in tracked_run["stdout"]
    assert "wandb:" not in tracked_run["stdout"] + tracked_run["stderr"]

    info = json.loads(run_wandb(["leet", "inspect", "--summary", "--json", str(sync_dir)], tracked_run["tmp"]).stdout)
    assert (info["state"], info["exit_code"], info["project"]) == ("finished", 0, "acx")
    assert info["name"] == "CartPole-v1__nstep__0"
    config = {k: v for k, v in info["config"].items() if k != "_wandb"}
    resolved = load_checkpoint(run_dir / "checkpoints" / "final.pt")["meta"]["config"]
    assert config == without_empty_dicts(resolved)  # the whole resolved config (W&B keeps no empty mappings)
    assert config["total_steps"] == TOTAL_STEPS and config["logger"]["wandb"]["mode"] == "offline"
    assert config["logger"]["wandb"]["group"] is None  # a single run has no sweep to group by

    records = wandb_records(sync_dir, tracked_run["tmp"])
    history = [r["history"] for r in records if r["type"] == "history"]
    assert [h["step"]["num"] for h in history] == sorted({h["step"]["num"] for h in history})  # x axis = env step
    for key in ["losses/policy", "losses/value", "train/episode_return", "train/grad_l2",
                "train/explained_variance", "time/sps", "eval/return_mean"]:  # fmt: skip
        expected = jsonl_series(rows, key)
        got = [(h["step"]["num"], h["item"][key]) for h in history if key in h["item"]]
        assert len(got) == len(expected) >= 5, key
        assert [s for s, _ in got] == [s for s, _ in expected], key
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-9), key
    assert len([h for h in history if "losses/policy" in h["item"]]) == summary["updates"] // LOG_EVERY

    (artifact,) = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert artifact["type"] == "model" and "latest" in artifact["aliases"]
    files = {f["path"]: f["local_path"] for f in artifact["manifest"]["contents"]}
    assert files == {name: str(run_dir / "checkpoints" / name) for name in ("best.pt", "final.pt")}

    dry_run = run_wandb(["sync", "--dry-run", str(sync_dir)], tracked_run["tmp"])
    assert "Would sync 1 run(s)" in dry_run.stdout + dry_run.stderr


@pytest.mark.slow
def test_tensorboard_events_hold_the_same_series(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS, EventAccumulator

    events = EventAccumulator(str(tracked_run["dir"] / "tensorboard"), size_guidance={SCALARS: 0, TENSORS: 0})
    events.Reload()
    rows = tracked_run["rows"]
    assert set(events.Tags()["scalars"]) == {k for row in rows for k in row} - {"env_step", "wall_time"}
    for key in [*TRAIN_KEYS, *EVAL_KEYS]:
        got = [(e.step, e.value) for e in events.Scalars(key)]
        expected = jsonl_series(rows, key)
        assert [s for s, _ in got] == [s for s, _ in expected], key
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6, abs=1e-12), key
    (config_text,) = events.Tensors("config/text_summary")
    assert "id: CartPole-v1" in config_text.tensor_proto.string_val[0].decode()


@pytest.mark.slow
@pytest.mark.parametrize("breakage", ["invalid_setting", "wandb_dir_is_a_file"])
def test_wandb_that_cannot_start_does_not_stop_the_run(tmp_path, breakage):
    run_dir = tmp_path / "run"
    args = ["train", "logger=[wandb,tensorboard]", "stop=budget", "total_steps=400", "log.every_updates=2",
            "eval.episodes=2", "progress=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    if breakage == "invalid_setting":  # W&B's own Settings refuse it (acx passes its settings through unchecked)
        args.append("logger.wandb.settings.init_timeout=not-a-number")
    else:  # W&B cannot create its directory: a disk problem as far as W&B can tell
        run_dir.mkdir()
        (run_dir / "wandb").write_text("")
    done = run_acx(args, tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= 400
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("acx: warning: logger.wandb could not start ("), done.stderr
    assert "W&B offline run" not in done.stdout
    # the other loggers carry on
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    train_rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "losses/policy" in r]
    assert len(train_rows) == summary["updates"] // 2
    assert [e.step for e in events.Scalars("losses/policy")] == [r["env_step"] for r in train_rows]


@pytest.mark.slow
def test_sweep_jobs_share_a_wandb_group_named_after_the_sweep(tmp_path):
    sweep_dir = tmp_path / "my_sweep"
    done = run_acx(
        ["train", "-m", "seed=0,1", "logger=wandb", "stop=budget", "total_steps=100", "eval.episodes=2",
         "progress=false", f"hydra.sweep.dir={sweep_dir}"],
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = sorted(sweep_dir.glob("*/wandb/offline-run-*"))
    assert len(runs) == 2
    infos = [json.loads(run_wandb(["leet", "inspect", "--summary", "--json", str(r)], tmp_path).stdout) for r in runs]
    assert sorted(i["name"] for i in infos) == ["CartPole-v1__nstep__0", "CartPole-v1__nstep__1"]
    for run in runs:
        (run_record,) = [r["run"] for r in wandb_records(run, tmp_path) if r["type"] == "run"]
        assert run_record["run_group"] == "my_sweep"


@pytest.mark.slow
def test_wandb_logger_records_videos(tmp_path, monkeypatch):
    import numpy as np

    from acx.run.loggers import WandbLogger
    from acx.run.video import write_video

    for key, value in offline_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    video = write_video([np.full((32, 32, 3), 8 * i, np.uint8) for i in range(10)], tmp_path / "video.mp4", fps=5)
    logger = WandbLogger(tmp_path / "run", {"seed": 3}, name="video-test", settings={"silent": True})
    logger.log({"eval/return_mean": 9.0}, step=100, wall_time=1.0)
    logger.log_files("video", [video], step=100)
    logger.log_files("unknown-kind", [video], step=100)  # not for W&B: ignored
    logger.close()
    (sync_dir,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    records = wandb_records(sync_dir, tmp_path)
    (row,) = [r["history"]["item"] for r in records if r["type"] == "history"]
    assert row["eval/return_mean"] == 9.0 and row["eval/video._type"] == "video-file"
    assert (sync_dir / "files" / row["eval/video.path"]).stat().st_size == video.stat().st_size


@pytest.fixture
def conf_dir():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], {"wandb"}),  # W&B (offline) is on by default
        (["logger=[wandb,tensorboard]"], {"wandb", "tensorboard"}),
        (["logger=tensorboard"], {"tensorboard"}),
        (["logger=none"], set()),
    ],
)
def test_logger_group_composes_several_loggers(conf_dir, overrides, expected):
    cfg = compose("train", overrides=overrides)
    assert set(cfg.logger) == expected
    targets = {"wandb": "acx.run.loggers.WandbLogger", "tensorboard": "acx.run.loggers.TensorBoardLogger"}
    assert {k: cfg.logger[k]._target_ for k in cfg.logger} == {k: targets[k] for k in expected}


def test_wandb_config_defaults(conf_dir, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    wandb_cfg = compose("train", overrides=["logger=wandb", "env=pendulum", "algo=episodic", "seed=7"]).logger.wandb
    assert wandb_cfg.mode == "offline"
    assert wandb_cfg.name == "Pendulum-v1__episodic__7"
    assert wandb_cfg.project == "acx" and wandb_cfg.entity is None and wandb_cfg.group is None
    monkeypatch.setenv("WANDB_MODE", "disabled")  # W&B's own switch is respected
    assert compose("train", overrides=["logger=wandb"]).logger.wandb.mode == "disabled"


def test_a_logger_that_fails_mid_run_is_dropped_with_one_warning(tmp_path, capsys):
    class Broken:
        calls = 0

        def log(self, metrics, step, wall_time):
            Broken.calls += 1
            raise OSError("disk full\nsecond line")

    group = LoggerGroup([JsonlLogger(tmp_path / "metrics.jsonl"), Broken()])
    for step in (10, 20, 30):
        group.log({"losses/policy": 0.5, "train/explained_variance": float("nan")}, step, step / 10)
    group.close()
    assert Broken.calls == 1
    warning = "acx: warning: Broken failed (OSError: disk full; second line); continuing without it\n"
    assert capsys.readouterr().err == warning
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["env_step"] for r in rows] == [10, 20, 30]
    assert rows[0]["train/explained_variance"] is None  # NaN is not JSON


def test_metrics_jsonl_has_one_row_per_env_step_across_a_resume(tmp_path):
    """What is logged at the step of the last row joins it (an evaluation at a train row's step), also
    after a resume; a row cut short by a kill and rows after the checkpoint are dropped on resume."""
    path = tmp_path / "metrics.jsonl"
    log = JsonlLogger(path)
    log.log({"losses/policy": 0.5}, 40, 1.0)
    log.log({"eval/return_mean": 20.0}, 40, 1.5)  # an evaluation at the train row's step
    log.log({"eval/confirm_return_mean": 21.0}, 40, 1.7)
    log.log({"losses/policy": 0.4}, 80, 2.0)
    log.close()
    first = {"env_step": 40, "wall_time": 1.0, "losses/policy": 0.5, "eval/return_mean": 20.0,
             "eval/confirm_return_mean": 21.0}  # fmt: skip
    assert read_jsonl(path) == [first, {"env_step": 80, "wall_time": 2.0, "losses/policy": 0.4}]
    with open(path, "a") as f:
        f.write('{"env_step": 120, "wall_ti')  # a kill mid-write
    log = JsonlLogger(path, resume_step=40)  # resumed from the checkpoint of step 40
    log.log({"eval/video_return": 9.0}, 40, 3.0)
    log.log({"losses/policy": 0.3}, 80, 4.0)
    log.log({"eval/return_mean": 30.0}, 80, 4.5)
    log.close()
    assert read_jsonl(path) == [
        {**first, "eval/video_return": 9.0},
        {"env_step": 80, "wall_time": 4.0, "losses/policy": 0.3, "eval/return_mean": 30.0},
    ]


def test_a_train_row_and_an_evaluation_at_one_step_share_its_row(tmp_path):
    """With a row every update, every evaluation falls on a train row's step: it joins that row."""
    from acx.run.train import train
    from tests.conftest import FAST, compose_train

    summary = train(compose_train([*FAST, "log.every_updates=1", "total_steps=2000", "stop=budget"], tmp_path))
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["env_step"] for r in rows] == sorted({r["env_step"] for r in rows})
    assert len(rows) == summary["updates"]
    eval_rows = [r for r in rows if "eval/return_mean" in r]
    assert len(eval_rows) == 2 and all("losses/policy" in r for r in eval_rows)  # past 1000, and past 2000: the end
    assert eval_rows[-1]["env_step"] == summary["env_steps"]


def test_gradient_stats_by_hand():
    """Per member over all its gradient entries: member 0 has 1, -2, 3, 0; member 1 has all zeros."""
    a = torch.tensor([[1.0, -2.0], [0.0, 0.0]])  # (members, 2)
    b = torch.tensor([[[3.0], [0.0]], [[0.0], [0.0]]])  # (members, 2, 1)
    stats = gradient_stats([a, b])
    # member 0: mean 0.5, mean square 14 / 4
    assert stats["train/grad_l2"].tolist() == pytest.approx([math.sqrt(3.5), 0.0])
    assert stats["train/grad_max"].tolist() == [3.0, 0.0]
    assert stats["train/grad_var"].tolist() == pytest.approx([(0.25 + 6.25 + 6.25 + 0.25) / 4, 0.0])


@pytest.mark.parametrize(
    ("values", "returns", "mask", "expected"),
    [
        ([1, 2, 3, 4], [1, 2, 3, 4], [1, 1, 1, 1], 1.0),  # perfect critic
        ([1, 1], [0, 2], [1, 1], 0.0),  # a constant: Var(returns - values) = Var(returns) = 1
        ([0, 1], [0, 2], [1, 1], 0.75),  # residuals 0, 1: variance 0.25 against 1
        ([1, 2, 3, -50], [1, 2, 3, 100], [1, 1, 1, 0], 1.0),  # the masked transition does not count
        ([0, 0], [5, 5], [1, 1], float("nan")),  # returns that do not vary explain nothing
    ],
)
def test_explained_variance_by_hand(values, returns, mask, expected):
    ev = explained_variance(torch.tensor(values, dtype=torch.float32), torch.tensor(returns, dtype=torch.float32),
                            torch.tensor(mask, dtype=torch.float32)).item()  # fmt: skip
    assert ev == pytest.approx(expected, nan_ok=True)


def test_update_diagnostics_are_taken_before_clipping_and_only_when_asked():
    import functools

    from acx.algo.optim import SGD
    from acx.envs.factory import GymEnvFactory
    from acx.run.rollout import RolloutCollector
    from tests.conftest import learner_of

    torch.manual_seed(0)
    factory = GymEnvFactory("CartPole-v1")
    envs = factory.make_vector(4, seed=0)
    net = mlp_actor_critic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), hidden_sizes=(16,))
    learner = learner_of(net, optimizer=functools.partial(SGD), hyper={"lr_all": 0.0, "max_grad_norm": 1e-3})
    collector = RolloutCollector(envs, learner, 1, 8, torch.device("cpu"))

    def step(diagnostics: bool) -> dict:
        r = collector.collect()
        adv, ret = learner.estimate(r.rows, r.rewards, r.values, r.next_values, r.terminated, r.done, r.valid)
        (stats,), failed = learner.update(r.batch(adv, ret), r.rows, diagnostics=diagnostics)
        assert not failed
        return stats

    quiet = step(diagnostics=False)
    assert not DIAGNOSTIC_KEYS & set(quiet)
    stats = step(diagnostics=True)
    assert DIAGNOSTIC_KEYS <= set(stats)
    n_params = sum(p.numel() for p in net.parameters())
    # grad_norm is the norm before clipping to 1e-3; grad_l2 must describe that same (unclipped) gradient
    assert stats["train/grad_norm"] > 1e-2
    assert stats["train/grad_l2"] == pytest.approx(stats["train/grad_norm"] / math.sqrt(n_params), rel=1e-4)
    envs.close()


@pytest.mark.slow
def test_training_videos_reach_the_run_folder_wandb_and_tensorboard(tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from acx.run.video import read_video

    run_dir = tmp_path / "run"
    args = ["train", "logger=[wandb,tensorboard]", "stop=budget", "total_steps=5000", "eval.every_steps=1000",
            "eval.video_every_steps=2000", "eval.episodes=2", "progress=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    done = run_acx(args, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = read_jsonl(run_dir / "metrics.jsonl")
    # a video at the first evaluation after every 2,000 env steps
    expected, due = [], 2000
    for step in [r["env_step"] for r in rows if "eval/return_mean" in r]:
        if step >= due:
            expected.append(step)
            due = (step // 2000 + 1) * 2000
    videos = sorted((run_dir / "videos").glob("step_*.mp4"))
    assert len(expected) == 2 and [int(v.stem.split("_")[1]) for v in videos] == expected
    lengths = {r["env_step"]: r["eval/video_length"] for r in rows if "eval/video_length" in r}
    read = [read_video(v) for v in videos]
    frames = [len(f) for f, _ in read]
    assert frames == [lengths[s] + 1 for s in expected]  # the reset frame and one per step
    assert {fps for _, fps in read} == {50.0}  # CartPole's render_fps

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("eval/video")
    assert [e.step for e in images] == expected
    for image, n in zip(images, frames, strict=True):
        gif = Image.open(io.BytesIO(image.encoded_image_string))
        durations = []
        for i in range(gif.n_frames):  # identical consecutive frames are one GIF frame of longer duration
            gif.seek(i)
            durations.append(gif.info["duration"])
        assert gif.n_frames <= n and sum(durations) == pytest.approx(n * 20, abs=n)  # 20 ms a frame

    (sync_dir,) = (run_dir / "wandb").glob("offline-run-*")
    history = [r["history"]["item"] for r in wandb_records(sync_dir, tmp_path) if r["type"] == "history"]
    logged = [h for h in history if h.get("eval/video._type") == "video-file"]
    assert [int(h["_step"]) for h in logged] == expected
    assert [len(read_video(sync_dir / "files" / h["eval/video.path"])[0]) for h in logged] == frames
