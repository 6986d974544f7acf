"""Video: the frames an env renders, kept and encoded to H.264 MP4 (``acx eval video=true``)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np


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
