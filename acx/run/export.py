"""``acx export``: a checkpoint's deterministic policy, observation -> action, as ONNX or TorchScript.

The graph holds everything between the env's observation and the env's action, so a program that
runs it needs nothing of acx: the cast of the observation (uint8 frames are scaled to [0, 1] inside
the network), the network's policy path (no critic), then argmax for discrete actions (per part for
MultiDiscrete and MultiBinary, in the space's shape, plus its ``start``), or the Gaussian mean
(squashed into the box when the network was trained with ``mean_bound``) clipped to the action box.
A JSON sidecar says what goes in and out, and where the policy came from.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

import acx
from acx.algo.networks import ActorCritic
from acx.config import ExportConfig, validate
from acx.run.build import build_from_checkpoint
from acx.run.checkpoint import load_checkpoint

FILES = {"onnx": "policy.onnx", "torchscript": "policy.pt"}


class DeterministicPolicy(nn.Module):
    """The acting half of an ActorCritic as one module: observation batch -> env action batch."""

    def __init__(self, net: ActorCritic, action_space: gym.Space, observation_space: gym.Space | None = None):
        super().__init__()
        self.encoder, self.head = net.actor_encoder, net.policy_head
        # network=lstm: the graph takes the state before the step as its last input and gives the next one
        self.core = net.core if net.recurrent else None
        # Dict observations: one input per key, packed here as the env side packs them (acx.envs.dict_obs)
        self.packs = isinstance(observation_space, gym.spaces.Dict)
        self.obs_norm = net.obs_norm  # normalize.obs: the graph normalises its input with the run's statistics
        self.discrete = not isinstance(action_space, gym.spaces.Box)
        # (Multi)Discrete: the env's action is the argmax (per part) plus the space's start, in its shape
        self.action_shape = tuple(action_space.shape or ())
        start = getattr(action_space, "start", 0)
        self.register_buffer("start", torch.as_tensor(np.asarray(start).reshape(-1), dtype=torch.long))
        if not self.discrete:
            shape = (1, *action_space.shape)
            self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32).reshape(shape))
            self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32).reshape(shape))

    def pack(self, parts: Sequence[Tensor]) -> Tensor:
        """The keys' batches (in the layout's order) as the flat float32 vectors the network reads."""
        return torch.cat([x.reshape(x.shape[0], -1).to(torch.float32) for x in parts], dim=-1)

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        observation, state = (inputs[:-1], inputs[-1]) if self.core is not None else (inputs, None)
        observation = self.pack(observation) if self.packs else observation[0]
        if self.obs_norm is not None:
            observation = self.obs_norm(observation)
        elif observation.dtype != torch.uint8:  # uint8 frames stay uint8: the CNN scales them itself
            observation = observation.to(torch.float32)
        features = self.encoder(observation)
        if state is not None:
            state = self.core(features, state)
            features = state[..., : self.core.hidden]
        out = self.head(features)
        if self.discrete:
            action = (torch.argmax(out, dim=-1) + self.start).reshape(-1, *self.action_shape)
        else:
            action = torch.maximum(torch.minimum(out[0], self.high), self.low)  # the mean, clipped to the box
        return action if state is None else (action, state)


def graph_inputs(space: gym.Space, state_size: int = 0) -> list[dict[str, Any]]:
    """The exported graph's inputs: ``observation``, or one per key of a Dict (uint8 images stay uint8,
    a Discrete key is its value as int64, any other key float32); then a recurrent network's ``state``."""
    if not isinstance(space, gym.spaces.Dict):
        inputs = [{"name": "observation", "dtype": "uint8" if space.dtype == np.uint8 else "float32",
                   "shape": ["batch", *space.shape]}]  # fmt: skip
    else:
        inputs = []
        for key, sub in space.spaces.items():
            dtype = "int64" if isinstance(sub, gym.spaces.Discrete) else "uint8" if sub.dtype == np.uint8 else "float32"
            inputs.append({"name": key, "dtype": dtype, "shape": ["batch", *(sub.shape or ())]})
    if state_size:
        inputs.append({"name": "state", "dtype": "float32", "shape": ["batch", state_size]})
    return inputs


def example_inputs(space: gym.Space, state_size: int = 0, n: int = 2) -> tuple[Tensor, ...]:
    """A batch for tracing of the right shapes and dtypes, one per graph input."""
    dtypes = {"uint8": torch.uint8, "int64": torch.long, "float32": torch.float32}
    return tuple(torch.zeros((n, *i["shape"][1:]), dtype=dtypes[i["dtype"]]) for i in graph_inputs(space, state_size))


def state_size(policy: DeterministicPolicy) -> int:
    return policy.core.state_size if policy.core is not None else 0


def export_policy(policy: DeterministicPolicy, space: gym.Space, fmt: str, path: Path) -> Path:
    """Write ``policy`` as ONNX (batch size free) or as a traced TorchScript module."""
    example = example_inputs(space, state_size(policy))
    policy.eval().requires_grad_(False)  # a user's program gets plain tensors back, not autograd ones
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(policy, example, check_trace=False)
        traced.save(str(path))
        return path
    # the exporter validates the whole graph; onnxscript and onnx come with acx's [export] extra
    for name in ("onnx_ir", "onnxscript", "torch.onnx"):  # their progress lines would flood the console
        logging.getLogger(name).setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecations, not the user's
        program = torch.onnx.export(
            policy,
            example,
            dynamo=True,
            input_names=[i["name"] for i in graph_inputs(space, state_size(policy))],
            output_names=["action", "next_state"] if policy.core is not None else ["action"],
            dynamic_shapes={"inputs": tuple({0: batch} for _ in example)},  # forward(*inputs)
            external_data=False,
            verbose=False,
        )
    program.save(str(path))
    return path


def sidecar(ckpt: dict[str, Any], factory, fmt: str, path: Path, state: int = 0) -> dict[str, Any]:
    """What the exported file takes and gives, and where it came from (``state``: a recurrent network's
    state size)."""
    meta = ckpt["meta"]
    space = factory.observation_space
    progress = meta.get("progress", {})
    recurrent = {}
    if state:
        recurrent["recurrent"] = {
            "input": {"name": "state", "dtype": "float32", "shape": ["batch", state]},
            "output": {"name": "next_state", "dtype": "float32", "shape": ["batch", state]},
            "how": "feed zeros at an episode's first step, then the next_state the previous step gave",
        }
    return {
        "file": path.name,
        "format": fmt,
        "env_id": meta["env_id"],
        "observation_space": meta["observation_space"],
        "action_space": meta["action_space"],
        # one input, or (Dict observations) one per key: "inputs" lists them all either way, and the state
        **({"input": graph_inputs(space)[0]} if not isinstance(space, gym.spaces.Dict) else {}),
        "inputs": graph_inputs(space, state),
        "output": {
            "name": "action",
            "dtype": "float32" if isinstance(factory.action_space, gym.spaces.Box) else "int64",
            "shape": ["batch", *(factory.action_space.shape or ())],
        },
        **recurrent,
        "checkpoint": ckpt["path"],
        "checkpoint_kind": meta.get("kind"),
        "env_steps": progress.get("env_steps"),
        "eval_return": progress.get("eval_return"),
        "best_eval_return": progress.get("best_eval_return"),
        "acx_version": acx.__version__,
    }


def strict_json(value: Any) -> Any:
    """Infinite bounds as the strings "inf"/"-inf" (JSON has no infinity; other languages read this file)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    return value


def export_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """``acx export``: rebuild the network from a checkpoint alone, write the policy and its sidecar."""
    args: ExportConfig = validate(ExportConfig, cfg)
    out_dir = Path(args.paths.output_dir)
    device = instantiate(cfg.device)
    ckpt = load_checkpoint(args.ckpt, map_location=device)
    factory, net = build_from_checkpoint(ckpt, device)
    policy = DeterministicPolicy(net.cpu(), factory.action_space, factory.observation_space)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = export_policy(policy, factory.observation_space, args.format, out_dir / FILES[args.format])
    info = sidecar(ckpt, factory, args.format, path, state_size(policy))
    (out_dir / "policy.json").write_text(json.dumps(strict_json(info), indent=2, allow_nan=False))
    return {**info, "path": str(path)}
