"""Actor-critic networks: an encoder per head (or one shared trunk), a policy head, a value head.

Built by Hydra from ``conf/network/*.yaml`` with the env's spaces passed at instantiation.

The classes here stack by broadcasting (``stacks_by_broadcast``, acx.algo.stack): their forwards reduce
and index from the last dim, and a tensor of their own is broadcast against the batch dims just before
its feature dims (``batch_broadcast``), so the same code runs a cohort's members, whose tensors and
inputs carry a member dim in front. Sampling takes its noise as an argument: a cohort draws each
member's from that member's own generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acx import names

# network.activation: the names acx.names declares (the schema allows the same), as torch.nn classes
ACTIVATIONS = {name: getattr(nn, cls) for name, cls in names.ACTIVATIONS.items()}


def batch_broadcast(own: Tensor, like: Tensor, feature_dims: int = 1) -> Tensor:
    """A module's own tensor ``own`` (its lead dims, then ``feature_dims`` feature dims) viewed to
    broadcast against ``like`` (the same lead dims, batch dims, the feature dims): ones inserted before
    the feature dims. A single network has no lead dim; a cohort's stacked tensors have the member dim."""
    missing = like.dim() - own.dim()
    if missing <= 0:
        return own
    split = own.dim() - feature_dims
    return own.view(*own.shape[:split], *[1] * missing, *own.shape[split:])


def init_layer(layer: nn.Module, scheme: str, gain: float) -> None:
    """Initialise one Linear/Conv layer in place; 'default' keeps PyTorch's own init."""
    if not isinstance(layer, (nn.Linear, nn.Conv2d)) or scheme == "default":
        return
    if scheme == "orthogonal":
        nn.init.orthogonal_(layer.weight, gain=gain)
    else:  # kaiming_normal: std sqrt(2 / fan_in), seed 004's "init_xavier_weights"
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    activation: str = "tanh",
    layer_norm: bool = False,
    bias: bool = True,
) -> nn.Sequential:
    """Linear -> activation (-> LayerNorm) blocks, in the order seed 000 uses."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_dim, size, bias=bias), ACTIVATIONS[activation]()]
        if layer_norm:
            layers.append(nn.LayerNorm(size))
        in_dim = size
    return nn.Sequential(*layers)


def head_mlp(in_dim: int, out_dim: int, hidden: int = 0, bias: bool = True) -> nn.Module:
    """The output layer of a head, with an optional hidden layer in front (seed 002's 512 units)."""
    if not hidden:
        return nn.Linear(in_dim, out_dim, bias=bias)
    return nn.Sequential(nn.Linear(in_dim, hidden, bias=bias), nn.ReLU(), nn.Linear(hidden, out_dim, bias=bias))


def last_linear(module: nn.Module) -> nn.Linear:
    """The output layer of a head (which gets its own init gain)."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


def weight_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a module's last weight: of a plain module, or of a cohort's batched copy, whose
    ``nn.Linear`` leaves are ``BatchedLinear`` (acx.algo.stack) with the stacked weight."""
    return [w for m in module.modules() if isinstance(w := getattr(m, "weight", None), Tensor)][-1].dtype


class NatureCNN(nn.Sequential):
    """The DQN Nature trunk: 3 conv layers and a flatten, on uint8 images scaled to [0, 1] here."""

    stacks_by_broadcast = True

    def __init__(self, in_channels: int, image_hw: tuple[int, int]):
        super().__init__(
            nn.Conv2d(in_channels, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            self.out_dim = int(super().forward(torch.zeros(1, in_channels, *image_hw)).shape[1])

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float() / 255.0)


NATURE_CNN_MIN_SIZE = 36  # the smallest height and width the Nature CNN's 8/4, 4/2, 3/1 convolutions take


@dataclass(frozen=True)
class Entry:
    """One key of the Dict: where it lies in the flat vector and how the network reads it."""

    key: str
    kind: str  # "image" | "discrete" | "box"
    shape: tuple[int, ...]  # the key's own shape (() for a Discrete)
    offset: int
    size: int
    n: int = 0  # a Discrete's number of values
    start: int = 0  # a Discrete's first value
    channels_last: bool = False  # an image stored (H, W, C)

    @property
    def image_chw(self) -> tuple[int, int, int]:
        h, w, c = self.shape if self.channels_last else (*self.shape[1:], self.shape[0])
        return c, h, w


def _kind(space: gym.Space) -> str:
    """How the network reads a key (acx.envs.dict_obs refuses the spaces with no kind, at the env)."""
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3:
        h, w = sorted(space.shape)[1:]  # the two largest dims; the smallest is the channels
        return "image" if min(h, w) >= NATURE_CNN_MIN_SIZE else "box"
    return "box"  # any other Box, MultiBinary


class DictLayout:
    """The keys of a Dict space in the flat float32 vector the env side packs (``acx.envs.dict_obs``):
    in Gymnasium's key order, a Discrete as its value, anything else flattened. What each key gets:

    - ``image``: a uint8 Box of 3 dims, at least 36 x 36 (what the Nature CNN reads), channels first or
      last as SB3 decides (the smallest dim is the channels): the Nature CNN, then a linear layer;
    - ``discrete``: a Discrete: one-hot;
    - ``box``: any other Box (MiniGrid's 7 x 7 x 3 symbolic grid too) and MultiBinary: the values as
      they are, into the MLP; ``normalize.obs`` normalises these keys only."""

    def __init__(self, space: gym.spaces.Dict):
        self.space = space
        self.entries: list[Entry] = []
        offset = 0
        for key, sub in space.spaces.items():
            kind = _kind(sub)
            shape = tuple(sub.shape or ())
            size = 1 if kind == "discrete" else int(np.prod(shape))
            self.entries.append(
                Entry(
                    key=key,
                    kind=kind,
                    shape=shape,
                    offset=offset,
                    size=size,
                    n=int(sub.n) if kind == "discrete" else 0,
                    start=int(sub.start) if kind == "discrete" else 0,
                    channels_last=kind == "image" and int(np.argmin(shape)) != 0,
                )
            )
            offset += size
        self.size = offset

    def normalized(self) -> np.ndarray:
        """Which entries of the flat vector ``normalize.obs`` normalises: those of the Box keys."""
        mask = np.zeros(self.size, dtype=bool)
        for e in self.entries:
            mask[e.offset : e.offset + e.size] = e.kind == "box"
        return mask


class DictEncoder(nn.Module):
    """Dict observations, packed into one flat vector at the env (``acx.envs.dict_obs``), split by key
    and encoded each by its kind, then concatenated: the Nature CNN and a ``cnn_features``-unit layer
    for an image, one-hot for a Discrete, the values as they are for a Box (the MLP after this reads
    them), as SB3's ``CombinedExtractor`` does."""

    stacks_by_broadcast = True

    def __init__(self, layout: DictLayout, cnn_features: int = 256):
        super().__init__()
        self.entries = layout.entries
        self.cnns = nn.ModuleDict()
        self.out_dim = 0
        for e in self.entries:
            if e.kind == "image":
                c, h, w = e.image_chw
                cnn = NatureCNN(c, (h, w))
                self.cnns[e.key] = nn.Sequential(cnn, nn.Linear(cnn.out_dim, cnn_features), nn.ReLU())
                self.out_dim += cnn_features
            else:
                self.out_dim += e.n if e.kind == "discrete" else e.size

    def forward(self, x: Tensor) -> Tensor:
        lead, parts = x.shape[:-1], []
        for e in self.entries:
            v = x[..., e.offset : e.offset + e.size]
            if e.kind == "image":
                v = v.reshape(*lead, *e.shape)
                parts.append(self.cnns[e.key](v.movedim(-1, -3) if e.channels_last else v))
            elif e.kind == "discrete":
                parts.append(F.one_hot(v[..., 0].long() - e.start, e.n).to(x.dtype))
            else:
                parts.append(v)
        return torch.cat(parts, dim=-1)


class CategoricalHead(nn.Module):
    """Logits over discrete actions; sampling by the Gumbel-max trick, without torch.distributions."""

    stacks_by_broadcast = True
    NOISE = "uniform"  # what sample() takes: U(0, 1) noise shaped as noise_like(pi)

    def __init__(self, in_dim: int, n_actions: int, hidden: int = 0):
        super().__init__()
        self.out = head_mlp(in_dim, n_actions, hidden)

    def forward(self, features: Tensor) -> Tensor:
        return torch.log_softmax(self.out(features), dim=-1)

    def noise_like(self, logp: Tensor) -> Tensor:
        return logp

    def sample(self, logp: Tensor, noise: Tensor | None = None) -> Tensor:
        """An action drawn with U(0, 1) ``noise`` shaped like ``logp`` (None: from torch's global generator)."""
        # argmax(logp + g), g = -log(-log(u)): written as logp - log(-log(u)) with in-place steps (the
        # same numbers, fewer allocations in the per-step loop)
        u = torch.rand_like(logp) if noise is None else noise
        neg_log_u = u.clamp_(min=1e-20).log_().neg_()
        return torch.argmax(logp - neg_log_u.log_(), dim=-1)

    def mode(self, logp: Tensor) -> Tensor:
        return torch.argmax(logp, dim=-1)

    def log_prob(self, logp: Tensor, actions: Tensor) -> Tensor:
        return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, logp: Tensor) -> Tensor:
        return -(logp.exp() * logp).sum(-1)

    def std(self, logp: Tensor) -> Tensor | None:
        return None


class MultiCategoricalHead(CategoricalHead):
    """Independent categoricals, one per part of a MultiDiscrete action (``nvec``); MultiBinary is the
    case of parts of 2, each part's two logits standing for one Bernoulli's.

    Its output is (..., parts, max_n) log-probs, each part's own softmax, the slots past a part's
    ``n`` held at ``PAD`` (probability 0, never sampled). The log-prob and the entropy of an action are
    sums over its parts; the mode and a sample are per part, (..., parts)."""

    PAD = -1.0e9  # finite: exp() is exactly 0 and p * log p is 0, where -inf would give nan

    def __init__(self, in_dim: int, nvec: Sequence[int], hidden: int = 0):
        nn.Module.__init__(self)
        nvec = [int(n) for n in nvec]
        self.parts, self.width = len(nvec), max(nvec)
        self.out = head_mlp(in_dim, self.parts * self.width, hidden)
        pad = torch.zeros(self.parts, self.width)
        for i, n in enumerate(nvec):
            pad[i, n:] = self.PAD
        self.register_buffer("pad", pad)

    def forward(self, features: Tensor) -> Tensor:
        logits = self.out(features)
        logits = logits.view(*logits.shape[:-1], self.parts, self.width)
        logits = logits + batch_broadcast(self.pad, logits, 2)
        return torch.log_softmax(logits, dim=-1)

    def log_prob(self, logp: Tensor, actions: Tensor) -> Tensor:
        return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1).sum(-1)

    def entropy(self, logp: Tensor) -> Tensor:
        return -(logp.exp() * logp).sum((-2, -1))


class GaussianHead(nn.Module):
    """Diagonal Gaussian over Box actions.

    ``log_std``: 'state_dependent' (a linear head, seed 001) or 'state_independent' (a parameter).
    ``mean_bound``: squash the mean into the action box with tanh (seed 001's ``2 * tanh``), or leave
    it free; sampled actions are clipped to the box by the env side either way, and the log-prob is
    taken on the unclipped sample.
    """

    LOG_2PI = math.log(2 * math.pi)
    stacks_by_broadcast = True
    NOISE = "normal"  # what sample() takes: N(0, 1) noise shaped as noise_like(pi)

    def __init__(
        self,
        in_dim: int,
        action_space: gym.spaces.Box,
        log_std: str = "state_independent",
        log_std_init: float = 0.0,
        log_std_bounds: Sequence[float] = (-20.0, 2.0),
        mean_bound: bool = False,
    ):
        super().__init__()
        dim = int(np.prod(action_space.shape))
        self.mean = nn.Linear(in_dim, dim)
        if log_std == "state_dependent":
            self.log_std_head: nn.Linear | None = nn.Linear(in_dim, dim)
            self.log_std_param = None
        else:  # state_independent
            self.log_std_head = None
            self.log_std_param = nn.Parameter(torch.full((dim,), float(log_std_init)))
        self.log_std_min, self.log_std_max = (float(b) for b in log_std_bounds)
        low = torch.as_tensor(action_space.low, dtype=torch.float32).flatten()
        high = torch.as_tensor(action_space.high, dtype=torch.float32).flatten()
        self.mean_bound = mean_bound
        self.register_buffer("scale", (high - low) / 2)
        self.register_buffer("center", (high + low) / 2)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.mean(features)
        if self.mean_bound:
            mean = torch.tanh(mean) * batch_broadcast(self.scale, mean) + batch_broadcast(self.center, mean)
        if self.log_std_head is not None:
            log_std = self.log_std_head(features)
        else:
            log_std = self.shared_log_std(mean)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def shared_log_std(self, mean: Tensor) -> Tensor:
        """The state-independent log-std, one per action dim, for every row of ``mean``."""
        return batch_broadcast(self.log_std_param, mean).expand_as(mean)

    def noise_like(self, out: tuple[Tensor, Tensor]) -> Tensor:
        return out[0]

    def sample(self, out: tuple[Tensor, Tensor], noise: Tensor | None = None) -> Tensor:
        """An action drawn with N(0, 1) ``noise`` shaped like the mean (None: from torch's global generator)."""
        mean, log_std = out
        return mean + log_std.exp() * (torch.randn_like(mean) if noise is None else noise)

    def mode(self, out: tuple[Tensor, Tensor]) -> Tensor:
        return out[0]

    def log_prob(self, out: tuple[Tensor, Tensor], actions: Tensor) -> Tensor:
        mean, log_std = out
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * self.LOG_2PI).sum(-1)

    def entropy(self, out: tuple[Tensor, Tensor]) -> Tensor:
        return (0.5 + 0.5 * self.LOG_2PI + out[1]).sum(-1)

    def std(self, out: tuple[Tensor, Tensor]) -> Tensor | None:
        return out[1].exp()


class ActorCritic(nn.Module):
    """Policy and value function; ``shared`` encoders mean one trunk feeds both heads."""

    stacks_by_broadcast = True
    recurrent = False  # RecurrentActorCritic: every call takes the state and returns the next

    def __init__(
        self, actor_encoder: nn.Module, critic_encoder: nn.Module | None, policy_head: nn.Module, value_head: nn.Module
    ):
        super().__init__()
        self.actor_encoder = actor_encoder
        self.critic_encoder = critic_encoder  # None: the critic reads the actor's trunk
        self.policy_head = policy_head
        self.value_head = value_head
        # normalize.obs / normalize.reward (acx.algo.normalize): running statistics kept as buffers here, so
        # that checkpoints, resume, evaluation, replay and export all carry them with the weights
        self.obs_norm: nn.Module | None = None
        self.reward_norm: nn.Module | None = None
        # network.precision=bf16 (network=cnn): the encoders run under torch.autocast in this dtype, their
        # features back in float32 for the heads; the weights, optimizer states and checkpoints stay float32
        self.autocast: torch.dtype | None = None

    def encode(self, encoder: nn.Module, obs: Tensor) -> Tensor:
        """``encoder``'s features for ``obs`` (under autocast when ``self.autocast`` says so)."""
        if self.autocast is None:
            return encoder(obs)
        with torch.autocast(obs.device.type, dtype=self.autocast):
            return encoder(obs).float()

    def inputs(self, obs: Tensor) -> Tensor:
        """What the encoders read: observations normalised (``normalize.obs``), else as float32 (a
        float64 Box, MuJoCo's) or as they are (float32, and uint8 frames the CNN scales itself)."""
        if self.obs_norm is not None:
            return self.obs_norm(obs)
        if obs.dtype == torch.float32 or obs.dtype == torch.uint8:
            return obs
        return obs.to(weight_dtype(self.value_head))  # float32, unless the net was made .double()

    @property
    def shared(self) -> bool:
        return self.critic_encoder is None

    def forward(self, obs: Tensor):
        """Policy output (log-probs, or mean and log-std) and V(s) for a batch of observations."""
        obs = self.inputs(obs)
        features = self.encode(self.actor_encoder, obs)
        critic_features = features if self.critic_encoder is None else self.encode(self.critic_encoder, obs)
        return self.policy_head(features), self.value_head(critic_features).squeeze(-1)

    def value(self, obs: Tensor) -> Tensor:
        obs = self.inputs(obs)
        encoder = self.actor_encoder if self.critic_encoder is None else self.critic_encoder
        return self.value_head(self.encode(encoder, obs)).squeeze(-1)

    def policy(self, obs: Tensor):
        """The policy's output (log-probs, or mean and log-std) alone, without the critic's pass."""
        return self.policy_head(self.encode(self.actor_encoder, self.inputs(obs)))

    def action(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """The action alone (evaluation and replay need no V(s)); sampled from torch's global generator."""
        pi = self.policy(obs)
        return self.policy_head.mode(pi) if deterministic else self.policy_head.sample(pi)

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Log-prob and entropy of given actions, V(s), and the policy std (None for discrete)."""
        pi, value = self(obs)
        head = self.policy_head
        return head.log_prob(pi, actions), head.entropy(pi), value, head.std(pi)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimizer group: 'all', and 'actor'/'critic' when no trunk is shared."""
        groups = {"all": list(self.parameters())}
        if not self.shared:
            groups["actor"] = [*self.actor_encoder.parameters(), *self.policy_head.parameters()]
            groups["critic"] = [*self.critic_encoder.parameters(), *self.value_head.parameters()]
        return groups


class LSTMCore(nn.Module):
    """An LSTM cell of two linear layers (the gates of the input and of the last output), so that a cohort
    stacks it as it stacks an MLP. Its state is one tensor (..., 2 x hidden): the output h, then the cell c."""

    stacks_by_broadcast = True

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.ih = nn.Linear(in_dim, 4 * hidden)
        self.hh = nn.Linear(hidden, 4 * hidden, bias=False)

    @property
    def state_size(self) -> int:
        return 2 * self.hidden

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        """One step: the inputs (..., B, in_dim) and the state (..., B, 2H) -> the next state."""
        return self.step(self.ih(x), state)

    def step(self, input_gates: Tensor, state: Tensor) -> Tensor:
        """One step from the input's share of the gates (``ih(x)``: a sequence's, all at once, in ``unroll``)."""
        h, c = state.split(self.hidden, dim=-1)
        i, f, g, o = (input_gates + self.hh(h)).chunk(4, dim=-1)  # torch.nn.LSTM's gate order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return torch.cat([h, c], dim=-1)


class GRUCore(nn.Module):
    """A GRU cell of two linear layers (torch.nn.GRU's equations and gate order); its state is the output h,
    (..., hidden)."""

    stacks_by_broadcast = True

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.ih = nn.Linear(in_dim, 3 * hidden)
        self.hh = nn.Linear(hidden, 3 * hidden)  # with its bias: b_hn sits inside r * (...), as in torch.nn.GRU

    @property
    def state_size(self) -> int:
        return self.hidden

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        return self.step(self.ih(x), state)

    def step(self, input_gates: Tensor, state: Tensor) -> Tensor:
        x_r, x_z, x_n = input_gates.chunk(3, dim=-1)
        h_r, h_z, h_n = self.hh(state).chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * state


class RecurrentActorCritic(ActorCritic):
    """``network=lstm``: the encoder, an LSTM shared by both heads (CleanRL's ``ppo_atari_lstm``), the heads.

    Every call takes the state before the step, (..., B, 2H), zeros at an episode's first step, and the
    acting calls return the state after it. Training unrolls whole sequences (``evaluate_sequence``)
    from the state stored at their first step, with the state set back to zeros where an episode
    starts within them, so gradients flow back through time over the rollout."""

    recurrent = True

    def __init__(self, encoder: nn.Module, core: LSTMCore | GRUCore, policy_head: nn.Module, value_head: nn.Module):
        super().__init__(encoder, None, policy_head, value_head)
        self.core = core

    @property
    def state_size(self) -> int:
        return self.core.state_size

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.zeros(batch, self.state_size, device=device)

    def step(self, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The LSTM's output and the state after one step of observations (..., B, ...)."""
        state = self.core(self.actor_encoder(self.inputs(obs)), state)
        return state[..., : self.core.hidden], state

    def forward(self, obs: Tensor, state: Tensor):  # type: ignore[override]
        """Policy output, V(s) and the next state for one step."""
        out, state = self.step(obs, state)
        return self.policy_head(out), self.value_head(out).squeeze(-1), state

    def value(self, obs: Tensor, state: Tensor) -> Tensor:  # type: ignore[override]
        return self.value_head(self.step(obs, state)[0]).squeeze(-1)

    def policy(self, obs: Tensor, state: Tensor):  # type: ignore[override]
        out, state = self.step(obs, state)
        return self.policy_head(out), state

    def action(self, obs: Tensor, state: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        pi, state = self.policy(obs, state)
        return (self.policy_head.mode(pi) if deterministic else self.policy_head.sample(pi)), state

    def unroll(self, obs: Tensor, state: Tensor, starts: Tensor) -> Tensor:
        """The LSTM's outputs (..., T, B, H) over sequences of observations (..., T, B, ...), from the
        state (..., B, 2H) before their first step; ``starts`` (..., T, B): an episode starts at that step."""
        # every step's encoding and input gates at once; only the recurrence runs step by step
        input_gates = self.core.ih(self.actor_encoder(self.inputs(obs)))
        keep = (~starts).unsqueeze(-1).to(state.dtype)  # 0 where an episode starts: the state before it is zeros
        outputs = []
        for t in range(starts.shape[-2]):
            state = self.core.step(input_gates.select(-3, t), state * keep.select(-3, t))
            outputs.append(state[..., : self.core.hidden])
        return torch.stack(outputs, dim=-3)

    def evaluate_sequence(self, obs: Tensor, actions: Tensor, state: Tensor, starts: Tensor):
        """``evaluate_actions`` over sequences: log-probs, entropies and V(s), (..., T, B) each, and the std."""
        out = self.unroll(obs, state, starts)
        pi, head = self.policy_head(out), self.policy_head
        return head.log_prob(pi, actions), head.entropy(pi), self.value_head(out).squeeze(-1), head.std(pi)

    def evaluate_actions(self, obs: Tensor, actions: Tensor):  # type: ignore[override]
        raise TypeError("a recurrent network evaluates sequences: evaluate_sequence(obs, actions, state, starts)")


def flat_encoder(
    observation_space: gym.Space,
    hidden_sizes: Sequence[int],
    activation: str,
    layer_norm: bool = False,
    bias: bool = True,
    cnn_features: int = 256,
) -> tuple[nn.Module, int]:
    """An MLP over flat observations, a Dict's per-key encoders (``DictEncoder``) in front of it for
    Dict observations; the module and the width of its output (no hidden layers: the input's)."""
    if isinstance(observation_space, gym.spaces.Dict):
        keys = DictEncoder(DictLayout(observation_space), cnn_features)
        in_dim = keys.out_dim
        module: nn.Module = nn.Sequential(keys, mlp(in_dim, hidden_sizes, activation, layer_norm, bias))
    else:
        in_dim = int(observation_space.shape[0])
        module = mlp(in_dim, hidden_sizes, activation, layer_norm, bias)
    return module, (hidden_sizes[-1] if hidden_sizes else in_dim)


def _policy_head(in_dim: int, action_space: gym.Space, gaussian: dict | None, hidden: int = 0) -> nn.Module:
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(in_dim, int(action_space.n), hidden)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return MultiCategoricalHead(in_dim, np.asarray(action_space.nvec).flatten().tolist(), hidden)
    if isinstance(action_space, gym.spaces.MultiBinary):
        return MultiCategoricalHead(in_dim, [2] * int(np.prod(action_space.shape)), hidden)
    return GaussianHead(in_dim, action_space, **(gaussian or {}))  # Box (acx.config checks the spaces)


def _initialise(net: ActorCritic, init: str, gain: float, policy_gain: float, value_gain: float) -> ActorCritic:
    for layer in net.modules():
        init_layer(layer, init, gain)
    # output layers: small policy gain keeps the first policy near uniform (CleanRL, SB3)
    head = net.policy_head
    if isinstance(head, CategoricalHead):
        init_layer(last_linear(head.out), init, policy_gain)
    else:
        init_layer(head.mean, init, policy_gain)
        if head.log_std_head is not None:
            init_layer(head.log_std_head, init, policy_gain)
    init_layer(last_linear(net.value_head), init, value_gain)
    return net


def mlp_actor_critic(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    layer_norm: bool = False,
    shared: bool = False,
    bias: bool = True,
    init: str = "orthogonal",
    init_gain: float = math.sqrt(2),
    policy_init_gain: float = 0.01,
    value_init_gain: float = 1.0,
    gaussian: dict | None = None,
    cnn_features: int = 256,
) -> ActorCritic:
    """MLP actor-critic for flat observations: separate MLPs, or one shared trunk (``shared``). Dict
    observations get a ``DictEncoder`` in front of each MLP (``cnn_features`` units per image key)."""
    hidden_sizes = list(hidden_sizes)
    encoder_args = (observation_space, hidden_sizes, activation, layer_norm, bias, cnn_features)
    actor, feat = flat_encoder(*encoder_args)
    critic = None if shared else flat_encoder(*encoder_args)[0]
    policy_head = _policy_head(feat, action_space, gaussian)
    if not bias:  # seed 004 has no biases anywhere
        for layer in policy_head.modules():
            if isinstance(layer, nn.Linear):
                layer.register_parameter("bias", None)
    value_head = head_mlp(feat, 1, bias=bias)
    net = ActorCritic(actor, critic, policy_head, value_head)
    return _initialise(net, init, init_gain, policy_init_gain, value_init_gain)


def cnn_actor_critic(
    observation_space: gym.Space,
    action_space: gym.Space,
    head_hidden: int = 0,
    features: int = 512,
    precision: str = "fp32",
    init: str = "orthogonal",
    init_gain: float = math.sqrt(2),
    policy_init_gain: float = 0.01,
    value_init_gain: float = 1.0,
) -> ActorCritic:
    """Nature-CNN trunk shared by both heads, on (C, H, W) uint8 frame stacks.

    ``head_hidden=0``: one 512-unit layer shared by both heads (CleanRL, SB3).
    ``head_hidden=512``: seed 002's layout, the conv trunk then a separate 512-unit MLP per head.
    ``precision="bf16"``: the trunk's forward and backward passes in bfloat16 under ``torch.autocast``
    (the heads, the weights and the optimizer in float32): about 2x faster updates on a CPU with
    AVX512-BF16 or AMX (docs/atari.md).
    """
    shape = observation_space.shape
    cnn = NatureCNN(shape[0], (shape[1], shape[2]))
    if head_hidden:
        trunk: nn.Module = cnn
        feat = cnn.out_dim
    else:
        trunk = nn.Sequential(cnn, nn.Linear(cnn.out_dim, features), nn.ReLU())
        feat = features
    policy_head = _policy_head(feat, action_space, None, hidden=head_hidden)
    value_head = head_mlp(feat, 1, head_hidden)
    net = ActorCritic(trunk, None, policy_head, value_head)
    net.autocast = torch.bfloat16 if precision == "bf16" else None
    return _initialise(net, init, init_gain, policy_init_gain, value_init_gain)


def lstm_actor_critic(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int] = (64,),
    lstm_hidden: int = 128,
    activation: str = "tanh",
    init: str = "orthogonal",
    init_gain: float = math.sqrt(2),
    policy_init_gain: float = 0.01,
    value_init_gain: float = 1.0,
    gaussian: dict | None = None,
    cnn_features: int = 256,
    cell: str = "lstm",
) -> RecurrentActorCritic:
    """``network=lstm`` (``network=gru``: ``cell="gru"``): an MLP encoder (``hidden_sizes``; a Dict
    observation's encoders in front, as for ``network=mlp``), an LSTM (or GRU) of ``lstm_hidden`` units,
    then the policy and value heads on its output. The cell's weights are orthogonal with gain 1 and its
    biases 0, as CleanRL's."""
    encoder, in_dim = flat_encoder(observation_space, list(hidden_sizes), activation, cnn_features=cnn_features)
    core = LSTMCore(in_dim, lstm_hidden) if cell == "lstm" else GRUCore(in_dim, lstm_hidden)
    net = RecurrentActorCritic(encoder, core, _policy_head(lstm_hidden, action_space, gaussian),
                               head_mlp(lstm_hidden, 1))  # fmt: skip
    _initialise(net, init, init_gain, policy_init_gain, value_init_gain)
    for layer in (core.ih, core.hh):
        init_layer(layer, "orthogonal", 1.0)
    return net
