"""In-training evaluation: deterministic episodes on envs of their own, with fresh start states each
time, a confirmation over more episodes before a run counts as solved, and the best checkpoint.
(Replaying a saved checkpoint, ``acx eval``, is ``acx.run.replay``.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from acx.algo.networks import ActorCritic
from acx.run.checkpoint import CheckpointWriter, RunState
from acx.run.loggers import LoggerGroup
from acx.run.record import Every
from acx.run.video import FrameRecorder, play_episodes, video_fps, write_video

EVAL_SEED_OFFSET = 1_000_000  # eval episodes start from states the training envs never use


@torch.inference_mode()
def evaluate_vector(
    net: ActorCritic,
    envs: gym.vector.VectorEnv,
    device: torch.device,
    env_actions=lambda a: a,
    deterministic: bool = True,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run one episode in each sub-env of ``envs`` at once; return per-episode returns and lengths."""
    n = envs.num_envs
    obs, _ = envs.reset(seed=seed)
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    running = np.ones(n, dtype=bool)
    was_training = net.training
    net.eval()
    while running.any():
        action = net.action(torch.as_tensor(obs, device=device), deterministic=deterministic)
        obs, reward, terminated, truncated, _ = envs.step(env_actions(action.cpu().numpy()))
        returns += reward * running
        lengths += running
        running &= ~(terminated | truncated)
    net.train(was_training)
    return returns, lengths


def is_finite_model(net: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in net.parameters())


class Evaluator:
    """Owns the eval envs, their seeds, the confirmation episodes, ``best.pt`` and the training videos;
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

    def _episodes(self, net: ActorCritic, envs: gym.vector.VectorEnv, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return evaluate_vector(net, envs, self.device, self.factory.env_actions, self.deterministic, seed)

    def evaluate(self, state: RunState) -> float:
        """One evaluation from fresh start states (the same few would be passed by luck sooner or
        later); saves ``best.pt`` when it beats every earlier one. Returns the mean return."""
        seed = self.next_seed(state.progress)
        return self.record(state, *self._episodes(state.net, self.envs, seed))

    def next_seed(self, p) -> int:
        """The reset seed of the next evaluation's envs (new start states each time); counts it."""
        seed = self.seed + EVAL_SEED_OFFSET + p.evals_done * 1000
        p.evals_done += 1
        self.last_step = p.env_steps
        return seed

    def record(self, state: RunState, returns: np.ndarray, lengths: np.ndarray) -> float:
        """An evaluation's episodes: logged, ``best.pt`` when it is the best yet, the video when due."""
        p = state.progress
        p.eval_return = float(returns.mean())
        metrics = {"eval/return_mean": p.eval_return, "eval/return_std": float(returns.std())}
        metrics["eval/length_mean"] = float(lengths.mean())
        self.loggers.log(metrics, p.env_steps, self.wall())
        if p.eval_return > p.best_eval_return and is_finite_model(state.net):
            p.best_eval_return = p.eval_return
            self.ckpts.save("best", state, self.wall())
        if self.videos is not None and self.videos.due(p.env_steps):
            self.record_video(state)
        return p.eval_return

    def record_video(self, state: RunState) -> Path:
        """One deterministic episode in a rendering env, to MP4 and to the loggers."""
        p = state.progress
        env = FrameRecorder(self.factory.make_single(render_mode="rgb_array"))
        try:
            seed = self.seed + 3 * EVAL_SEED_OFFSET + p.evals_done
            returns, lengths = play_episodes(
                state.net, env, 1, self.device, self.factory.env_actions, True, seed, capture=True
            )
            path = write_video(env.frames, self.video_dir / f"step_{p.env_steps:09d}.mp4", video_fps(self.factory, env))
        finally:
            env.close()
        self.loggers.log({"eval/video_return": returns[0], "eval/video_length": float(lengths[0])}, p.env_steps,
                         self.wall())  # fmt: skip
        self.loggers.log_files("video", [path], p.env_steps)
        return path

    def passes(self, state: RunState, stop) -> bool:
        """Evaluate; True when the stop rule is met and holds over ``confirm_episodes`` more episodes
        from new start states (a 10-episode mean is a noisy solve test)."""
        return self.confirm(state, stop, self.evaluate(state))

    def confirm(self, state: RunState, stop, eval_return: float) -> bool:
        """Whether an evaluation's mean return meets the stop rule, and holds over the confirmation episodes."""
        if not stop.observe_eval(eval_return):
            return False
        if self.confirm_episodes <= 0:
            return True
        envs = self.factory.make_vector(self.confirm_episodes)
        try:
            returns, _ = self._episodes(state.net, envs, self.confirm_seed(state.progress))
        finally:
            envs.close()
        return self.confirmed(state, stop, returns)

    def confirm_seed(self, p) -> int:
        """The reset seed of the confirmation episodes of the evaluation just done."""
        return self.seed + 2 * EVAL_SEED_OFFSET + p.evals_done * 1000

    def confirmed(self, state: RunState, stop, returns: np.ndarray) -> bool:
        """The confirmation episodes' returns, logged; whether their mean still meets the stop rule."""
        mean = float(returns.mean())
        self.loggers.log({"eval/confirm_return_mean": mean}, state.progress.env_steps, self.wall())
        return stop.observe_eval(mean)

    def close(self) -> None:
        self.envs.close()
