"""In-training evaluation: deterministic episodes on envs of their own, with fresh start states each
time, a confirmation over more episodes before a run counts as solved, and the best checkpoint.
(Replaying a saved checkpoint, ``acx eval``, is ``acx.run.replay``.)

A cohort plays the episodes of every member due for an evaluation at once (``play_together``); each
member's ``Evaluator`` keeps its own envs, seeds, records, ``best.pt`` and videos."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from acx.algo.networks import ActorCritic
from acx.envs.join import JoinedEnvs
from acx.run.checkpoint import CheckpointWriter, RunState, is_finite
from acx.run.loggers import LoggerGroup
from acx.run.record import Every
from acx.run.video import FrameRecorder, play_episodes, video_fps, write_video

EVAL_SEED_OFFSET = 1_000_000  # eval episodes start from states the training envs never use


def play_together(
    act: Callable[[Tensor], Tensor],
    envs: Sequence[gym.vector.VectorEnv],
    seeds: Sequence[int],
    device: torch.device,
    env_actions=lambda a: a,
    make: Callable[[int], gym.vector.VectorEnv] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One episode in each sub-env of each of ``envs`` (one vector env per member, all of N envs), all
    played at once, the envs stepped as one (``JoinedEnvs``; ``make``: their factory's ``make_vector``):
    ``act`` maps the (P' x N, ...) observations to actions. Returns per member its episodes' returns
    and lengths."""
    members, n = len(envs), envs[0].num_envs
    obs = np.concatenate([e.reset(seed=s)[0] for e, s in zip(envs, seeds, strict=True)])
    joined = JoinedEnvs(envs, make)  # after the resets: a native joined env takes their state
    returns = np.zeros(members * n)
    lengths = np.zeros(members * n, dtype=np.int64)
    running = np.ones(members * n, dtype=bool)
    try:
        while running.any():
            actions = act(torch.as_tensor(obs, device=device)).cpu().numpy()
            obs, reward, terminated, truncated, _ = joined.step(env_actions(actions))
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
    finally:
        joined.detach()
        joined.close()
    return list(zip(returns.reshape(members, n), lengths.reshape(members, n), strict=True))


class Evaluator:
    """A member's eval envs and their seeds, its confirmation episodes, ``best.pt`` and training videos;
    logs what it measures to ``loggers``. ``wall()`` is the run's wall time so far.

    ``video_every``: record one deterministic episode at the first evaluation after every that many
    env steps (``eval.video_every_steps``), as ``video_dir/step_<env steps>.mp4``, also sent to the
    loggers (W&B, TensorBoard); None: no videos."""

    def __init__(
        self,
        factory,
        episodes: int,
        confirm_episodes: int,
        deterministic: bool,
        seed: int,
        device: torch.device,
        ckpts: CheckpointWriter,
        loggers: LoggerGroup,
        wall: Callable[[], float],
        video_every: int | None = None,
        video_dir: Path | None = None,
        start_step: int = 0,
    ):
        self.factory, self.confirm_episodes, self.deterministic = factory, confirm_episodes, deterministic
        self.seed, self.device, self.ckpts, self.loggers, self.wall = seed, device, ckpts, loggers, wall
        self.envs = factory.make_vector(episodes, seed=seed + EVAL_SEED_OFFSET)
        self.last_step = -1
        self.videos = Every(video_every, start_step) if video_every else None
        self.video_dir = video_dir

    def next_seed(self, p) -> int:
        """The reset seed of the next evaluation's envs (new start states each time); counts it."""
        seed = self.seed + EVAL_SEED_OFFSET + p.evals_done * 1000
        p.evals_done += 1
        self.last_step = p.env_steps
        return seed

    def confirm_seed(self, p) -> int:
        """The reset seed of the confirmation episodes of the evaluation just done."""
        return self.seed + 2 * EVAL_SEED_OFFSET + p.evals_done * 1000

    def record(
        self, state: RunState, returns: np.ndarray, lengths: np.ndarray, net: Callable[[], ActorCritic]
    ) -> float:
        """An evaluation's episodes: logged, ``best.pt`` when it is the best yet, the video when due
        (``net()`` gives the member's network for it). Returns the mean return."""
        p = state.progress
        p.eval_return = float(returns.mean())
        metrics = {"eval/return_mean": p.eval_return, "eval/return_std": float(returns.std())}
        metrics["eval/length_mean"] = float(lengths.mean())
        self.loggers.log(metrics, p.env_steps, self.wall())
        if p.eval_return > p.best_eval_return and is_finite(state.model):
            p.best_eval_return = p.eval_return
            self.ckpts.save("best", state, self.wall())
        if self.videos is not None and self.videos.due(p.env_steps):
            self.record_video(net(), p)
        return p.eval_return

    def record_video(self, net: ActorCritic, p) -> Path:
        """One deterministic episode in a rendering env, to MP4 and to the loggers."""
        env = FrameRecorder(self.factory.make_single(render_mode="rgb_array"))
        try:
            seed = self.seed + 3 * EVAL_SEED_OFFSET + p.evals_done
            returns, lengths = play_episodes(
                net, env, 1, self.device, self.factory.env_actions, True, seed, capture=True
            )
            path = write_video(env.frames, self.video_dir / f"step_{p.env_steps:09d}.mp4", video_fps(self.factory, env))
        finally:
            env.close()
        self.loggers.log({"eval/video_return": returns[0], "eval/video_length": float(lengths[0])}, p.env_steps,
                         self.wall())  # fmt: skip
        self.loggers.log_files("video", [path], p.env_steps)
        return path

    def confirmed(self, p, stop, returns: np.ndarray) -> bool:
        """The confirmation episodes' returns, logged; whether their mean still meets the stop rule."""
        mean = float(returns.mean())
        self.loggers.log({"eval/confirm_return_mean": mean}, p.env_steps, self.wall())
        return stop.observe_eval(mean)

    def close(self) -> None:
        self.envs.close()
