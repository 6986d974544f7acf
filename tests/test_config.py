"""Every config group option and every experiment preset composes and instantiates."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from acx.config import TrainConfig, check_network_fits, validate_train_config
from acx.errors import ConfigError
from acx.run.build import build_env_factory, build_learner, build_network
from tests.conftest import CONF, compose_train

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
CLASSIC_ENVS = ["cartpole", "cartpole_v0", "acrobot", "pendulum"]


def test_every_group_has_its_options():
    groups = {p.name: sorted(q.stem for q in p.glob("*.yaml")) for p in CONF.iterdir() if p.is_dir()}
    assert {"cartpole", "cartpole_v0", "acrobot", "pendulum", "pong", "atari"} <= set(groups["env"])
    assert {"mlp", "mlp_shared", "cnn"} <= set(groups["network"])
    assert {"episodic", "td0", "nstep"} <= set(groups["algo"])
    assert {"cpu", "cuda", "auto"} <= set(groups["device"])
    assert {"adam", "rmsprop", "sgd", "adam_split"} <= set(groups["optimizer"])
    assert len(EXPERIMENTS) >= 6


def test_defaults_are_cartpole_nstep(tmp_path: Path):
    cfg = compose_train([], tmp_path)
    assert cfg.env.id == "CartPole-v1" and cfg.algo.name == "nstep"
    assert cfg.network._target_.endswith("mlp_actor_critic")
    assert cfg.total_steps > 0 and cfg.seed == 0


@pytest.mark.parametrize(
    "env,network,algo",
    [(e, n, a) for e, n, a in itertools.product(CLASSIC_ENVS, ["mlp", "mlp_shared"], ["episodic", "td0", "nstep"])],
)
def test_classic_combinations_instantiate(tmp_path: Path, env: str, network: str, algo: str):
    cfg = compose_train([f"env={env}", f"network={network}", f"algo={algo}"], tmp_path)
    factory = build_env_factory(cfg.env)
    net = build_network(cfg.network, factory, torch.device("cpu"))
    optimizers = build_learner([cfg], [net], [torch.Generator()]).optimizers
    assert set(optimizers) == {"all"}
    instantiate(cfg.algo.loss)
    instantiate(cfg.stop, default_threshold=factory.reward_threshold)
    fn = instantiate(cfg.algo.advantage)
    r = torch.ones(3, 2)
    adv, ret = fn(r, torch.zeros(3, 2), torch.zeros(3, 2), r.bool() & False, r.bool() & False, gamma=cfg.algo.gamma)
    assert adv.shape == (3, 2)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd", "adam_split"])
def test_optimizers(tmp_path: Path, optimizer: str):
    cfg = compose_train([f"optimizer={optimizer}", "network=mlp"], tmp_path)
    net = build_network(cfg.network, build_env_factory(cfg.env), torch.device("cpu"))
    opts = build_learner([cfg], [net], [torch.Generator()]).optimizers
    assert set(opts) == ({"actor", "critic"} if optimizer == "adam_split" else {"all"})
    n_params = sum(len(g["params"]) for o in opts.values() for g in o.param_groups)
    assert n_params == len(list(net.parameters()))


def test_split_optimizers_need_separate_networks(tmp_path: Path):
    cfg = compose_train(["optimizer=adam_split", "network=mlp_shared"], tmp_path)
    with pytest.raises(ConfigError, match="separate actor and critic optimizers need separate networks"):
        validate_train_config(cfg)


def test_the_learning_rate_is_optimizer_lr(tmp_path: Path):
    cfg = compose_train(["optimizer.lr=3e-4"], tmp_path)
    net = build_network(cfg.network, build_env_factory(cfg.env), torch.device("cpu"))
    assert build_learner([cfg], [net], [torch.Generator()]).optimizers["all"].lr_of(0) == 3e-4
    cfg = compose_train(["optimizer=adam_split", "optimizer.actor.lr=1e-4", "optimizer.critic.lr=2e-4"], tmp_path)
    opts = build_learner([cfg], [net], [torch.Generator()]).optimizers
    assert (opts["actor"].lr_of(0), opts["critic"].lr_of(0)) == (1e-4, 2e-4)


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_device(tmp_path: Path, device: str):
    cfg = compose_train([f"device={device}"], tmp_path)
    assert instantiate(cfg.device).type in ("cpu", "cuda")


def test_any_registered_env_id(tmp_path: Path):
    cfg = compose_train(["env.id=MountainCar-v0"], tmp_path)
    factory = build_env_factory(cfg.env)
    assert factory.action_space.n == 3


def test_pong_with_cnn(tmp_path: Path):
    cfg = compose_train(["env=pong", "network=cnn"], tmp_path)
    factory = build_env_factory(cfg.env)
    net = build_network(cfg.network, factory, torch.device("cpu"))
    assert factory.observation_space.shape == (4, 84, 84) and net.shared


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_presets_compose(tmp_path: Path, experiment: str):
    cfg = compose_train([f"experiment={experiment}"], tmp_path)
    header = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()
    assert header[0] == "# @package _global_"
    assert any(f"experiment={experiment}" in line for line in header if line.startswith("#")), "header says how to run"
    config = validate_train_config(cfg)  # every preset passes the schema, and fits its env
    assert isinstance(config, TrainConfig) and config.total_steps == cfg.total_steps
    factory = build_env_factory(cfg.env)
    check_network_fits(config.network, factory)
    net = build_network(cfg.network, factory, torch.device("cpu"))
    build_learner([cfg], [net], [torch.Generator()])


def test_the_schema_names_what_the_builders_build():
    """The activation names are declared once (acx.names): the schema allows exactly those, and the
    networks build each of them."""
    import typing

    from acx import config, names
    from acx.algo import networks

    for model in (config.MlpNetwork, config.LstmNetwork):
        assert typing.get_args(model.model_fields["activation"].annotation) == tuple(names.ACTIVATIONS)
    assert set(networks.ACTIVATIONS) == set(names.ACTIVATIONS)
    assert all(isinstance(cls(), torch.nn.Module) for cls in networks.ACTIVATIONS.values())
