"""The Nature-CNN learner's candidates for a faster CPU update, side by side in one process, one torch thread.

    PYTHONPATH=. python bench/atari_learner.py [--rounds 2] [--compile]

pong_fast's network work per update: 5 acting passes on 16 frame stacks, then one update (forward, backward,
RMSprop step) on the 80 transitions; the ceiling below is 80 env steps over that time (the env not counted).
Candidates, each on the same weights and inputs, interleaved over ``--rounds``:
- fp32: what acx does by default;
- channels_last: the convolutions' inputs and weights in NHWC;
- bf16: ``network.precision=bf16``, the trunk under ``torch.autocast`` in bfloat16;
- bf16 + channels_last;
- the heads' share: the policy and value heads alone on the trunk's features (what fusing their matmuls could save);
- ``--compile``: ``torch.compile`` of the update's forward pass, with its compile time (the first call).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import gymnasium as gym
import numpy as np
import torch

from acx.algo.networks import cnn_actor_critic

OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
ACTIONS = gym.spaces.Discrete(6)


def make(precision: str = "fp32", channels_last: bool = False):
    torch.manual_seed(0)
    net = cnn_actor_critic(OBS, ACTIONS, precision=precision)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def timings(net, act_frames, frames, actions, prep=lambda x: x, reps: int = 40, forward=None) -> tuple[float, float]:
    """Seconds per acting pass (16 stacks) and per update (80 stacks)."""
    opt = torch.optim.RMSprop(net.parameters(), lr=7e-4, alpha=0.99, eps=1e-5)
    forward = forward or net.evaluate_actions

    def act():
        with torch.inference_mode():
            net(prep(act_frames))

    def update():
        log_prob, entropy, value, _ = forward(prep(frames), actions)
        loss = -log_prob.mean() + 0.25 * value.pow(2).mean() - 0.01 * entropy.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    out = []
    for fn in (act, update):
        for _ in range(3):
            fn()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        out.append((time.perf_counter() - start) / reps)
    return out[0], out[1]


def line(name: str, act: float, update: float) -> None:
    ceiling = 80 / (5 * act + update)
    print(f"| {name} | {act * 1e3:.1f} | {update * 1e3:.1f} | {ceiling:,.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = torch.Generator().manual_seed(0)
    act_frames = torch.randint(0, 256, (16, 4, 84, 84), dtype=torch.uint8, generator=rng)
    frames = torch.randint(0, 256, (80, 4, 84, 84), dtype=torch.uint8, generator=rng)
    actions = torch.randint(0, 6, (80,), generator=rng)
    nhwc = lambda x: x.contiguous(memory_format=torch.channels_last)  # noqa: E731
    print("| candidate | act, 16 stacks (ms) | update, 80 stacks (ms) | network-only ceiling (env steps/s) |")
    print("|---|---:|---:|---:|")
    for _ in range(args.rounds):
        line("fp32", *timings(make(), act_frames, frames, actions))
        line("channels_last", *timings(make(channels_last=True), act_frames, frames, actions, nhwc))
        line("bf16", *timings(make("bf16"), act_frames, frames, actions))
        line("bf16 + channels_last", *timings(make("bf16", True), act_frames, frames, actions, nhwc))
    net = make()
    features = net.actor_encoder(frames.float()).detach().requires_grad_(True)
    start = time.perf_counter()
    for _ in range(40):
        pi, value = net.policy_head(features), net.value_head(features)
        (pi.sum() + value.sum()).backward()
    heads = (time.perf_counter() - start) / 40
    print(f"\nthe two heads alone, forward and backward on 80 feature rows: {heads * 1e3:.2f} ms an update")
    if args.compile:
        net = make()
        compiled = torch.compile(net.evaluate_actions)
        start = time.perf_counter()
        compiled(frames, actions)
        print(f"torch.compile: first call (compile) {time.perf_counter() - start:.1f} s")
        line("fp32, compiled update", *timings(net, act_frames, frames, actions, forward=compiled))
    with contextlib.suppress(Exception):
        print(f"\nCPU: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}")


if __name__ == "__main__":
    main()
