"""Episodes in one env, and their video: the frames an env renders, kept and encoded to H.264 MP4
(``acx eval video=true``, and ``eval.video_every_steps`` during training)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from acx.algo.networks import ActorCritic


class FrameRecorder(gym.Wrapper):
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
    was_training = net.training
    net.eval()
    for ep in range(episodes):
        obs, _ = env.reset(seed=None if seed is None else seed + ep)
        if capture:
            env.render()
        total, steps, done = 0.0, 0, False
        state = net.initial_state(1, device) if net.recurrent else None  # an LSTM's: zeros as each episode starts
        while not done:
            batch = torch.as_tensor(obs, device=device).unsqueeze(0)
            if state is None:
                action = net.action(batch, deterministic=deterministic)
            else:
                action, state = net.action(batch, state, deterministic=deterministic)
            obs, reward, terminated, truncated, _ = env.step(env_actions(action.cpu().numpy()[0]))
            if capture:
                env.render()
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
    net.train(was_training)
    return returns, lengths


def video_fps(factory, env: gym.Env) -> int:
    """The frame rate a game is shown at: the env's own render_fps (Atari: the emulator's, per action)."""
    return int(factory.spec.kwargs.get("render_fps", 0) or env.metadata.get("render_fps") or 30)


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """The RGB frames of an MP4 (as written by ``write_video``) and its frame rate."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(frame, np.uint8).reshape(h, w, 3) for frame in reader], float(meta["fps"])


def gif_bytes(frames: list[np.ndarray], fps: int = 30) -> bytes:
    """Frames as an animated GIF (TensorBoard shows videos that way), encoded with Pillow.

    One palette for all frames, taken from a few frames spread over the episode: Pillow's default of a
    new adaptive palette per frame costs ~7x the time (~7 s for a 500-frame CartPole episode).
    Pillow merges identical consecutive frames into one of longer duration."""
    import io

    from PIL import Image

    rgb = [np.ascontiguousarray(f[:, :, :3]) for f in frames]
    spread = rgb[:: max(1, len(rgb) // 8)][:8]
    palette = Image.fromarray(np.concatenate(spread, axis=0)).quantize(
        colors=255, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in rgb]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)
    return buffer.getvalue()
