"""Rollout collection: step every member's envs with the current policies into pre-allocated (T, P, N)
storage (P members, N envs each; a single run is a cohort of one).

The schedule is the one place where the variants differ in *when* they learn: ``n_steps`` fixed
(TD(0): k transitions from one env; n-step and PPO: T steps from N envs), or ``n_steps=None``: until
the episode ends (Monte-Carlo; one env). With a fixed ``n_steps`` all members' rollouts end together;
episodes end when they do, so a member's episodic rollout ends at its own step: ``collect`` returns
when at least one member's rollout is complete, with those members only (``Rollout.rows``), their
columns padded to the longest (padding rows are invalid and terminal), and the other members go on
with their episodes.

Vector envs use Gymnasium's next-step autoreset: the observation returned with ``done`` is the real
final observation, and the *following* step of that env only resets it (its action is ignored). So
``obs[t + 1]`` is always the true next observation of step t, ``next_values[t] = values[t + 1]``
bootstraps truncations correctly, and the reset steps are marked invalid and masked out of the loss.

Episode returns are summed from the rewards the env returns. An env whose learner should see other
rewards or terminals (Atari: rewards clipped to [-1, 1], a lost life as terminal while the game goes
on) reports them in ``info['learning_reward']`` and ``info['learning_terminated']``; the rollout's
``rewards``/``terminated``/``done`` are those, and logged returns stay the game's scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from acx.algo.update import Batch, Learner


@dataclass
class Rollout:
    """The (T, P', N) transitions of the members ``rows``; ``valid`` is False on autoreset steps and
    padding. The tensors are views into the collector's storage (or, for an episodic rollout, a copy
    of some of its columns): they hold until the next ``collect()``."""

    rows: list[int]
    obs: Tensor
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    done: Tensor
    valid: Tensor
    values: Tensor
    next_values: Tensor
    episodes: list[tuple[list[float], list[int]]]  # per member of ``rows``: the returns and lengths that ended
    log_probs: Tensor | None = None  # log pi(a_t|s_t) of the policy that acted, when the loss needs it (PPO)
    states: Tensor | None = None  # a recurrent network's state before each step, (T, P', N, S)
    starts: Tensor | None = None  # where an episode starts (the state before it is zeros), (T, P', N)

    def transitions(self) -> list[int]:
        """Each member's valid transitions."""
        return self.valid.sum((0, 2)).tolist()

    def batch(self, advantages: Tensor, returns: Tensor) -> Batch:
        """The members' transitions as the learner reads them, (P', T * N, ...) each."""
        by = Batch.by_member
        log_probs = by(self.log_probs) if self.log_probs is not None else None
        if self.states is None:
            return Batch(by(self.obs), by(self.actions), by(advantages), by(returns), by(self.values), log_probs,
                         by(self.valid))  # fmt: skip
        return Batch(by(self.obs), by(self.actions), by(advantages), by(returns), by(self.values), log_probs,
                     by(self.valid), self.obs.shape[0], by(self.states), by(self.starts))  # fmt: skip


class RolloutCollector:
    """Keeps the envs' state between rollouts (per env column: the last observation, whether its next
    step is an autoreset, the running episode's return and length) and fills storage for each one."""

    def __init__(
        self,
        envs,
        learner: Learner,
        members: int,
        n_steps: int | None,
        device: torch.device,
        env_actions: Callable[[np.ndarray], np.ndarray] = lambda a: a,
        store_log_probs: bool = False,
        initial_capacity: int = 512,
    ):
        self.envs, self.learner, self.n_steps, self.device = envs, learner, n_steps, device
        self.store_log_probs = store_log_probs  # PPO's ratio needs log pi_old(a|s); A2C's loss does not
        self.env_actions = env_actions
        self.members = members
        self.num_envs = envs.num_envs // members  # N per member
        obs, _ = envs.reset()
        self.obs = obs
        columns = envs.num_envs
        self.autoreset = np.zeros(columns, dtype=bool)
        self.ep_return = np.zeros(columns, dtype=np.float64)
        self.ep_length = np.zeros(columns, dtype=np.int64)
        self.t = np.zeros(members, dtype=np.int64)  # episodic: each member's next row
        self.step_t = 0  # a fixed n_steps: every member's next row
        # a recurrent network's state per env column, and which columns' next step starts an episode (its
        # state is zeros there): the first after a reset, and each after an autoreset step
        self.recurrent = learner.recurrent
        self.state = learner.net.initial_state(columns, device) if self.recurrent else None
        self.fresh = np.ones(columns, dtype=bool)
        self._alloc(n_steps if n_steps is not None else initial_capacity)

    def _alloc(self, capacity: int) -> None:
        """Storage for ``capacity`` steps of every env column (member k's envs are columns k*N..k*N+N-1);
        a rollout reads it as (T, P, N, ...) views."""
        c, dev = self.members * self.num_envs, self.device
        space = self.envs.single_action_space
        obs_space = self.envs.single_observation_space
        obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
        act_shape = (int(np.prod(space.shape)),) if space.shape else ()  # the heads' flat actions
        act_dtype = torch.float32 if np.issubdtype(space.dtype, np.floating) else torch.long
        self.capacity = capacity
        self.buf_obs = torch.zeros((capacity, c, *obs_space.shape), dtype=obs_dtype, device=dev)
        self.buf_actions = torch.zeros((capacity, c, *act_shape), dtype=act_dtype, device=dev)
        self.buf_values = torch.zeros((capacity + 1, c), device=dev)
        self.buf_rewards = np.zeros((capacity, c), dtype=np.float32)
        self.buf_terminated = np.zeros((capacity, c), dtype=bool)
        self.buf_done = np.zeros((capacity, c), dtype=bool)
        self.buf_valid = np.zeros((capacity, c), dtype=bool)
        self.buf_log_probs = torch.zeros((capacity, c), device=dev) if self.store_log_probs else None
        if self.recurrent:
            self.buf_states = torch.zeros((capacity, c, self.state.shape[-1]), device=dev)
            self.buf_starts = np.zeros((capacity, c), dtype=bool)
        # one view per time step: row.copy_(x) costs a third of buf[t] = x, whose indexing runs per step
        self.obs_rows, self.action_rows = self.buf_obs.unbind(0), self.buf_actions.unbind(0)
        self.value_rows = self.buf_values.unbind(0)
        self.log_prob_rows = self.buf_log_probs.unbind(0) if self.store_log_probs else None

    BUFFERS = ("buf_obs", "buf_actions", "buf_values", "buf_rewards", "buf_terminated", "buf_done", "buf_valid")

    def _buffers(self) -> tuple[str, ...]:
        names = (*self.BUFFERS, "buf_log_probs") if self.store_log_probs else self.BUFFERS
        return (*names, "buf_states", "buf_starts") if self.recurrent else names

    def _state_before_step(self) -> Tensor | None:
        """A recurrent network's state for the next step of every column: zeros where an episode starts."""
        if self.recurrent and self.fresh.any():  # not in place: the state came out of inference mode
            fresh = torch.from_numpy(self.fresh).to(self.device).unsqueeze(-1)
            self.state = torch.where(fresh, torch.zeros_like(self.state), self.state)
        return self.state

    def _grow(self) -> None:
        """Double the storage (episodic rollouts only: an episode longer than the buffer)."""
        old = [getattr(self, name) for name in self._buffers()]
        self._alloc(self.capacity * 2)
        for name, prev in zip(self._buffers(), old, strict=True):
            getattr(self, name)[: len(prev)] = prev

    @property
    def lockstep(self) -> bool:
        return self.n_steps is not None

    def collect(self) -> Rollout:
        """Step the envs until a member's rollout is complete; return the complete ones."""
        p, n = self.members, self.num_envs
        episodes: list[tuple[list[float], list[int]]] = [([], []) for _ in range(p)]
        while True:
            if self.lockstep:  # every member at the same row: row views, the fastest copies
                t = self.step_t
                obs_t = self.obs_rows[t].copy_(torch.from_numpy(self.obs))  # the policy reads the stored row
                state = self._state_before_step()
                if self.recurrent:
                    self.buf_states[t].copy_(state)
                action, value, log_prob, self.state = self.learner.act(obs_t, self.store_log_probs, state)
                self.action_rows[t].copy_(action)
                self.value_rows[t].copy_(value)
                if self.store_log_probs:
                    self.log_prob_rows[t].copy_(log_prob)
                at = t
            else:  # each member at its own row (one env each)
                if int(self.t.max()) == self.capacity:
                    self._grow()
                rows = torch.from_numpy(self.t).to(self.device)
                cols = torch.arange(p, device=self.device)
                obs = torch.from_numpy(self.obs).to(self.device, self.buf_obs.dtype)  # MuJoCo's float64 too
                self.buf_obs[rows, cols] = obs
                state = self._state_before_step()
                if self.recurrent:
                    self.buf_states[rows, cols] = state
                action, value, log_prob, self.state = self.learner.act(obs, self.store_log_probs, state)
                self.buf_actions[rows, cols] = action
                self.buf_values[rows, cols] = value
                if self.store_log_probs:
                    self.buf_log_probs[rows, cols] = log_prob
                at = (self.t, np.arange(p))
            action_np = action.cpu().numpy()
            self.obs, reward, terminated, truncated, info = self.envs.step(self.env_actions(action_np))
            done = terminated | truncated  # the real episode's end: resets, returns and lengths follow it
            # the learner's view where an env reports one (Atari: clipped rewards, a lost life as terminal)
            learning_terminated = info.get("learning_terminated", terminated)
            valid = ~self.autoreset
            self.buf_rewards[at] = info.get("learning_reward", reward)
            self.buf_terminated[at] = learning_terminated
            self.buf_done[at] = done | learning_terminated
            self.buf_valid[at] = valid
            if self.recurrent:
                self.buf_starts[at] = self.fresh
                self.fresh = ~valid  # an autoreset step returns the first observation of the next episode
            self.ep_return += reward * valid
            self.ep_length += valid
            ended = None
            if done.any():  # most steps end no episode: skip the bookkeeping's NumPy calls
                ended = done & valid
                for i in np.flatnonzero(ended):
                    episodes[i // n][0].append(float(self.ep_return[i]))
                    episodes[i // n][1].append(int(self.ep_length[i]))
                self.ep_return[done] = 0.0
                self.ep_length[done] = 0
            self.autoreset = done
            if self.lockstep:
                self.step_t += 1
                if self.step_t == self.n_steps:
                    return self._complete(list(range(p)), episodes)
            else:
                self.t += 1
                if ended is not None and ended.any():
                    return self._complete(np.flatnonzero(ended).tolist(), episodes)

    def _complete(self, rows: list[int], episodes: list) -> Rollout:
        """The rollouts of the members ``rows``, bootstrapped from the observation after their last step;
        their next rollout starts at row 0."""
        p, n, dev = self.members, self.num_envs, self.device
        obs = torch.from_numpy(self.obs).to(dev)
        state = self._state_before_step()
        recurrent = {}
        if self.lockstep:
            steps = self.step_t
            self.buf_values[steps] = self.learner.value(obs, state)
            if self.recurrent:
                recurrent = {
                    "states": self.buf_states[:steps].view(steps, p, n, -1),
                    "starts": torch.as_tensor(self.buf_starts[:steps], device=dev).view(steps, p, n),
                }
            self.step_t = 0
            return Rollout(
                rows=rows,
                obs=self.buf_obs[:steps].view(steps, p, n, *self.buf_obs.shape[2:]),
                actions=self.buf_actions[:steps].view(steps, p, n, *self.buf_actions.shape[2:]),
                rewards=torch.as_tensor(self.buf_rewards[:steps], device=dev).view(steps, p, n),
                terminated=torch.as_tensor(self.buf_terminated[:steps], device=dev).view(steps, p, n),
                done=torch.as_tensor(self.buf_done[:steps], device=dev).view(steps, p, n),
                valid=torch.as_tensor(self.buf_valid[:steps], device=dev).view(steps, p, n),
                values=self.buf_values[:steps].view(steps, p, n),
                next_values=self.buf_values[1 : steps + 1].view(steps, p, n),
                episodes=episodes,
                log_probs=self.buf_log_probs[:steps].view(steps, p, n) if self.store_log_probs else None,
                **recurrent,
            )
        # episodic: the members whose episodes ended, their columns up to the longest, each bootstrapped at its end
        index = torch.tensor(rows, device=dev)
        lengths = self.t[rows].copy()
        steps = int(lengths.max())
        bootstrap = self.learner.value(obs, state)[index]
        if self.recurrent:
            recurrent = {
                "states": self.buf_states[:steps, index].unsqueeze(2),
                "starts": torch.as_tensor(self.buf_starts[:steps, rows], device=dev).unsqueeze(2),
            }
        values = self.buf_values[: steps + 1, index].clone()
        values[torch.from_numpy(lengths).to(dev), torch.arange(len(rows), device=dev)] = bootstrap
        out = Rollout(
            rows=rows,
            obs=self.buf_obs[:steps, index].unsqueeze(2),
            actions=self.buf_actions[:steps, index].unsqueeze(2),
            rewards=torch.as_tensor(self.buf_rewards[:steps, rows], device=dev).unsqueeze(2),
            terminated=torch.as_tensor(self.buf_terminated[:steps, rows], device=dev).unsqueeze(2),
            done=torch.as_tensor(self.buf_done[:steps, rows], device=dev).unsqueeze(2),
            valid=torch.as_tensor(self.buf_valid[:steps, rows], device=dev).unsqueeze(2),
            values=values[:steps].unsqueeze(2),
            next_values=values[1 : steps + 1].unsqueeze(2),
            episodes=[episodes[r] for r in rows],
            log_probs=self.buf_log_probs[:steps, index].unsqueeze(2) if self.store_log_probs else None,
            **recurrent,
        )
        self.t[rows] = 0
        return self._padded(out, lengths)

    def _padded(self, out: Rollout, lengths: np.ndarray) -> Rollout:
        """Rows at and past each member's length are padding: invalid, terminal, no reward, so no
        return flows back across them (the bootstrap at a member's length is its next value)."""
        steps = out.rewards.shape[0]
        pad = torch.arange(steps, device=self.device)[:, None] >= torch.from_numpy(lengths).to(self.device)[None, :]
        if not bool(pad.any()):
            return out
        pad = pad.unsqueeze(-1)
        out.valid = out.valid & ~pad
        out.done, out.terminated = out.done | pad, out.terminated | pad
        out.rewards = out.rewards.masked_fill(pad, 0.0)
        out.values = out.values.masked_fill(pad, 0.0)
        return out

    def regroup(self, rows: Sequence[int | None], envs, joining_obs: Sequence[np.ndarray] = ()) -> None:
        """Go on with the members ``rows`` (old row numbers; None: the next of ``joining_obs``, a member
        that joins with its envs' first observations), now stepped as ``envs``: the others' episodes
        (and, episodic, their partial rollouts) continue where they were."""
        n = self.num_envs
        new_obs = iter(joining_obs)
        obs, autoreset, ep_return, ep_length, fresh, state = [], [], [], [], [], []
        for r in rows:
            if r is None:
                obs.append(next(new_obs))
                autoreset.append(np.zeros(n, dtype=bool))
                ep_return.append(np.zeros(n))
                ep_length.append(np.zeros(n, dtype=np.int64))
                fresh.append(np.ones(n, dtype=bool))
                if self.recurrent:
                    state.append(torch.zeros(n, self.state.shape[-1], device=self.device))
            else:
                cols = slice(r * n, (r + 1) * n)
                for dest, src in ((obs, self.obs), (autoreset, self.autoreset), (ep_return, self.ep_return),
                                  (ep_length, self.ep_length), (fresh, self.fresh)):  # fmt: skip
                    dest.append(src[cols])
                if self.recurrent:
                    state.append(self.state[cols])
        self.obs, self.autoreset = np.concatenate(obs), np.concatenate(autoreset)
        self.ep_return, self.ep_length = np.concatenate(ep_return), np.concatenate(ep_length)
        self.fresh = np.concatenate(fresh)
        if self.recurrent:
            self.state = torch.cat(state)
        self.t = np.array([self.t[r] if r is not None else 0 for r in rows], dtype=np.int64)
        old = {name: getattr(self, name) for name in self._buffers()}
        self.envs, self.members = envs, len(rows)
        self._alloc(self.capacity)
        if not self.lockstep:  # the members that stay keep their episodes so far
            for j, r in enumerate(rows):
                if r is not None:
                    for name, prev in old.items():
                        getattr(self, name)[:, j] = prev[:, r]
