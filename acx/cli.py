"""The ``acx`` command: ``acx train ...`` and ``acx eval ...`` are Hydra apps over the configs the package
carries (``pkg://acx.conf``, the repository's ``conf/``); ``acx report DIR`` summarises the runs in a folder."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import warnings
from importlib.resources import files
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from acx import __version__
from acx.errors import AcxError, ConfigError
from hydra_plugins.acx_searchpath.searchpath import VARIABLE as CONFIG_DIR_VARIABLE
from hydra_plugins.acx_searchpath.searchpath import user_config_dirs

CONF_PACKAGE = "pkg://acx.conf"  # Hydra's primary config folder: the package's, wherever it is installed
CONF_DIR = str(files("acx.conf"))  # the same folder as a path, for the option check and the compose API

# conf/hydra/launcher/{joblib,submitit_*}.yaml keep the plugins' own names and list every key, so users
# see each knob in one file; Hydra merges them with the plugins' schemas of the same names and warns
# that it does. Set at import: launcher workers (loky, submitit) import this module before composing.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")

USAGE = """usage: acx {train,eval,export} [--config-dir DIR] [hydra overrides...] | acx report DIR | acx --version

  acx train                                  train the default (CartPole-v1, n-step A2C)
  acx train env=pendulum algo=episodic       pick config groups; any key: algo.gamma=0.98 seed=3
  acx train experiment=<preset>              a preset from conf/experiment/
  acx train -m algo=episodic,td0,nstep seed=0,1,2   a multirun sweep (hydra/launcher=joblib|ray: in parallel)
  acx train -m hparams_search=cartpole_nstep an Optuna search (rerun the same command to resume it)
  acx report DIR                             table and learning curves of the runs in a run or sweep folder
  acx eval ckpt=PATH [episodes=N] [render=human] [video=true] [deterministic=false]
  acx export ckpt=PATH [format=onnx|torchscript]   the deterministic policy, observation -> action

--config-dir DIR (-cd DIR, repeatable) searches your own config folder before acx's: its env/,
experiment/, tuned/ ... files are found by name, and one named like acx's wins. ACX_CONFIG_DIR=DIR[:DIR]
does the same for every command. Each command takes Hydra's own flags too: acx train --help, --cfg job.
"""


def find_user_error(exc: BaseException) -> AcxError | None:
    """The AcxError behind ``exc`` (Hydra wraps errors raised while building a ``_target_``), or None."""
    while exc is not None:
        if isinstance(exc, AcxError):
            return exc
        exc = exc.__cause__ if isinstance(exc, InstantiationException) else None
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def remove_unused_run_dir(run_dir: Path) -> None:
    """Delete the folder Hydra made for a run that never started (only Hydra's own files in it)."""
    if not run_dir.is_dir():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


# True while the Python API runs a command: errors are raised (as AcxError) instead of printed with an exit
RAISE_ERRORS = False


class RaisedError(BaseException):
    """Carries a job's AcxError past Hydra's job runner, which writes a line of its own for any Exception,
    to run_command, which raises the error itself (the Python API only)."""

    def __init__(self, error: AcxError):
        super().__init__(str(error))
        self.error = error


def report_user_errors(fn):
    """An AcxError (bad input, a full disk, a diverged run) becomes one line and its exit code; any other
    exception is a bug and keeps its traceback (exit 1). ACX_DEBUG=1 shows every traceback."""

    def wrapper(cfg: DictConfig):
        from acx.run.signals import Interrupted

        try:
            return fn(cfg)
        except Interrupted as exc:  # the checkpoint is saved and the resume hint printed
            if RAISE_ERRORS:
                raise
            exc.hand_over()  # submitit's pre-emption signal: submitit requeues the job
            sys.exit(exc.exit_code)
        except BrokenPipeError:  # stdout closed early (`acx eval ... | head -1`): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:
            error = find_user_error(exc)
            if error is None or os.environ.get("ACX_DEBUG"):
                exc.acx_reraised = True  # a bug: main() lets it through with its traceback
                raise
            if error.exit_code == 2:  # nothing was started: leave no run folder behind
                remove_unused_run_dir(Path(cfg.paths.output_dir))
            if RAISE_ERRORS:  # the Python API (acx.api): the caller gets the error itself
                raise RaisedError(error) from None
            print(f"acx: error: {first_line(error)}", file=sys.stderr)
            sys.exit(error.exit_code)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@hydra.main(version_base="1.3", config_path=CONF_PACKAGE, config_name="train")
@report_user_errors
def train_app(cfg: DictConfig) -> float:
    """Hydra wrapper around train(); returns the metric a sweeper optimises (``optimized_metric``)."""
    from acx.analysis.learned import start_note
    from acx.analysis.runs import objective_value
    from acx.run.train import train

    if note := start_note(cfg, HydraConfig.get().runtime.choices):  # docs/learning.md found it does not learn
        print(f"acx: note: {note}")
    on_eval = None
    if HydraConfig.get().sweeper.get("trial_number") is not None:  # a trial of hydra/sweeper=acx_optuna
        from acx.sweep.tuning import trial_reporter  # reports each evaluation to the study, for pruning

        on_eval = trial_reporter(cfg)
    summary = train(cfg, on_eval=on_eval)
    return objective_value(cfg.get("optimized_metric", "best_eval_return"), summary, Path(cfg.paths.output_dir))


@hydra.main(version_base="1.3", config_path=CONF_PACKAGE, config_name="eval")
@report_user_errors
def eval_app(cfg: DictConfig) -> float:
    """Hydra wrapper around evaluate_checkpoint()."""
    from acx.run.replay import evaluate_checkpoint

    result = evaluate_checkpoint(cfg)
    print(
        f"acx: {result['episodes']} episodes of {result['env_id']}: return {result['return_mean']:.2f} "
        f"+- {result['return_std']:.2f}, length {result['length_mean']:.1f}"
    )
    if "video" in result:
        print(f"acx: video ({result['video_frames']} frames): {result['video']}")
    print(f"acx: wrote {Path(cfg.paths.output_dir) / 'eval.json'}")
    return result["return_mean"]


@hydra.main(version_base="1.3", config_path=CONF_PACKAGE, config_name="export")
@report_user_errors
def export_app(cfg: DictConfig) -> None:
    """Hydra wrapper around export_checkpoint()."""
    from acx.run.export import export_checkpoint

    result = export_checkpoint(cfg)
    print(f"acx: exported the deterministic policy of {result['checkpoint']} ({result['env_id']})")
    print(f"acx: wrote {result['path']} and {Path(result['path']).with_name('policy.json')}")


APPS = {"train": train_app, "eval": eval_app, "export": export_app}


def check_group_options(args: list[str]) -> None:
    """``group=option`` overrides must name files in a config folder's <group>/ (the user's folders and
    acx's): a ConfigError listing the choices otherwise (checked before Hydra, which would print several
    lines and exit 1)."""
    roots = [*map(Path, user_config_dirs()), Path(CONF_DIR)]
    for arg in args:  # extra config dirs given with hydra.searchpath=[file://...] count too
        if arg.startswith("hydra.searchpath="):
            roots += [Path(p) for p in re.findall(r"file://([^,\]]+)", arg)]
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if not sep or "." in key or "/" in key or key == "hydra" or not any((r / key).is_dir() for r in roots):
            continue
        choices = sorted({p.stem for root in roots for p in (root / key).glob("*.yaml")})
        for option in value.strip("[]").split(","):  # multirun sweeps and lists (logger=[a,b])
            option = option.strip()
            if option and option != "null" and option not in choices:
                raise ConfigError(f"{key}={option}: no such option; choose from {', '.join(choices)}")


def config_dir_arguments(args: list[str]) -> list[str]:
    """Take ``--config-dir DIR`` / ``-cd DIR`` / ``--config-dir=DIR`` out of ``args`` and put each folder
    ahead of acx's configs (``ACX_CONFIG_DIR``, read by hydra_plugins/acx_searchpath); a folder that is not
    there is a ConfigError. ``ACX_CONFIG_DIR`` set by the user is checked the same way."""
    rest, given, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config-dir", "-cd"):
            if i + 1 >= len(args):
                raise ConfigError(f"{arg}: expects a folder")
            given.append(args[i + 1])
            i += 2
            continue
        if arg.startswith("--config-dir="):
            given.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    folders = [str(Path(d).expanduser().resolve()) for d in [*given, *user_config_dirs()]]
    for folder in folders:
        if not Path(folder).is_dir():
            raise ConfigError(f"--config-dir {folder}: no such folder")
    if folders:
        os.environ[CONFIG_DIR_VARIABLE] = os.pathsep.join(dict.fromkeys(folders))  # launcher workers inherit it
    return rest


def resume_arguments(args: list[str]) -> list[str]:
    """For ``acx train resume=PATH``: the original run's overrides first (so the same config is
    composed), the user's after them (they win), and the original run dir unless one is given."""
    given = [a.split("=", 1)[1] for a in args if a.startswith("resume=")]
    if not given or not given[-1] or given[-1] == "null":
        return args
    if {"-m", "--multirun"} & set(args) and "," in given[-1]:  # a sweep of runs to resume
        if "hydra/launcher=population" not in args:
            raise ConfigError(f"resume={given[-1]}: a sweep of runs to resume needs hydra/launcher=population "
                              "(each job continues its own run, in its own folder)")  # fmt: skip
        return args
    from acx.run.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint  # imports torch: ~1.4 s

    try:
        ckpt = resolve_checkpoint(given[-1])
        load_checkpoint(ckpt)  # a bad checkpoint is reported before Hydra writes anything
    except CheckpointError as exc:
        raise CheckpointError(f"resume: {first_line(exc)}") from None
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    original: list[str] = []
    if overrides_file.is_file():
        import yaml

        skip = ("resume=", "hydra.run.dir=", "paths.output_dir=")
        original = [o for o in (yaml.safe_load(overrides_file.read_text()) or []) if not o.startswith(skip)]
        # runs made before the single optimizer's keys moved up (optimizer.all.lr -> optimizer.lr)
        original = [re.sub(r"^(\+*)optimizer\.all\.", r"\1optimizer.", o) for o in original]
        # and before the package layout: a _target_ override names the module's new path
        from acx.config import upgrade_target

        original = [
            re.sub(r"(_target_=)(\S+)$", lambda m: m.group(1) + upgrade_target(m.group(2)), o) for o in original
        ]
    from acx.analysis.runs import override_key

    given_keys = {override_key(a) for a in args}
    original = [o for o in original if override_key(o) not in given_keys]
    extra = [] if any(a.startswith("hydra.run.dir=") for a in args) else [f"hydra.run.dir={run_dir}"]
    return [*original, *[a if not a.startswith("resume=") else f"resume={ckpt}" for a in args], *extra]


def leaf_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (lists count as leaves)."""
    if not isinstance(node, dict):
        return [prefix] if prefix else []
    keys = []
    for key, value in node.items():
        keys += leaf_keys(value, f"{prefix}.{key}" if prefix else str(key))
    return keys


def composition_error(exc: BaseException) -> str:
    """One line for a config Hydra could not compose; an unknown key gets a "did you mean"."""
    from acx.config import close_keys

    cause = exc.__cause__
    parent = getattr(cause, "parent_node", None)
    named = re.search(r"Could not override '([^']+)'", str(exc))  # the whole key (full_key: its first unknown part)
    key = named.group(1) if named else None
    full_key = getattr(cause, "full_key", None) or ""
    if not key or full_key.startswith(key + "."):  # a dict override (env.kwargs={a: 1}) names its new key there
        key = full_key or key
    if key and parent is not None and "not in struct" in str(cause):
        root = OmegaConf.to_container(parent._get_root(), resolve=False)
        close = close_keys(key, leaf_keys(root))
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"{key}: no such key{hint} (+{key}=... adds a new one)"
    return first_line(exc)


def run_app(app) -> None:
    """Run a Hydra app; what Hydra itself cannot do (compose the config, create the output folder) is
    a ConfigError (one line, exit 2), as the app's own input errors are."""
    from hydra.errors import HydraException

    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing, so the line is ours
    try:
        app()
    except Exception as exc:
        if getattr(exc, "acx_reraised", False) or os.environ.get("ACX_DEBUG"):
            raise
        if isinstance(exc, HydraException):  # composition, overrides, a missing config
            raise ConfigError(composition_error(exc)) from None
        if isinstance(exc, OSError):  # Hydra could not create or write the output folder
            raise ConfigError(f"cannot write {exc.filename or 'the output folder'}: {exc.strerror}") from None
        if (error := find_user_error(exc)) is not None:  # raised by a sweeper before any job (a search space)
            raise error from None
        raise


def prepare_environment() -> None:
    """What every command needs of the process before Hydra starts."""
    if not os.environ.get("XDG_RUNTIME_DIR"):  # SDL (pygame rendering) complains on headless machines without one
        runtime_dir = Path(tempfile.gettempdir()) / f"acx-runtime-{os.getuid()}"
        runtime_dir.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)


def run_command(command: str, args: list[str]) -> None:
    """``acx COMMAND ARGS...`` for train, eval and export, as the console script and the Python API run
    it; bad input raises an AcxError (its first line is what the user sees)."""
    prepare_environment()
    args = config_dir_arguments(args)
    check_group_options(args)
    rest = resume_arguments(args) if command == "train" else args
    argv = sys.argv
    sys.argv = [f"acx-{command}", *rest]  # Hydra parses its flags and overrides from sys.argv
    try:
        run_app(APPS[command])
    except RaisedError as raised:
        raise raised.error from None
    finally:
        sys.argv = argv


def main() -> None:
    """Entry point of the ``acx`` console script."""
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    if args[0] in ("-V", "--version"):
        print(f"acx {__version__}")
        sys.exit(0)
    if args[0] == "report":  # reads run folders, composes no config: a --config-dir given out of habit is ignored
        from acx.analysis.report import main as report_main

        try:
            rest = config_dir_arguments(args[1:])
        except AcxError as error:
            print(f"acx: error: {first_line(error)}", file=sys.stderr)
            sys.exit(error.exit_code)
        sys.exit(report_main(rest))
    if args[0] not in APPS:
        print(f"acx: unknown command {args[0]!r}; expected one of: {', '.join([*APPS, 'report'])}", file=sys.stderr)
        sys.exit(2)
    try:
        run_command(args[0], args[1:])
    except AcxError as error:
        if os.environ.get("ACX_DEBUG"):  # ACX_DEBUG=1: every traceback
            raise
        print(f"acx: error: {first_line(error)}", file=sys.stderr)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
