"""network=lstm: the state starts each episode at zeros and carries within it, rollouts store what the
update needs to unroll them again, PPO's minibatches are whole env columns with the same gradients as
the unshuffled rollout, every variant trains, a cohort stacks it, resume is exact, and evaluation,
`acx eval` and export carry the state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from acx.algo.losses import PPOLoss
from acx.algo.networks import lstm_actor_critic
from acx.algo.stack import Stack
from acx.envs.factory import GymEnvFactory
from acx.run.build import build_estimator
from acx.run.checkpoint import load_checkpoint
from acx.run.rollout import RolloutCollector
from acx.run.train import train
from tests.conftest import FAST, compose_train, learner_of, resume_copy, run_acx

ort = pytest.importorskip("onnxruntime", reason="the export checks need the [export] extra (make venv has it)")

CARTPOLE = GymEnvFactory("CartPole-v1", max_episode_steps=7)  # many episode ends in a short rollout


def lstm(seed: int = 0, hidden: int = 8, cell: str = "lstm"):
    torch.manual_seed(seed)
    space, actions = CARTPOLE.observation_space, CARTPOLE.action_space
    return lstm_actor_critic(space, actions, hidden_sizes=(16,), lstm_hidden=hidden, cell=cell)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_cells_are_torchs_own(cell: str):
    """The cell of two linear layers computes torch.nn.LSTMCell's (GRUCell's) step with the same weights."""
    core = lstm(cell=cell).core
    torch_cell = torch.nn.LSTMCell(16, 8) if cell == "lstm" else torch.nn.GRUCell(16, 8)
    with torch.no_grad():
        torch_cell.weight_ih.copy_(core.ih.weight)
        torch_cell.bias_ih.copy_(torch.randn(torch_cell.bias_ih.shape))
        core.ih.bias.copy_(torch_cell.bias_ih)
        torch_cell.weight_hh.copy_(core.hh.weight)
        if cell == "gru":
            torch_cell.bias_hh.copy_(torch.randn(torch_cell.bias_hh.shape))
            core.hh.bias.copy_(torch_cell.bias_hh)
        else:
            torch_cell.bias_hh.zero_()
        x, state = torch.randn(5, 16), torch.randn(5, core.state_size)
        out = core(x, state)
        if cell == "lstm":
            h, c = torch_cell(x, state.split(8, dim=-1))
            torch.testing.assert_close(out, torch.cat([h, c], dim=-1))
        else:
            torch.testing.assert_close(out, torch_cell(x, state))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_state_is_zeros_at_each_episode_start_and_carried_within_an_episode(cell: str):
    net = lstm(cell=cell)
    obs = torch.randn(5, 3, 4)  # (T, B, F)
    starts = torch.tensor([[1, 1, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    carried = torch.randn(3, net.state_size)  # a state from before the sequence: used where no episode starts
    with torch.no_grad():
        out = net.unroll(obs, carried, starts)
        for b in range(3):
            state = carried[b : b + 1]
            for t in range(5):
                if starts[t, b]:
                    state = torch.zeros_like(state)
                expected, state = net.step(obs[t, b : b + 1], state)
                torch.testing.assert_close(out[t, b], expected[0])
        # a start at step 0 ignores the carried state: the same outputs from any state
        torch.testing.assert_close(net.unroll(obs, torch.randn(3, net.state_size), starts), out)
        # no start: the state before the sequence matters
        assert not torch.allclose(net.unroll(obs[1:3], carried, starts[1:3] & False)[0], out[1])


def collect(net, n_envs: int = 4, n_steps: int = 20, **options):
    estimator = build_estimator({"_target_": "acx.algo.returns.gae_advantages", "_partial_": True, "gae_lambda": 0.95})
    learner = learner_of(net, loss=PPOLoss(), estimator=estimator, hyper={"gae_lambda": 0.95}, **options)
    collector = RolloutCollector(CARTPOLE.make_vector(n_envs, seed=0), learner, 1, n_steps, torch.device("cpu"),
                                 store_log_probs=True)  # fmt: skip
    return learner, collector


def test_rollouts_store_the_state_before_each_step_and_where_episodes_start():
    """Starts: the first step after a reset, and each step after an autoreset step; the stored state is
    zeros exactly there, and elsewhere the state the step before left; the collector's acting matches a
    replay of the rollout through the network."""
    net = lstm()
    learner, collector = collect(net)
    last_valid = None
    for _ in range(2):
        r = collector.collect()  # its tensors are views of the collector's storage: checked before the next
        starts, valid = r.starts[:, 0], r.valid[:, 0]
        expected = torch.zeros_like(starts)
        expected[0] = True if last_valid is None else ~last_valid
        expected[1:] = ~valid[:-1]  # after an autoreset step: the next episode's first observation
        assert torch.equal(starts, expected)
        assert starts[1:].any(), "the 7-step limit must start episodes within the rollout"
        zeros = (r.states[:, 0] == 0).all(-1)
        assert torch.equal(zeros, starts)
        with torch.no_grad():
            out = net.unroll(r.obs[:, 0], r.states[0, 0], starts)
            log_probs = net.policy_head.log_prob(net.policy_head(out), r.actions[:, 0])
        torch.testing.assert_close(log_probs, r.log_probs[:, 0])  # the update sees what acted
        last_valid = valid[-1].clone()


def test_a_column_minibatch_has_the_gradients_of_the_unshuffled_rollout():
    """PPO's minibatches are whole env columns: the log-probs and values of a minibatch's transitions,
    and the gradients of their sum, are those of the same transitions in one unroll of the rollout in
    its own order."""
    net = lstm()
    learner, collector = collect(net, n_envs=4, epochs=1, minibatches=2)
    r = collector.collect()
    adv, ret = learner.estimate(r.rows, r.rewards, r.values, r.next_values, r.terminated, r.done, r.valid)
    batch = r.batch(adv, ret)
    parts = list(learner.minibatch_indices(batch.mask, [0], batch.steps))
    assert len(parts) == 2
    seen = torch.cat([index[0] for index, _, _ in parts]).sort().values
    assert torch.equal(seen, torch.arange(batch.mask.shape[1]))  # every transition once, autoreset steps too
    obs, actions, state, starts = (x[0] for x in batch.sequences())
    for index, mask, _ in parts:
        part = batch.take(index, mask)
        assert torch.equal(part.mask, batch.mask[:, index[0]])
        net.zero_grad()
        log_probs, _, values, _ = net.evaluate_sequence(*(x[0] for x in part.sequences()))
        (log_probs.sum() + values.sum()).backward()
        grads = [p.grad.clone() for p in net.parameters()]
        net.zero_grad()
        cols = index[0][: index.shape[1] // batch.steps]  # the part's columns (its indices are t-major)
        full_lp, _, full_v, _ = net.evaluate_sequence(obs, actions, state, starts)
        torch.testing.assert_close(log_probs, full_lp[:, cols])
        torch.testing.assert_close(values, full_v[:, cols])
        (full_lp[:, cols].sum() + full_v[:, cols].sum()).backward()
        for g, p in zip(grads, net.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_stacked_lstm_steps_and_unrolls_as_each_member_alone(cell: str):
    nets = [lstm(seed, cell=cell) for seed in range(3)]
    stack = Stack(nets)
    obs, state = torch.randn(3, 5, 4), torch.randn(3, 5, nets[0].state_size)
    pi, value, new_state = stack.batched(obs, state)
    seq, starts = torch.randn(3, 6, 5, 4), torch.rand(3, 6, 5) < 0.3
    unrolled = stack.batched.unroll(seq, state, starts)
    for k, net in enumerate(nets):
        own_pi, own_value, own_state = net(obs[k], state[k])
        torch.testing.assert_close(pi[k], own_pi)
        torch.testing.assert_close(value[k], own_value)
        torch.testing.assert_close(new_state[k], own_state)
        torch.testing.assert_close(unrolled[k], net.unroll(seq[k], state[k], starts[k]))


LSTM_FAST = [*FAST, "network=lstm", "network.lstm_hidden=16", "stop=budget", "log.every_updates=1"]


@pytest.mark.parametrize("algo", ["episodic", "td0", "nstep", "ppo", "ppo_gru"])
def test_every_variant_trains_a_recurrent_network(tmp_path: Path, algo: str):
    extra = ["algo.n_steps=16", "algo.minibatches=2"] if algo.startswith("ppo") else []
    base = LSTM_FAST
    if algo == "ppo_gru":  # the GRU cell: the same network, training and checkpoints otherwise
        algo, base = "ppo", [a.replace("network=lstm", "network=gru") for a in LSTM_FAST]
    summary = train(compose_train([*base, f"algo={algo}", "total_steps=600", *extra], tmp_path))
    assert summary["env_steps"] >= 600 and np.isfinite(summary["final_eval_return"])
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "final.pt")
    assert "core.ih.weight" in ckpt["model"] and "core.hh.weight" in ckpt["model"]


def test_a_recurrent_ppo_run_resumes_exactly(tmp_path: Path):
    """Resuming one checkpoint twice gives the same weights and metrics rows (the episodes, and so the
    LSTM's state, restart at zeros on resume, as every run's do)."""
    args = [*LSTM_FAST, "algo=ppo", "algo.n_steps=16", "algo.minibatches=2"]
    first = tmp_path / "first"
    train(compose_train([*args, "total_steps=256"], first))

    (a, rows_a), (b, rows_b) = (resume_copy(first, tmp_path / name, [*args, "total_steps=512"]) for name in "ab")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert rows_a == rows_b and a["meta"]["progress"]["env_steps"] >= 512
    start = load_checkpoint(first / "checkpoints" / "final.pt")
    assert not torch.equal(start["model"]["core.hh.weight"], a["model"]["core.hh.weight"])


def test_lstm_through_the_cli_in_a_cohort_then_eval_and_export(tmp_path: Path):
    """Two seeds of network=lstm in one cohort; `acx eval` replays one; the ONNX graph takes the state
    and gives the next, and acts as acx does over an episode fed its own states."""
    sweep = tmp_path / "sweep"
    proc = run_acx("train", "-m", "hydra/launcher=population", "seed=0,1", *LSTM_FAST, "algo=nstep",
                   "total_steps=2000", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=s${seed}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 jobs in 1 cohorts" in proc.stdout
    replay = run_acx("eval", f"ckpt={sweep / 's1'}", "episodes=2", f"hydra.run.dir={tmp_path / 'eval'}")
    assert replay.returncode == 0, replay.stderr[-2000:]
    proc = run_acx("export", f"ckpt={sweep / 's1'}", "format=onnx", f"hydra.run.dir={tmp_path / 'onnx'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((tmp_path / "onnx" / "policy.json").read_text())
    assert [i["name"] for i in info["inputs"]] == ["observation", "state"]
    assert info["recurrent"]["output"] == {"name": "next_state", "dtype": "float32", "shape": ["batch", 32]}
    session = ort.InferenceSession(str(tmp_path / "onnx" / "policy.onnx"), providers=["CPUExecutionProvider"])
    from acx.run.build import build_from_checkpoint

    factory, net = build_from_checkpoint(load_checkpoint(sweep / "s1"), torch.device("cpu"))
    env = factory.make_single()
    obs, _ = env.reset(seed=5)
    state, ours = np.zeros((1, 32), np.float32), net.initial_state(1)
    for _ in range(100):
        action, state = session.run(["action", "next_state"], {"observation": obs[None], "state": state})
        with torch.no_grad():
            expected, ours = net.action(torch.as_tensor(obs)[None], ours, deterministic=True)
        assert action.tolist() == expected.tolist()
        np.testing.assert_allclose(state, ours.numpy(), rtol=0, atol=1e-5)
        obs, _, terminated, truncated, _ = env.step(int(action[0]))
        if terminated or truncated:
            break


def test_what_network_lstm_cannot_take_is_one_line(tmp_path: Path):
    for args, expected in (
        (["algo=ppo", "algo.num_envs=2", "algo.minibatches=4"],
         "acx: error: algo.minibatches: network=lstm's minibatches are whole env columns, so at most "
         "algo.num_envs (2), got 4"),
        (["env=pong"], "acx: error: network: network=lstm reads flat vector or Dict observations; "
         "ALE/Pong-v5 observations have shape (4, 84, 84)"),
    ):  # fmt: skip
        proc = run_acx("train", "network=lstm", *args, f"hydra.run.dir={tmp_path}")
        assert proc.returncode == 2 and proc.stderr.strip() == expected
