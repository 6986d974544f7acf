"""``acx eval``: replay a checkpoint in one env, in a window or to a video, and write ``eval.json``.

The env and the network are rebuilt from the checkpoint alone (its resolved config)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from acx.config import EvalConfig, validate
from acx.run.build import build_from_checkpoint
from acx.run.checkpoint import load_checkpoint
from acx.run.video import FrameRecorder, play_episodes, video_fps, write_video


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """``acx eval``: rebuild env and network from a checkpoint alone, play, report, record."""
    args: EvalConfig = validate(EvalConfig, cfg)
    out_dir = Path(args.paths.output_dir)
    device = instantiate(cfg.device)
    ckpt = load_checkpoint(args.ckpt, map_location=device)
    factory, net = build_from_checkpoint(ckpt, device, args.env_id)
    want_window = args.render == "human"
    env = factory.make_single(render_mode="rgb_array" if (args.video or want_window) else None)
    recorder = None
    if args.video:
        env = recorder = FrameRecorder(env)
    if want_window:
        env = gym.wrappers.HumanRendering(env)  # shows the rgb frames in a pygame window
    start = time.perf_counter()
    try:
        returns, lengths = play_episodes(
            net,
            env,
            args.episodes,
            device,
            factory.env_actions,
            args.deterministic,
            args.seed,
            capture=args.video and not want_window,
        )
    finally:
        env.close()
    result: dict[str, Any] = {
        "checkpoint": ckpt["path"],
        "env_id": factory.id,
        "episodes": len(returns),
        "deterministic": args.deterministic,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "length_mean": float(np.mean(lengths)),
        "returns": returns,
        "lengths": lengths,
        "wall_seconds": round(time.perf_counter() - start, 3),
    }
    if recorder is not None and recorder.frames:
        path = write_video(recorder.frames, out_dir / "video.mp4", video_fps(factory, env))
        result["video"] = str(path)
        result["video_frames"] = len(recorder.frames)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    return result
