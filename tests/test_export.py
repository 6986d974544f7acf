"""`acx export`: the exported policy acts as acx's deterministic policy does, in onnxruntime and in a
TorchScript file loaded by a process that never imports acx."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from acx.algo.networks import mlp_actor_critic
from acx.envs.dict_obs import pack
from acx.run.build import build_from_checkpoint
from acx.run.checkpoint import load_checkpoint
from acx.run.export import DeterministicPolicy
from tests.conftest import FAST, acx_main

ort = pytest.importorskip("onnxruntime", reason="acx export's checks need the [export] extra (make venv has it)")

RUNS = {
    "cartpole": [*FAST, "total_steps=1000"],
    # with normalize.obs: the exported graph normalises its input with the checkpoint's statistics
    "pendulum": [*FAST, "env=pendulum", "total_steps=1000", "network.gaussian.mean_bound=true", "normalize.obs=true"],
    # MultiDiscrete([3, 4, 2]) and MultiBinary((2, 2)) actions: argmax per part, in the space's shape
    "buttons": [*FAST, "env.id=tests.toy_envs:Buttons-v0", "total_steps=1000"],
    "bits": [*FAST, "env.id=tests.toy_envs:Bits-v0", "algo=ppo", "total_steps=1000"],
    # Dict observations (a Discrete, a uint8 image, a float64 Box normalised): one named input per key
    "beacon": [*FAST, "env.id=tests.toy_envs:Beacon-v0", "normalize.obs=true", "total_steps=1000"],
    "pong": [
        "progress=false",
        "logger=none",
        "env=pong",
        "algo.num_envs=2",
        "total_steps=40",
        "eval.episodes=1",
        "env.max_episode_frames=60",
        "checkpoint.every_steps=1000000",
    ],  # fmt: skip
}

STANDALONE = """
import sys
import numpy as np
import torch
policy = torch.jit.load(sys.argv[1])
inputs = np.load(sys.argv[2])  # one array per graph input, in the sidecar's order
actions = policy(*[torch.from_numpy(inputs[name]) for name in inputs.files]).numpy()
np.save(sys.argv[3], actions)
assert not [m for m in sys.modules if m == "acx" or m.startswith("acx.")], "the script must not need acx"
"""


def observations(factory, n: int = 1000) -> np.ndarray | dict[str, np.ndarray]:
    """``n`` real observations from random play in 8 envs (a Dict env's as the env gives them: a dict)."""
    if isinstance(factory.observation_space, gym.spaces.Dict):
        envs = gym.make_vec(factory.make_id, 8, vectorization_mode="sync")
        obs, _ = envs.reset(seed=123)
        seen = []
        while len(seen) * 8 < n:
            seen.append(obs)
            obs, *_ = envs.step(envs.action_space.sample())
        return {key: np.concatenate([o[key] for o in seen])[:n] for key in obs}
    envs = factory.make_vector(8, seed=123)
    envs.action_space.seed(123)
    obs, _ = envs.reset(seed=123)
    seen = []
    while sum(len(o) for o in seen) < n:
        seen.append(obs)
        obs, *_ = envs.step(envs.action_space.sample())
    envs.close()
    return np.concatenate(seen)[:n]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, request):
    """Train, export to both formats through acx's entry point, and collect 1,000 observations."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    assert acx_main("train", *RUNS[name], f"hydra.run.dir={root / 'run'}").returncode == 0
    files = {}
    for fmt in ("onnx", "torchscript"):
        proc = acx_main("export", f"ckpt={root / 'run'}", f"format={fmt}", f"hydra.run.dir={root / fmt}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        files[fmt] = root / fmt / ("policy.onnx" if fmt == "onnx" else "policy.pt")
        assert str(files[fmt]) in proc.stdout
    ckpt = load_checkpoint(root / "run")
    factory, net = build_from_checkpoint(ckpt, torch.device("cpu"))
    obs = observations(factory)
    packed = obs
    if isinstance(obs, dict):  # what acx's network reads: the keys packed as the env side packs them
        space = factory.observation_space
        packed = np.stack([pack(space, {key: obs[key][i] for key in obs}) for i in range(len(obs[next(iter(obs))]))])
    with torch.no_grad():
        expected = factory.env_actions(net.action(torch.as_tensor(packed), deterministic=True).numpy())
    return {"root": root, "files": files, "obs": obs, "expected": expected, "factory": factory, "ckpt": ckpt}


def check_same(actions: np.ndarray, expected: np.ndarray, space: gym.Space) -> None:
    assert actions.shape == expected.shape
    if not isinstance(space, gym.spaces.Box):
        np.testing.assert_array_equal(actions, expected)  # discrete: exactly the same actions
    else:
        np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-5)


PARAMS = ["cartpole", "pendulum", "buttons", "bits", "beacon", pytest.param("pong", marks=pytest.mark.slow)]


def graph_feed(exported) -> dict[str, np.ndarray]:
    """The observations by the sidecar's input names, in its dtypes."""
    inputs = json.loads((exported["root"] / "onnx" / "policy.json").read_text())["inputs"]
    obs = exported["obs"] if isinstance(exported["obs"], dict) else {"observation": exported["obs"]}
    return {i["name"]: obs[i["name"]].astype(i["dtype"]) for i in inputs}


@pytest.mark.parametrize("exported", PARAMS, indirect=True)
def test_onnx_acts_as_acx_does(exported):
    session = ort.InferenceSession(str(exported["files"]["onnx"]), providers=["CPUExecutionProvider"])
    actions = session.run(["action"], graph_feed(exported))[0]
    check_same(actions, exported["expected"], exported["factory"].action_space)


@pytest.mark.parametrize("exported", PARAMS, indirect=True)
def test_torchscript_acts_as_acx_does_without_acx(exported, tmp_path: Path):
    np.savez(tmp_path / "obs.npz", **graph_feed(exported))
    done = subprocess.run(
        [sys.executable, "-c", STANDALONE, str(exported["files"]["torchscript"]), str(tmp_path / "obs.npz"),
         str(tmp_path / "actions.npy")], capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    check_same(np.load(tmp_path / "actions.npy"), exported["expected"], exported["factory"].action_space)


@pytest.mark.parametrize("exported", ["cartpole"], indirect=True)
def test_the_sidecar_says_what_goes_in_and_out(exported):
    info = json.loads((exported["root"] / "onnx" / "policy.json").read_text())  # strict JSON: no Infinity
    meta = exported["ckpt"]["meta"]
    assert info["env_id"] == "CartPole-v1" and info["acx_version"] and info["format"] == "onnx"
    assert info["input"] == {"name": "observation", "dtype": "float32", "shape": ["batch", 4]}
    assert info["inputs"] == [info["input"]]
    assert info["output"] == {"name": "action", "dtype": "int64", "shape": ["batch"]}
    assert info["action_space"] == meta["action_space"] and info["observation_space"]["high"][1] == "inf"
    assert info["eval_return"] == meta["progress"]["eval_return"]


@pytest.mark.parametrize("exported", ["bits"], indirect=True)
def test_the_sidecar_gives_multi_part_actions_in_the_spaces_shape(exported):
    info = json.loads((exported["root"] / "onnx" / "policy.json").read_text())
    assert info["output"] == {"name": "action", "dtype": "int64", "shape": ["batch", 2, 2]}
    assert info["action_space"] == {"type": "MultiBinary", "shape": [2, 2]}
    assert exported["expected"].shape == (1000, 2, 2) and set(np.unique(exported["expected"])) <= {0, 1}


@pytest.mark.parametrize("exported", ["beacon"], indirect=True)
def test_the_sidecar_lists_a_dict_observations_inputs_by_key(exported):
    info = json.loads((exported["root"] / "onnx" / "policy.json").read_text())
    assert "input" not in info and info["inputs"] == [
        {"name": "frame", "dtype": "uint8", "shape": ["batch", 36, 36, 1]},
        {"name": "goal", "dtype": "int64", "shape": ["batch"]},
        {"name": "noise", "dtype": "float32", "shape": ["batch", 2]},
    ]
    assert list(info["observation_space"]["spaces"]) == ["frame", "goal", "noise"]


def test_gaussian_means_are_clipped_to_the_action_box():
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    net = mlp_actor_critic(gym.spaces.Box(-1, 1, (3,), np.float32), space, hidden_sizes=[8])
    with torch.no_grad():
        net.policy_head.mean.bias.fill_(50.0)
    policy = DeterministicPolicy(net, space)
    assert torch.equal(policy(torch.zeros(4, 3)), torch.full((4, 1), 2.0))


def test_bad_checkpoint_or_format_is_one_line(tmp_path: Path):
    for args, expected in (
        ([f"ckpt={tmp_path / 'nope.pt'}"], "does not exist"),
        ([f"ckpt={tmp_path}", "format=tflite"], "format: must be one of onnx, torchscript, got 'tflite'"),
    ):
        proc = acx_main("export", *args, f"hydra.run.dir={tmp_path / 'out'}")
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], lines
        assert not (tmp_path / "out").exists()
