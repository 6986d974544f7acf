"""Networks and the loss: shapes, distributions vs torch.distributions, and seed 004's hand-derived
backward pass as a reference for the autograd loss."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from acx.algo.losses import ActorCriticLoss
from acx.algo.networks import DictLayout, cnn_actor_critic, mlp_actor_critic
from acx.algo.normalize import ObsNormalizer
from acx.envs.dict_obs import pack

CARTPOLE_OBS = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
PENDULUM_ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def test_categorical_head_matches_torch_distributions():
    torch.manual_seed(0)
    net = mlp_actor_critic(CARTPOLE_OBS, gym.spaces.Discrete(3), hidden_sizes=[16], policy_init_gain=1.0)
    obs = torch.randn(32, 4)
    actions = torch.randint(0, 3, (32,))
    log_prob, entropy, value, std = net.evaluate_actions(obs, actions)
    logits = net.policy_head.out(net.actor_encoder(obs))
    ref = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(log_prob, ref.log_prob(actions))
    torch.testing.assert_close(entropy, ref.entropy())
    assert value.shape == (32,) and std is None


def test_gumbel_sampling_follows_the_policy():
    torch.manual_seed(0)
    head = mlp_actor_critic(CARTPOLE_OBS, gym.spaces.Discrete(3), hidden_sizes=[8]).policy_head
    logp = torch.log(torch.tensor([[0.2, 0.5, 0.3]])).expand(60000, 3)
    freq = torch.bincount(head.sample(logp), minlength=3).float() / 60000
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.5, 0.3]), atol=0.01, rtol=0)


def test_multi_categorical_head_against_hand_computed_values():
    """MultiDiscrete([2, 3]): part 0 plays 1 with 3/4, part 1 plays 0, 1, 2 with 1/5, 3/10, 1/2."""
    net = mlp_actor_critic(CARTPOLE_OBS, gym.spaces.MultiDiscrete([2, 3]), hidden_sizes=[8])
    head = net.policy_head
    with torch.no_grad():
        head.out.weight.zero_()  # the probabilities come from the biases alone
        head.out.bias.copy_(torch.log(torch.tensor([0.25, 0.75, 1.0, 0.2, 0.3, 0.5])))  # slot 2 of part 0: padding
    actions = torch.tensor([[1, 2], [0, 0]])
    log_prob, entropy, _, std = net.evaluate_actions(torch.randn(2, 4), actions)
    torch.testing.assert_close(log_prob, torch.tensor([math.log(0.75 * 0.5), math.log(0.25 * 0.2)]))
    h0 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))  # 0.5623
    h1 = -(0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5))  # 1.0297
    torch.testing.assert_close(entropy, torch.tensor([h0 + h1, h0 + h1]))
    assert std is None
    logp = head(torch.zeros(60000, 8))
    assert torch.equal(head.mode(logp[:1]), torch.tensor([[1, 2]]))
    torch.manual_seed(0)
    drawn = head.sample(logp)
    assert drawn.shape == (60000, 2) and int(drawn[:, 0].max()) == 1  # the padded slot is never drawn
    freq = [torch.bincount(drawn[:, i], minlength=n).float() / 60000 for i, n in enumerate((2, 3))]
    torch.testing.assert_close(freq[0], torch.tensor([0.25, 0.75]), atol=0.01, rtol=0)
    torch.testing.assert_close(freq[1], torch.tensor([0.2, 0.3, 0.5]), atol=0.01, rtol=0)


def test_multi_binary_head_is_one_bernoulli_per_bit():
    """MultiBinary((2, 2)): four bits, each 1 with probability 3/4 here; log-probs and the entropy sum."""
    net = mlp_actor_critic(CARTPOLE_OBS, gym.spaces.MultiBinary((2, 2)), hidden_sizes=[8])
    with torch.no_grad():
        net.policy_head.out.weight.zero_()
        net.policy_head.out.bias.copy_(torch.tensor([0.0, math.log(3.0)] * 4))
    actions = torch.tensor([[1, 1, 0, 1]])
    log_prob, entropy, _, _ = net.evaluate_actions(torch.randn(1, 4), actions)
    torch.testing.assert_close(log_prob, torch.tensor([3 * math.log(0.75) + math.log(0.25)]))
    bernoulli = torch.distributions.Bernoulli(probs=torch.tensor(0.75))
    torch.testing.assert_close(entropy, 4 * bernoulli.entropy().reshape(1))


def test_dict_observations_packed_then_encoded_per_key():
    """The env side packs a Dict in Gymnasium's key order; the network splits it again: an image
    (channels last here) through the Nature CNN, a Discrete one-hot (from its start), a Box as it is;
    normalize.obs normalises the Box key only."""
    space = gym.spaces.Dict(
        {
            "pos": gym.spaces.Box(-1, 1, (2,), np.float32),
            "cam": gym.spaces.Box(0, 255, (40, 40, 3), np.uint8),
            "room": gym.spaces.Discrete(3, start=1),
        }
    )
    layout = DictLayout(space)
    assert [(e.key, e.kind, e.offset, e.size) for e in layout.entries] == [
        ("cam", "image", 0, 4800), ("pos", "box", 4800, 2), ("room", "discrete", 4802, 1)
    ]  # fmt: skip
    assert layout.entries[0].image_chw == (3, 40, 40) and layout.normalized().sum() == 2
    cam = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    packed = pack(space, {"pos": np.array([0.5, -0.5], np.float32), "cam": cam, "room": 3})
    np.testing.assert_array_equal(packed[4800:], [0.5, -0.5, 3.0])
    net = mlp_actor_critic(space, gym.spaces.Discrete(2), hidden_sizes=[8], cnn_features=16)
    encoder = net.actor_encoder[0]
    assert encoder.out_dim == 16 + 2 + 3
    features = encoder(torch.from_numpy(packed)[None])
    cnn_alone = encoder.cnns["cam"](torch.from_numpy(cam).permute(2, 0, 1)[None].float())  # (C, H, W)
    torch.testing.assert_close(features[0, :16], cnn_alone[0])
    torch.testing.assert_close(features[0, 16:], torch.tensor([0.5, -0.5, 0.0, 0.0, 1.0]))  # room 3: index 2
    norm = ObsNormalizer((layout.size,), only=torch.from_numpy(layout.normalized()))
    norm.rms.mean.fill_(100.0)
    out = norm(torch.from_numpy(packed)[None])[0]
    torch.testing.assert_close(out[:4800], torch.from_numpy(packed[:4800]))  # the image as it was
    assert out[4800] == -10.0 and out[4802] == 3.0  # (0.5 - 100) / 1 clipped at -10; the Discrete as it was


@pytest.mark.parametrize("log_std", ["state_dependent", "state_independent"])
def test_gaussian_head_matches_torch_normal(log_std):
    torch.manual_seed(0)
    net = mlp_actor_critic(CARTPOLE_OBS, gym.spaces.Box(-1, 1, (2,)), gaussian={"log_std": log_std})
    obs, actions = torch.randn(8, 4), torch.randn(8, 2)
    log_prob, entropy, _, std = net.evaluate_actions(obs, actions)
    mean, log_s = net.policy_head(net.actor_encoder(obs))
    ref = torch.distributions.Normal(mean, log_s.exp())
    torch.testing.assert_close(log_prob, ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(entropy, ref.entropy().sum(-1))
    torch.testing.assert_close(std, log_s.exp())


def test_seed001_gaussian_bounds():
    net = mlp_actor_critic(
        gym.spaces.Box(-8, 8, (3,)),
        PENDULUM_ACT,
        hidden_sizes=[128, 128],
        activation="relu",
        gaussian={"log_std": "state_dependent", "mean_bound": True, "log_std_bounds": [-20, 2]},
    )
    with torch.no_grad():
        net.policy_head.log_std_head.bias.fill_(50.0)
        net.policy_head.mean.bias.fill_(50.0)
    mean, log_std = net.policy_head(net.actor_encoder(torch.randn(5, 3)))
    assert torch.all(log_std == 2.0)  # clamped to [-20, 2]
    assert torch.allclose(mean, torch.full_like(mean, 2.0))  # 2 * tanh(.) -> [-2, 2]


def test_shared_trunk_and_groups():
    shared = mlp_actor_critic(CARTPOLE_OBS, gym.spaces.Discrete(2), hidden_sizes=[128], shared=True)
    assert shared.critic_encoder is None and set(shared.parameter_groups()) == {"all"}
    split = mlp_actor_critic(CARTPOLE_OBS, gym.spaces.Discrete(2), hidden_sizes=[128, 128], layer_norm=True)
    groups = split.parameter_groups()
    assert {id(p) for p in groups["actor"]}.isdisjoint({id(p) for p in groups["critic"]})
    assert len(groups["actor"]) + len(groups["critic"]) == len(groups["all"])
    assert any(isinstance(m, torch.nn.LayerNorm) for m in split.actor_encoder)


def test_orthogonal_init_gains():
    net = mlp_actor_critic(CARTPOLE_OBS, gym.spaces.Discrete(2), hidden_sizes=[64], init="orthogonal")
    w = net.actor_encoder[0].weight  # (64, 4): orthogonal columns scaled by sqrt(2)
    torch.testing.assert_close(w.T @ w, 2 * torch.eye(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(net.policy_head.out.weight @ net.policy_head.out.weight.T, 1e-4 * torch.eye(2))


@pytest.mark.parametrize("head_hidden", [0, 512])
def test_cnn_on_uint8_frames(head_hidden):
    net = cnn_actor_critic(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6), head_hidden)
    pi, value = net(torch.randint(0, 255, (3, 4, 84, 84), dtype=torch.uint8))
    assert net.policy_head.sample(pi).shape == (3,) and value.shape == (3,)
    assert net.shared


def test_bf16_precision_runs_the_trunk_in_bfloat16_and_keeps_float32_weights():
    """network.precision=bf16: the same weights give outputs within bfloat16's rounding of float32's,
    in float32; the gradients reach the float32 weights; a cohort's stacked trunk runs it too."""
    space, actions = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6)
    torch.manual_seed(0)
    fp32 = cnn_actor_critic(space, actions)
    bf16 = cnn_actor_critic(space, actions, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())  # the same tensors: a checkpoint fits either precision
    frames = torch.randint(0, 255, (5, 4, 84, 84), dtype=torch.uint8)
    (pi32, v32), (pi16, v16) = fp32(frames), bf16(frames)
    assert pi16.dtype == v16.dtype == torch.float32
    assert bf16.actor_encoder[1].weight.dtype == torch.float32
    torch.testing.assert_close(pi16, pi32, rtol=0, atol=0.05)
    torch.testing.assert_close(v16, v32, rtol=0, atol=0.05)
    assert not torch.equal(v16, v32)  # it did run in bfloat16
    v16.sum().backward()
    assert bf16.actor_encoder[0][0].weight.grad.dtype == torch.float32
    from acx.algo.stack import Stack

    stack = Stack([bf16, cnn_actor_critic(space, actions, precision="bf16")])
    _, batched_v = stack.batched(torch.stack([frames, frames]))
    torch.testing.assert_close(batched_v[0], v16, rtol=0, atol=0.05)


# --- seed 004: the NumPy actor-critic with a hand-written backward pass ---------------------------


def seed004_gradients(obs, actions, returns, params, leak_actor_grad_into_critic):
    """Seed 004's calculate_gradients(), vectorised over steps; it differentiates
    sum(-log_prob * (ret - value)) + sum(huber(ret, value)) through a shared no-bias ReLU layer.
    The seed also lets the actor term's gradient reach the critic (``ret - value`` is not
    detached); ``leak_actor_grad_into_critic=False`` is the corrected version acx implements."""
    h_pre = obs @ params["w_common"]
    h = np.maximum(h_pre, 0)
    logits = h @ params["w_actor"]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    value = (h @ params["w_critic"])[:, 0]
    chosen = probs[np.arange(len(actions)), actions]
    diff = returns - value
    g_logprob = -diff
    g_diff = -np.log(chosen)
    err = returns - value
    g_value = np.where(np.abs(err) <= 1.0, -err, -np.sign(err))
    if leak_actor_grad_into_critic:
        g_value = g_value - g_diff
    g_chosen = g_logprob / chosen
    g_probs = np.zeros_like(probs)
    g_probs[np.arange(len(actions)), actions] = g_chosen
    g_logits = probs * (g_probs - (g_probs * probs).sum(1, keepdims=True))
    g_h = g_value[:, None] @ params["w_critic"].T + g_logits @ params["w_actor"].T
    g_pre = g_h * (h_pre > 0)
    return {
        "w_common": obs.T @ g_pre,
        "w_actor": h.T @ g_logits,
        "w_critic": h.T @ g_value[:, None],
    }


def test_autograd_loss_matches_seed004_hand_derived_gradients():
    rng = np.random.default_rng(42)
    T = 23
    net = mlp_actor_critic(
        CARTPOLE_OBS,
        gym.spaces.Discrete(2),
        hidden_sizes=[128],
        activation="relu",
        shared=True,
        bias=False,
        init="kaiming_normal",
    )
    net.double()
    params = {
        "w_common": net.actor_encoder[0].weight.detach().numpy().T.copy(),
        "w_actor": net.policy_head.out.weight.detach().numpy().T.copy(),
        "w_critic": net.value_head.weight.detach().numpy().T.copy(),
    }
    obs = rng.normal(size=(T, 4))
    actions = rng.integers(0, 2, size=T)
    raw = np.cumsum(rng.random(T))[::-1]
    returns = (raw - raw.mean()) / (raw.std() + np.finfo(np.float32).eps)

    loss_fn = ActorCriticLoss(value_loss="huber", vf_coef=1.0, ent_coef=0.0, reduction="sum")
    log_prob, entropy, value, _ = net.evaluate_actions(torch.from_numpy(obs), torch.from_numpy(actions))
    ret_t = torch.from_numpy(returns)
    losses = loss_fn(log_prob, entropy, value, ret_t - value.detach(), ret_t, torch.ones(T))
    losses["total"].backward()
    ours = {
        "w_common": net.actor_encoder[0].weight.grad.numpy().T,
        "w_actor": net.policy_head.out.weight.grad.numpy().T,
        "w_critic": net.value_head.weight.grad.numpy().T,
    }
    reference = seed004_gradients(obs, actions, returns, params, leak_actor_grad_into_critic=False)
    for key in ours:
        np.testing.assert_allclose(ours[key], reference[key], rtol=1e-9, atol=1e-12)
    # the seed's own version differs exactly in the critic: that is the bug acx fixes
    leaky = seed004_gradients(obs, actions, returns, params, leak_actor_grad_into_critic=True)
    assert not np.allclose(leaky["w_critic"], reference["w_critic"])
    np.testing.assert_allclose(leaky["w_actor"], reference["w_actor"], rtol=1e-9)


def test_loss_terms_and_reductions():
    lp = torch.tensor([-1.0, -2.0, -3.0])
    ent = torch.tensor([0.5, 0.5, 0.5])
    v = torch.tensor([0.0, 1.0, 2.0])
    adv = torch.tensor([1.0, -1.0, 2.0])
    ret = torch.tensor([1.0, 1.0, 4.0])
    mask = torch.tensor([1.0, 1.0, 0.0])  # the third step is an autoreset step: ignored
    mean = ActorCriticLoss(value_loss="mse", vf_coef=0.5, ent_coef=0.01)(lp, ent, v, adv, ret, mask)
    assert mean["policy"].item() == pytest.approx((1 * 1 + 2 * -1) / 2)
    assert mean["value"].item() == pytest.approx(0.5 * (1 + 0) / 2)
    assert mean["entropy"].item() == pytest.approx(-0.01 * 0.5)
    assert mean["total"].item() == pytest.approx(sum(mean[k].item() for k in ("policy", "value", "entropy")))
    total = ActorCriticLoss(value_loss="smooth_l1", vf_coef=1.0, reduction="sum")(lp, ent, v, adv, ret, mask)
    assert total["policy"].item() == pytest.approx(-1.0)
    assert total["value"].item() == pytest.approx(0.5)
