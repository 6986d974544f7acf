"""Evaluation: deterministic episodes on separate envs during training, and checkpoint replay
(``acx eval``) with a window or a video."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from acx.networks import ActorCritic


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


class _FrameRecorder(gym.Wrapper):
    """Keeps every frame that ``render()`` returns (so a window and a video can share one env)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.frames: list[np.ndarray] = []

    def render(self):
        frame = self.env.render()
        if frame is not None:
            self.frames.append(np.asarray(frame))
        return frame


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """Encode RGB frames to H.264 MP4 with the ffmpeg that ships inside imageio-ffmpeg."""
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        output_params=["-loglevel", "error"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame[:, :, :3]))
    writer.close()
    return path


@torch.inference_mode()
def play_episodes(
    net: ActorCritic,
    env: gym.Env,
    episodes: int,
    device: torch.device,
    env_actions=lambda a: a,
    deterministic: bool = True,
    seed: int | None = None,
    capture: bool = False,
) -> tuple[list[float], list[int]]:
    """Play ``episodes`` episodes one after another in a single (possibly rendering) env."""
    returns, lengths = [], []
    net.eval()
    for ep in range(episodes):
        obs, _ = env.reset(seed=None if seed is None else seed + ep)
        if capture:
            env.render()
        total, steps, done = 0.0, 0, False
        while not done:
            action = net.action(torch.as_tensor(obs, device=device).unsqueeze(0), deterministic=deterministic)
            obs, reward, terminated, truncated, _ = env.step(env_actions(action.cpu().numpy()[0]))
            if capture:
                env.render()
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return returns, lengths


def space_signature(space: dict[str, Any]) -> str:
    """What a network depends on in a space: its type and shape (or action count), e.g. 'Box[4]'."""
    detail = space.get("n", space.get("shape"))
    return f"{space['type']}{detail}" if detail is not None else space["type"]


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """``acx eval``: rebuild env and network from a checkpoint alone, play, report, record."""
    from acx.checkpoint import CheckpointError, load_checkpoint
    from acx.envs import space_to_dict
    from acx.train import build_env_factory, build_network

    out_dir = Path(cfg.paths.output_dir)
    device = instantiate(cfg.device)
    ckpt = load_checkpoint(cfg.ckpt, map_location=device)
    run_cfg = OmegaConf.create(ckpt["meta"]["config"])
    env_cfg = run_cfg.env
    if cfg.get("env_id"):
        env_cfg.id = cfg.env_id
    factory = build_env_factory(env_cfg)
    meta = ckpt["meta"]
    for name in ("observation_space", "action_space"):
        here, there = space_signature(space_to_dict(getattr(factory, name))), space_signature(meta[name])
        if here != there:
            raise CheckpointError(
                f"{ckpt['path']} was trained on {meta['env_id']} ({name} {there}), "
                f"which does not fit {factory.id} ({here})"
            )
    net = build_network(run_cfg.network, factory, device, ckpt)
    render = cfg.get("render")
    if render not in (None, "human", "none"):
        raise ValueError(f"render must be 'human' or null, got {render!r}")
    want_window = render == "human"
    env = factory.make_single(render_mode="rgb_array" if (cfg.video or want_window) else None)
    recorder = None
    if cfg.video:
        env = recorder = _FrameRecorder(env)
    if want_window:
        env = gym.wrappers.HumanRendering(env)  # shows the rgb frames in a pygame window
    start = time.perf_counter()
    returns, lengths = play_episodes(
        net,
        env,
        int(cfg.episodes),
        device,
        factory.env_actions,
        bool(cfg.deterministic),
        int(cfg.seed),
        capture=bool(cfg.video) and not want_window,
    )
    env.close()
    result: dict[str, Any] = {
        "checkpoint": ckpt["path"],
        "env_id": factory.id,
        "episodes": len(returns),
        "deterministic": bool(cfg.deterministic),
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "length_mean": float(np.mean(lengths)),
        "returns": returns,
        "lengths": lengths,
        "wall_seconds": round(time.perf_counter() - start, 3),
    }
    if recorder is not None and recorder.frames:
        fps = int(factory.spec.kwargs.get("render_fps", 0) or env.metadata.get("render_fps") or 30)
        path = write_video(recorder.frames, out_dir / "video.mp4", fps)
        result["video"] = str(path)
        result["video_frames"] = len(recorder.frames)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    return result
