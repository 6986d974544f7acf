"""The learner: a cohort's networks, optimizers and hyperparameters, one row per member; it acts,
estimates the targets and updates.

P members (P >= 1: a single run is a cohort of one) share no parameter: their networks are one
``Stack`` (acx.algo.stack), their optimizers step the stacked tensors with one lr per member
(acx.algo.optim), and their hyperparameters that may differ (``MEMBER_HYPERPARAMETERS``) are (P,)
tensors. One backward pass of the sum of the members' losses gives each member exactly its own
gradient; clipping, the finiteness check and the optimizer step are per member. Each member samples
from its own torch generator, so it draws what it would draw alone.

An update turns a batch into gradient steps: ``epochs`` passes over each member's valid transitions,
each in its own shuffled order (from its own generator) split into ``minibatches`` parts, one step per
part (PPO); one epoch of one minibatch is one step on the whole batch in its own order (the A2C
variants). ``target_kl`` freezes a member for the rest of an update at its first minibatch whose
approx KL exceeds 1.5 x target_kl, before that step (Stable-Baselines3's rule); the others go on.

Nothing here imports from ``acx.run``: the rollout arrives as tensors (``Batch``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from acx.algo.losses import ActorCriticLoss, masked_mean
from acx.algo.networks import ActorCritic
from acx.algo.optim import Optimizer, TorchOptimizer, column
from acx.algo.stack import Stack


def linear_lr(fraction_done: float, final_fraction: float = 0.0) -> float:
    """Learning-rate multiplier falling linearly from 1 at the first step to ``final_fraction`` at
    ``total_steps`` (rl-baselines3-zoo's ``lin_`` schedules); held at the ends outside [0, 1]."""
    return 1.0 - (1.0 - final_fraction) * min(max(fraction_done, 0.0), 1.0)


@dataclass(frozen=True)
class ConstantLR:
    """``lr_schedule=constant``: the configured lr throughout."""

    def __call__(self, fraction_done: float) -> float:
        return 1.0


@dataclass(frozen=True)
class LinearLR:
    """``lr_schedule=linear``: ``linear_lr`` of the fraction of ``total_steps`` done. A function of
    progress alone, so a resumed run continues the same schedule. (An object, not a ``_partial_``
    function: Hydra re-authorises a partial on every call, ~0.1 ms, and this runs every update.)"""

    final_fraction: float = 0.0

    def __call__(self, fraction_done: float) -> float:
        return linear_lr(fraction_done, self.final_fraction)


def masked_var(x: Tensor, mask: Tensor) -> Tensor:
    """Variance (biased) of x over the True entries of mask, along the last dim."""
    return masked_mean((x - masked_mean(x, mask, keepdim=True)) ** 2, mask)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var(returns - values) / Var(returns) over the masked transitions: 1 is a perfect critic, 0 is
    no better than a constant, below 0 is worse; NaN when the returns do not vary."""
    var_returns = masked_var(returns, mask)
    ratio = masked_var(returns - values, mask) / var_returns
    return torch.where(var_returns > 0, 1 - ratio, torch.full_like(ratio, float("nan")))


def gradient_stats(grads: list[Tensor]) -> dict[str, Tensor]:
    """Seed 002's statistics over every gradient entry of each member (grads stacked (P, ...)): RMS
    (``grad_l2``), max |g| and variance, (P,) each."""
    flat = torch.cat([g.detach().flatten(1) for g in grads], dim=1)
    return {
        "train/grad_l2": flat.square().mean(1).sqrt(),
        "train/grad_max": flat.abs().amax(1),
        "train/grad_var": flat.var(dim=1, correction=0),
    }


def member_norms(grads: list[Tensor]) -> Tensor:
    """Each member's gradient norm over all its parameters, (P,): clip_grad_norm_'s total norm, per member."""
    per_param = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
    return torch.linalg.vector_norm(per_param, dim=0)


def clip_per_member(grads: list[Tensor], max_norms: Tensor) -> Tensor:
    """Scale member k's gradients so their norm is at most ``max_norms[k]`` (inf: no clipping), as
    clip_grad_norm_ does for one model; returns the norms before clipping. One member never changes another."""
    if grads and grads[0].shape[0] == 1:  # one member: clip_grad_norm_'s own foreach steps
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_mul_(grads, (max_norms[0] / (norm + 1e-6)).clamp(max=1.0))
        return norm.unsqueeze(0)
    norms = member_norms(grads)
    coef = (max_norms / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [column(coef.to(g.dtype), g) for g in grads])
    return norms


@dataclass(frozen=True)
class Batch:
    """Members' transitions, (P, B, ...) each: what a gradient step reads. ``values`` and ``log_probs``
    are the critic's and the policy's at collection (``log_probs`` None when not stored)."""

    obs: Tensor
    actions: Tensor
    advantages: Tensor
    returns: Tensor
    values: Tensor
    log_probs: Tensor | None
    mask: Tensor
    # a recurrent network's (network=lstm): the transitions are T steps of env columns, t-major (index t x
    # columns + column); the state before each step, and whether an episode starts there
    steps: int | None = None
    states: Tensor | None = None
    starts: Tensor | None = None

    @staticmethod
    def by_member(x: Tensor) -> Tensor:
        """(T, P, N, ...) rollout storage as (P, T * N, ...): each member's transitions in its row."""
        return x.transpose(0, 1).flatten(1, 2)

    def take(self, index: Tensor, mask: Tensor) -> Batch:
        """The transitions at ``index`` (P, L) of each member, ``mask`` (P, L) saying which are real."""

        def gather(x: Tensor) -> Tensor:
            return torch.gather(x, 1, index.view(*index.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:]))

        log_probs = gather(self.log_probs) if self.log_probs is not None else None
        states, starts = (gather(x) if x is not None else None for x in (self.states, self.starts))
        return Batch(gather(self.obs), gather(self.actions), gather(self.advantages), gather(self.returns),
                     gather(self.values), log_probs, mask, self.steps, states, starts)  # fmt: skip

    def sequences(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A recurrent batch as (P, T, B, ...) sequences: observations, actions, the state before the
        first step (P, B, S) and the episode starts (P, T, B)."""
        p, t = self.obs.shape[0], self.steps

        def seq(x: Tensor) -> Tensor:
            return x.view(p, t, -1, *x.shape[2:])

        return seq(self.obs), seq(self.actions), seq(self.states)[:, 0], seq(self.starts)


def rollout_stats(advantages: Tensor, values: Tensor, returns: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """The advantages and targets the loss used and the critic's values before the update, per member."""
    m = mask.float()
    return {
        "train/advantage_mean": masked_mean(advantages, m),
        "train/value_mean": masked_mean(values.detach(), m),
        "train/advantage_std": masked_var(advantages, m).sqrt(),
        "train/explained_variance": explained_variance(values.detach(), returns, m),
    }


# what a loss returns besides its terms, and the metric each is logged as
LOSS_STATS = {"entropy_mean": "train/entropy", "approx_kl": "train/approx_kl", "clip_fraction": "train/clip_fraction"}
# the hyperparameters that may differ between the members of one cohort, as the loss and targets take them
MEMBER_HYPERPARAMETERS = ("gamma", "reward_scale", "max_grad_norm", "gae_lambda", "ent_coef", "vf_coef")


def draw_noise(kind: str, like: Tensor, generators: Sequence[torch.Generator], stacked: bool = True) -> Tensor:
    """U(0, 1) or N(0, 1) noise shaped ``like`` (P, ...), member k's row from its own generator: what
    ``torch.rand_like``/``randn_like`` would draw for it alone. ``stacked=False``: one member's noise,
    ``like`` without the member dim."""
    noise = torch.empty_like(like)
    for row, generator in zip(noise[None] if not stacked else noise, generators, strict=True):
        if kind == "uniform":
            row.uniform_(generator=generator)
        else:
            row.normal_(generator=generator)
    return noise


class Step(NamedTuple):
    """What one gradient step of some members gives back: their stats ((P',) each), the (advantages,
    values, returns, mask) its loss used, which members stepped, and why each one that failed did (by
    row: a non-finite loss or gradient; such a member took no step)."""

    stats: dict[str, Tensor]
    used: tuple
    stepped: Tensor
    failed: dict[int, str]


class Learner:
    """P members' networks (``stack``), optimizers, loss, estimator and hyperparameters (``hyper``:
    name -> (P,)), and each member's sampling generator."""

    def __init__(
        self,
        nets: Sequence[ActorCritic],
        optimizers: dict[str, Callable[..., Optimizer]],
        loss_fn: ActorCriticLoss,
        estimator: Callable[..., tuple[Tensor, Tensor]],
        hyper: Sequence[dict[str, float]],
        generators: Sequence[torch.Generator],
        epochs: int = 1,
        minibatches: int = 1,
        target_kl: float | None = None,
        lr_schedule: Callable[[float], float] | None = None,
    ):
        """``optimizers``: per group ('all', or 'actor' and 'critic'), the optimizer class with its
        hyperparameters bound (``instantiate(cfg.optimizer)``); ``hyper``: per member, its
        ``MEMBER_HYPERPARAMETERS`` and ``lr_<group>``."""
        self.stack = Stack(nets)
        ids = {id(p): name for name, p in nets[0].named_parameters()}
        self.group_names = {group: [ids[id(p)] for p in params] for group, params in nets[0].parameter_groups().items()}
        self.hyper_rows = [dict(h) for h in hyper]
        self.optimizers: dict[str, Any] = {}
        for group, make in optimizers.items():
            lrs = [h[f"lr_{group}"] for h in self.hyper_rows]
            if isinstance(getattr(make, "func", make), type) and issubclass(getattr(make, "func", make), Optimizer):
                self.optimizers[group] = make(self.group_params(group), lr=lrs)
            else:  # a torch.optim class: one lr, every parameter; a cohort of one
                self.optimizers[group] = TorchOptimizer(make(self.group_params(group), lr=lrs[0]))
        self.loss_fn, self.estimator, self.lr_schedule = loss_fn, estimator, lr_schedule
        self.epochs, self.minibatches, self.target_kl = epochs, minibatches, target_kl
        self.generators = list(generators)
        # PPO's loss compares with the policy and critic at collection; A2C's (or a user's) takes no such inputs
        self.old_inputs = getattr(loss_fn, "needs_old_log_probs", False)
        self.head = nets[0].policy_head
        self.reward_returns: Tensor | None = None  # normalize.reward: each env's discounted return so far
        self._acting: list[int] | None = None
        self._acting_state: Tensor | None = None  # a recurrent network's, while acting (evaluation)
        self._tensors()

    # --- members ------------------------------------------------------------------------------------

    @property
    def members(self) -> int:
        return self.stack.members

    @property
    def device(self) -> torch.device:
        return self.stack.params[0].device

    def _tensors(self) -> None:
        """The members' hyperparameters as (P,) tensors; each member's clip scale back to 1."""
        self.hyper = {
            key: torch.tensor([h[key] for h in self.hyper_rows], dtype=torch.float32, device=self.device)
            for key in MEMBER_HYPERPARAMETERS
            if key in self.hyper_rows[0]
        }
        self.clip_scale = torch.ones(self.members, device=self.device)

    def group_params(self, group: str) -> list[Tensor]:
        """The stacked parameters of optimizer group ``group`` ('all', 'actor' or 'critic')."""
        return [self.stack.tensors[name] for name in self.group_names[group]]

    def regroup(
        self,
        rows: Sequence[int | None],
        joining: Sequence[ActorCritic] = (),
        hyper: Sequence[dict[str, float]] = (),
        generators: Sequence[torch.Generator] = (),
    ) -> None:
        """Go on with the members ``rows`` (old row numbers; None: the next of ``joining``, with its
        hyperparameters and generator, and fresh optimizer state that ``load_member`` may fill)."""
        self.stack.regroup(rows, joining)
        new_hyper, new_generators = iter(hyper), iter(generators)
        fresh = [next(new_hyper) if r is None else None for r in rows]
        self.hyper_rows = [self.hyper_rows[r] if r is not None else h for r, h in zip(rows, fresh, strict=True)]
        self.generators = [self.generators[r] if r is not None else next(new_generators) for r in rows]
        for group, opt in self.optimizers.items():
            opt.regroup(self.group_params(group), rows, [h[f"lr_{group}"] for h in fresh if h is not None])
        if self.reward_returns is not None:
            kept = torch.tensor([r if r is not None else 0 for r in rows], device=self.reward_returns.device)
            returns = self.reward_returns.index_select(0, kept)
            returns[torch.tensor([r is None for r in rows], device=returns.device)] = 0.0
            self.reward_returns = returns
        self._tensors()

    def member_state(self, k: int) -> tuple[dict[str, Tensor], dict[str, dict]]:
        """Member ``k``'s network and optimizer state dicts, as a single run's checkpoint holds them."""
        return self.stack.member_state_dict(k), {g: opt.member_state_dict(k) for g, opt in self.optimizers.items()}

    def load_member(self, k: int, optimizers: dict[str, dict]) -> None:
        """Member ``k``'s optimizer states from a checkpoint (a member that resumes; its weights came
        with its network)."""
        for group, opt in self.optimizers.items():
            opt.load_member(k, optimizers[group])

    @property
    def net(self) -> ActorCritic:
        """The network of a cohort of one: the plain module on the stacked tensors' row 0."""
        return self.stack.single

    def member_net(self, k: int) -> ActorCritic:
        """A plain network with member ``k``'s tensors (a video of one member's policy)."""
        return self.stack.member(k)

    # --- acting -------------------------------------------------------------------------------------

    def _run(self, rows: Sequence[int] | None, method: str, *inputs: Tensor):
        """``method`` of the network for the members ``rows`` (None: all) on their (P', ...) inputs."""
        return self.stack.call(method, *inputs, rows=rows)

    @property
    def recurrent(self) -> bool:
        return self.stack.single.recurrent

    @torch.inference_mode()
    def act(
        self, obs: Tensor, keep_log_probs: bool = False, state: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Sampled actions, V(s), (``keep_log_probs``) log pi(a|s) and (a recurrent network: ``state``,
        (C, S), the state before the step) the state after it, for the observations of every env column
        (C = P x N, member k's envs at k*N..k*N+N-1), one per column; member k's noise from its own
        generator."""
        state_in = () if state is None else (state,)
        pi, value, *state_out = self.stack.call(None, *[self._by_member(x) for x in (obs, *state_in)])
        action = self.head.sample(pi, draw_noise(self.head.NOISE, self.head.noise_like(pi), self.generators))
        log_prob = self.head.log_prob(pi, action).flatten(0, 1) if keep_log_probs else None
        state_out = [s.flatten(0, 1) for s in state_out]
        return action.flatten(0, 1), value.flatten(0, 1), log_prob, _first(state_out)

    def _by_member(self, x: Tensor) -> Tensor:
        """Env-column rows (C = P x N, ...) as (P, N, ...)."""
        return x.view(self.members, -1, *x.shape[1:])

    @torch.inference_mode()
    def value(self, obs: Tensor, state: Tensor | None = None) -> Tensor:
        """V(s) for the observations of every env column (C = P x N), one per column (a recurrent
        network's from ``state``, the state before the step)."""
        state_in = () if state is None else (state,)
        return self.stack.call("value", *[self._by_member(x) for x in (obs, *state_in)]).flatten(0, 1)

    @contextlib.contextmanager
    def acting(self, rows: Sequence[int]):
        """Within: ``action`` acts for the members ``rows`` only (their rows gathered once, for a whole
        evaluation); a recurrent network's state starts at zeros, as the episodes do, and is carried
        from one ``action`` to the next."""
        self._acting = list(rows)
        self._acting_state = None
        with self.stack.subset_of(rows):
            try:
                yield
            finally:
                self._acting, self._acting_state = None, None

    def _policy(self, obs: Tensor):
        """The acting members' policy output for their (P', N, ...) ``obs``, carrying the acting state of
        a recurrent network (the members' rows are bound for the whole of ``acting``)."""
        if not self.recurrent:
            return self.stack.call("policy", obs)
        if self._acting_state is None:
            # network=lstm reads flat observations (a Dict's packed): the state is (..., B, S) for (..., B, F)
            self._acting_state = torch.zeros(*obs.shape[:-1], self.stack.single.state_size, device=obs.device)
        pi, self._acting_state = self.stack.call("policy", obs, self._acting_state)
        return pi

    @torch.inference_mode()
    def action(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        """The actions of the members ``acting`` for the observations of their env columns (evaluation)."""
        rows = self._acting
        pi = self._policy(obs.view(len(rows), -1, *obs.shape[1:]))
        if deterministic:
            return self.head.mode(pi).flatten(0, 1)
        generators = [self.generators[r] for r in rows]
        return self.head.sample(pi, draw_noise(self.head.NOISE, self.head.noise_like(pi), generators)).flatten(0, 1)

    # --- targets ------------------------------------------------------------------------------------

    def estimate(
        self, rows: Sequence[int], rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor,
        done: Tensor, valid: Tensor,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """The advantages and return targets of the members ``rows`` for their (T, P', N) rollout, with
        each member's gamma (and GAE lambda); rewards are first normalised by each member's running
        return std (normalize.reward), then scaled (algo.reward_scale)."""
        n = rewards.shape[2]
        index = self._index(rows)
        gamma = self.hyper["gamma"][index]
        if self.stack.single.reward_norm is not None:
            if self.reward_returns is None:
                self.reward_returns = torch.zeros(self.members, n, dtype=torch.float64, device=rewards.device)
            by_member = [x.transpose(0, 1) for x in (rewards, done, valid)]  # (P', T, N)
            returns = self.reward_returns[index]
            scaled, returns = self.stack.call("reward_norm", *by_member, gamma, returns, rows=rows)
            self.reward_returns[index] = returns
            rewards = scaled.transpose(0, 1)
        scale = self._per_member("reward_scale", rows)
        if not isinstance(scale, float) or scale != 1.0:
            rewards = rewards * _over_envs(scale)
        rates = {key: _over_envs(self._per_member(key, rows)) for key in ("gamma", "gae_lambda") if key in self.hyper}
        return self.estimator(rewards, values, next_values, terminated, done, **rates)

    def _index(self, rows: Sequence[int]) -> Tensor:
        """``rows`` as an index tensor (kept while the rows stay the same)."""
        rows = tuple(rows)
        if getattr(self, "_last_index", (None,))[0] != rows:
            self._last_index = (rows, torch.as_tensor(rows, device=self.device))
        return self._last_index[1]

    def _per_member(self, key: str, rows: Sequence[int]) -> float | Tensor:
        """A hyperparameter of the members ``rows``: one number when they all have the same, else one
        per member, a (P',) float32 tensor."""
        values = {self.hyper_rows[r][key] for r in rows}
        if len(values) == 1:
            return float(values.pop())
        return self.hyper[key][self._index(rows)]

    def observe(self, rows: Sequence[int], obs: Tensor, valid: Tensor) -> None:
        """normalize.obs: the members ``rows``' statistics take in their rollout's (T, P', N, ...)
        observations (after the update on it, so collection and learning saw the same statistics)."""
        if self.stack.single.obs_norm is None:
            return
        self.stack.call("obs_norm.update", obs.transpose(0, 1), valid.transpose(0, 1), rows=rows)

    # --- updating -----------------------------------------------------------------------------------

    def scale_lr(self, fractions: Sequence[float]) -> None:
        """Each member's lr (and PPO's clip ranges, when annealed) as ``lr_schedule`` gives it for the
        fraction of its own budget that member has done."""
        if self.lr_schedule is None:
            return
        multipliers = torch.tensor([self.lr_schedule(f) for f in fractions], dtype=torch.float64)
        for opt in self.optimizers.values():
            opt.scale_lr(multipliers)
        if getattr(self.loss_fn, "anneal_clip", False):
            self.clip_scale = multipliers.to(device=self.device, dtype=torch.float32)

    def update(self, batch: Batch, rows: Sequence[int], diagnostics: bool = True) -> tuple[MemberStats, dict[int, str]]:
        """One update of the members ``rows`` (P' of them) on their ``batch``, (P', B, ...) each: the
        stats of each, and the members (by row) whose loss or gradient was not finite, with the message
        of each: those took no step, nor any later minibatch of this update."""
        rows = list(rows)
        coefs = self.loss_coefficients(rows)
        active = torch.ones(len(rows), dtype=torch.bool)
        if self.epochs == 1 and self.minibatches == 1:
            step = self.gradient_step(batch, rows, active, coefs, diagnostics)
            if diagnostics:  # the critic's values from the step's own forward pass (before its update)
                step.stats.update(rollout_stats(*step.used))
            return MemberStats(step.stats, len(rows)), step.failed
        failed: dict[int, str] = {}
        totals: dict[str, Tensor] = {}
        counts = torch.zeros(len(rows))
        for part, mask, has in self.minibatch_indices(batch.mask, rows, batch.steps):
            stepping = active & has
            if not bool(stepping.any()):
                if not bool(active.any()):
                    break
                continue
            step = self.gradient_step(batch.take(part, mask), rows, stepping, coefs, diagnostics)
            stepped = step.stepped
            failed.update(step.failed)
            active &= ~(stepping & ~stepped)  # frozen by target_kl, or not finite: no more steps this update
            for key, value in step.stats.items():
                totals[key] = totals.get(key, 0.0) + torch.where(stepped.to(value.device), value, 0.0)
            counts += stepped.float()
        out = {key: value / counts.clamp(min=1).to(value.device) for key, value in totals.items()}
        out["train/gradient_steps"] = counts.long()
        if diagnostics:  # over the whole rollout, with the values the critic gave at collection
            advantages, returns = self.loss_fn.targets(batch.advantages, batch.returns, batch.values, batch.mask)
            out.update(rollout_stats(advantages, batch.values, returns, batch.mask))
        # a member stopped before its first step changed nothing: its stats are only that
        none = {i: {"train/gradient_steps": 0} for i, steps in enumerate(counts.tolist()) if steps == 0}
        return MemberStats(out, len(rows), none), failed

    def loss_coefficients(self, rows: Sequence[int]) -> dict[str, float | Tensor]:
        """The loss's coefficients for the members ``rows``, as the loss takes them: a number when they
        all have the same, else one per member ((P',) tensors); PPO's annealed clip scale too."""
        coefs = {key: self._per_member(key, rows) for key in ("ent_coef", "vf_coef")}
        if getattr(self.loss_fn, "anneal_clip", False):
            coefs["clip_scale"] = self.clip_scale[self._index(rows)]
        return coefs

    def minibatch_indices(self, mask: Tensor, rows: Sequence[int], steps: int | None = None):
        """``epochs`` passes over each member's valid transitions, each a fresh permutation (from the
        member's own generator) split into ``minibatches`` parts of near-equal size: every valid
        transition once per epoch, never an autoreset step. Yields, per part, the (P', L) indices and
        mask of every member's part (padded to the longest) and which members have one."""
        if steps is not None:  # a recurrent network's batch: T steps of env columns
            yield from self._sequence_indices(mask, rows, steps)
            return
        valid = [m.nonzero().squeeze(-1) for m in mask]
        for _ in range(self.epochs):
            parts = []
            for own, row in zip(valid, rows, strict=True):
                generator = self.generators[row]
                order = own[torch.randperm(len(own), generator=generator, device=generator.device).to(own.device)]
                parts.append(order.tensor_split(self.minibatches))
            for j in range(self.minibatches):
                lengths = [len(p[j]) for p in parts]
                longest = max(lengths)
                if longest == 0:
                    continue
                index = torch.zeros(len(rows), longest, dtype=torch.long, device=mask.device)
                part_mask = torch.zeros(len(rows), longest, dtype=torch.bool, device=mask.device)
                for i, p in enumerate(parts):
                    index[i, : lengths[i]] = p[j]
                    part_mask[i, : lengths[i]] = True
                yield index, part_mask, torch.tensor(lengths) > 0

    def _sequence_indices(self, mask: Tensor, rows: Sequence[int], steps: int):
        """A recurrent network's minibatches: whole env columns, all T steps of each (CleanRL's
        ``ppo_atari_lstm``): each epoch a fresh permutation of each member's columns (from its own
        generator) split into ``minibatches`` parts; the indices are t-major, so a part reads as (T, B)
        sequences, and its mask is the transitions' own (autoreset steps stay in, masked out)."""
        columns = mask.shape[1] // steps
        for _ in range(self.epochs):
            parts = []
            for row in rows:
                generator = self.generators[row]
                order = torch.randperm(columns, generator=generator, device=generator.device).to(mask.device)
                parts.append(order.tensor_split(self.minibatches))
            for j in range(self.minibatches):
                cols = torch.stack([part[j] for part in parts])  # (P', B): the same B for every member
                if cols.shape[1] == 0:
                    continue
                t = torch.arange(steps, device=mask.device).view(1, steps, 1)
                index = (t * columns + cols.unsqueeze(1)).flatten(1)
                yield index, torch.gather(mask, 1, index), torch.ones(len(rows), dtype=torch.bool)

    def gradient_step(
        self, batch: Batch, rows: list[int], stepping: Tensor, coefs: Mapping[str, float | Tensor], diagnostics: bool
    ) -> Step:
        """One optimizer step of the members ``stepping`` (of ``rows``) on ``batch``, with the loss's
        ``coefs``: their stats ((P',) each), the (advantages, values, returns, mask) the loss used, which
        members stepped (not those ``target_kl`` freezes here, nor those whose loss or gradient is not
        finite), and the message of each member (by row) whose loss or gradient was not finite."""
        mask = batch.mask
        advantages, returns = self.loss_fn.targets(batch.advantages, batch.returns, batch.values, mask)
        if self.recurrent:  # whole sequences unrolled from their first step's state: (P', T, B) -> (P', T x B)
            out = self._run(rows, "evaluate_sequence", *batch.sequences())
            log_probs, entropy, values, std = (x.flatten(1, 2) if x is not None else None for x in out)
        else:
            log_probs, entropy, values, std = self._run(rows, "evaluate_actions", batch.obs, batch.actions)
        old = {"old_log_probs": batch.log_probs, "old_values": batch.values} if self.old_inputs else {}
        losses = self.loss_fn(log_probs, entropy, values, advantages, returns, mask, **old, **coefs)
        stepping = stepping.clone()
        if self.target_kl is not None:  # a member past it stops here, before this step
            stepping &= ~(losses["approx_kl"].detach().cpu() > 1.5 * self.target_kl)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        total = losses["total"]
        # members share no parameter: each gets its own gradient (none for a member that does not step)
        (total.sum() if bool(stepping.all()) else (total * stepping.to(total.device)).sum()).backward()
        self.stack.gather_grads()
        index = self._index(rows)
        every = len(rows) == self.members
        grads = {g: [p.grad if every else p.grad.index_select(0, index) for p in self.group_params(g)]
                 for g in self.optimizers}  # fmt: skip
        grad_stats = gradient_stats([g for gs in grads.values() for g in gs]) if diagnostics else {}
        max_norm = self.hyper["max_grad_norm"][index]
        norms = {g: clip_per_member(gs, max_norm) for g, gs in grads.items()}
        if not every:  # the clipped rows back into the stacked gradients
            for g, gs in grads.items():
                for p, clipped in zip(self.group_params(g), gs, strict=True):
                    p.grad.index_copy_(0, index, clipped)
        # a NaN/inf must never reach the weights: each member is checked before any optimizer steps
        finite = torch.isfinite(torch.stack([total.detach(), *norms.values()])).all(0).cpu()
        failed: dict[int, str] = {}
        if not bool(finite.all()):
            for i in (stepping & ~finite).nonzero().flatten().tolist():
                bad = "loss" if not torch.isfinite(total[i]) else "gradient"
                terms = ", ".join(f"{k}={float(v[i].detach()):.3g}" for k, v in losses.items())
                failed[rows[i]] = f"non-finite {bad} ({terms})"
            stepping &= finite
        if every:
            on = stepping
        else:
            on = torch.zeros(self.members, dtype=torch.bool)
            on[rows] = stepping
        for opt in self.optimizers.values():
            opt.step(on)
        stats: dict[str, Tensor] = {f"losses/{k}": v.detach() for k, v in losses.items() if k not in LOSS_STATS}
        stats.update({LOSS_STATS[k]: v for k, v in losses.items() if k in LOSS_STATS})
        for g, norm in norms.items():
            suffix = "" if g == "all" else "_" + g
            stats[f"train/grad_norm{suffix}"] = norm  # before clipping
            lrs = [self.optimizers[g].lr_of(r) for r in rows]  # as lr_schedule set them
            stats[f"train/lr{suffix}"] = torch.tensor(lrs, dtype=torch.float64)
        stats.update(grad_stats)
        if std is not None:
            stats["train/policy_std"] = std.detach().flatten(1).mean(1)
        return Step(stats, (advantages, values, returns, mask), stepping, failed)


def _over_envs(value: float | Tensor) -> float | Tensor:
    """A per-member value ((P',) tensor) as (P', 1), broadcasting over a (T, P', N) rollout's envs."""
    return value.unsqueeze(1) if torch.is_tensor(value) else value


def _first(items: list):
    return items[0] if items else None


class MemberStats:
    """An update's stats, (P',) tensors, read as one dict of numbers per member: the host sync happens
    on the first read (the loop reads only the updates it logs)."""

    def __init__(self, stats: dict[str, Tensor], members: int, rows: dict[int, dict] | None = None):
        self.stats, self.members, self.fixed = stats, members, rows or {}
        self._rows: list[dict[str, float]] | None = None

    def __len__(self) -> int:
        return self.members

    def __getitem__(self, i: int) -> dict[str, float]:
        if self._rows is None:
            self._rows = _per_member(self.stats, self.members)
        return self.fixed.get(i, self._rows[i])


def _per_member(stats: dict[str, Tensor | float], members: int) -> list[dict[str, float]]:
    """(P',) stats as one dict of numbers per member: one host sync for all of them."""
    keys = [k for k, v in stats.items() if torch.is_tensor(v)]
    values = (
        torch.stack([stats[k].detach().to("cpu", torch.float64).reshape(members) for k in keys]).T.tolist()
        if keys
        else [[]] * members
    )
    return [{k: v for k, v in zip(keys, row, strict=True)} for row in values]
