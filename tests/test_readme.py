"""Every ``acx train``/``eval``/``export`` command the README shows still composes (``--cfg job``), and
its links point at files that exist: the README is a newcomer's first page, so none of it may rot."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import ROOT, acx_main

README = (ROOT / "README.md").read_text()


def readme_commands() -> list[list[str]]:
    """The acx train/eval/export command lines of the README's bash blocks, as the shell splits them."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if len(words) > 1 and words[0] == "acx" and words[1] in ("train", "eval", "export"):
                commands.append(words[1:])
    return commands


def one_job(args: list[str]) -> list[str]:
    """A multirun's first job: ``-m`` dropped and each sweep (``a,b``, ``range(0,64)``) at its first value;
    a README placeholder (``<run>``) made a plain word."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, job = OverridesParser.create(), []
    for arg in args:
        arg = re.sub(r"<[^>]*>", "x", arg)
        if arg in ("-m", "--multirun"):
            continue
        if "=" in arg and not arg.startswith("-"):
            override = parser.parse_override(arg)
            if override.is_sweep_override():
                arg = f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}"
        job.append(arg)
    return job


COMMANDS = readme_commands()


def test_the_readme_shows_the_range():
    shown = {" ".join(c[:2]) for c in COMMANDS}
    assert len(COMMANDS) >= 10 and {"train", "eval", "export"} <= {c[0] for c in COMMANDS}, shown
    assert any("--config-dir" in c for c in COMMANDS) and any("-m" in c for c in COMMANDS)


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_each_readme_command_composes(args: list[str], tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user's folder, with the config folder the README names
    (tmp_path / "my_conf" / "experiment").mkdir(parents=True)
    (tmp_path / "my_conf" / "experiment" / "mine.yaml").write_text("# @package _global_\nseed: 7\n")
    done = acx_main(*one_job(args), "--cfg", "job")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("task_name: "), done.stdout[:500]


def test_the_readmes_links_point_at_files():
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), target
