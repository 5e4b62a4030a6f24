"""The command line against the library's dataclasses: every field of a `train` command's model
config, trainer config and data options has a flag in ``cli_fields.FLAGS`` (or a reason in
``NOT_EXPOSED``), every flag's default is its field's, and no flag is left over. Also: the library's
errors name fields, and the command line shows them as flags."""

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import click
import pytest

import gibbsdream
from gibbsdream import api
from gibbsdream.cli import app
from gibbsdream.cli.fields import FLAGS, NOT_EXPOSED, PRESENTATION, in_flags
from gibbsdream.errors import ConfigError
from gibbsdream.families.nade import ImageOptions
from gibbsdream.families.rbm import CorpusOptions
from gibbsdream.models import RBM, NADEConfig, RBMConfig
from gibbsdream.training import NADETrainConfig, RBMTrainConfig

SOURCES = {
    "train rbm": (RBMConfig, RBMTrainConfig, CorpusOptions),
    "train nade": (NADEConfig, NADETrainConfig, ImageOptions),
}
ARGUMENTS = ("data", "out", "device", "resume", "apply_changes")  # of gibbsdream.train, set by flags too
COMMANDS = list(SOURCES)


def command(name: str) -> click.Command:
    found = app
    for word in name.split():
        found = found.commands[word]
    return found


def option(cmd: click.Command, flag: str) -> click.Option:
    matches = [p for p in cmd.params if flag in p.opts or flag in p.secondary_opts]
    assert matches, f"{cmd.name} has no option {flag}"
    return matches[0]


def click_default(cmd: click.Command, param: click.Option):
    """The value a command runs with when the option is not given (its default, as its type reads it)."""
    ctx = click.Context(cmd)
    default = param.get_default(ctx, call=True)
    value = None if default is None else param.type_cast_value(ctx, default)
    return tuple(value) if isinstance(value, list) else value


def exposed_fields(name: str):
    """(class, field) of every field of the command's dataclasses that has a flag."""
    for cls in SOURCES[name]:
        for f in dataclasses.fields(cls):
            if f"{cls.__name__}.{f.name}" not in NOT_EXPOSED[name]:
                yield cls, f


@pytest.mark.parametrize("name", COMMANDS)
def test_every_field_has_a_flag_or_a_reason(name):
    for cls in SOURCES[name]:
        for f in dataclasses.fields(cls):
            key = f"{cls.__name__}.{f.name}"
            if key in NOT_EXPOSED[name]:
                assert NOT_EXPOSED[name][key].strip(), f"{key}: say why it has no flag"
            else:
                assert f.name in FLAGS[name], f"{key} has no flag in cli_fields.FLAGS[{name!r}]"
    for key in NOT_EXPOSED[name]:  # a reason for a field that is gone is stale
        cls_name, field_name = key.split(".")
        assert any(
            c.__name__ == cls_name and field_name in {f.name for f in dataclasses.fields(c)} for c in SOURCES[name]
        ), key


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_defaults_to_its_field_default(name):
    cmd = command(name)
    for cls, f in exposed_fields(name):
        assert f.default is not dataclasses.MISSING, f"{cls.__name__}.{f.name} has a flag, so it needs a default"
        param = option(cmd, FLAGS[name][f.name])
        default = tuple(f.default) if isinstance(f.default, list) else f.default
        assert click_default(cmd, param) == default, (
            f"{FLAGS[name][f.name]} defaults to {click_default(cmd, param)!r}, {cls.__name__}.{f.name} to {default!r}"
        )
    signature = inspect.signature(api.train).parameters
    for argument in ARGUMENTS:
        param = option(cmd, FLAGS[name][argument])
        if not param.required:
            assert click_default(cmd, param) == signature[argument].default, argument


@pytest.mark.parametrize("name", COMMANDS)
def test_no_flag_is_left_over(name):
    cmd = command(name)
    fields = {f.name for _, f in exposed_fields(name)}
    for field_name in FLAGS[name]:
        assert field_name in fields or field_name in ARGUMENTS, f"FLAGS[{name!r}] names {field_name!r}, set by nothing"
    table_flags = set(FLAGS[name].values()) | PRESENTATION[name]
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert set(param.opts) & table_flags, f"{param.opts[0]} of `{name}` is not in cli_fields"


def test_library_errors_name_fields_and_the_command_line_shows_flags():
    with pytest.raises(ConfigError, match=r"^num_hidden must be a whole number >= 1, got 0$") as caught:
        RBMTrainConfig(num_hidden=0).check()  # the old way of giving it, checked as the model checks it
    assert caught.value.field == "num_hidden"
    assert in_flags(caught.value, "train rbm") == "--hidden must be a whole number >= 1, got 0"
    with pytest.raises(ConfigError, match=r"^num_hidden must be"):
        RBMConfig(4, 0).check()
    with pytest.raises(ConfigError, match=r"^num_categories must be"):
        RBM(RBMConfig(4, 3, 1))
    with pytest.raises(ConfigError) as caught:
        RBMTrainConfig(learning_rate=-1.0).check()
    assert str(caught.value).startswith("learning_rate must") and "--" not in str(caught.value)
    assert in_flags(caught.value, "train rbm").startswith("--lr must be a positive number")
    with pytest.raises(ConfigError) as caught:
        RBMTrainConfig(fantasy_particles=-1).check()
    assert str(caught.value).startswith("fantasy_particles must")  # no flag: stays as Python says it
    assert in_flags(caught.value, "train rbm") == str(caught.value)
    with pytest.raises(ConfigError) as caught:
        NADEConfig(caption_vocab_size=5, caption_merge="sum").check()
    assert in_flags(caught.value, "train nade").startswith("--caption-merge must be a caption-merge kind")
    with pytest.raises(ConfigError) as caught:
        NADETrainConfig(weight_decay=-1.0).check()
    assert in_flags(caught.value, "train nade") == "--weight-decay and --grad-clip must be >= 0"
    with pytest.raises(ConfigError) as caught:
        RBMTrainConfig(weight_cost=float("nan")).check()
    assert in_flags(caught.value, "train rbm") == "--weight-cost must be a finite number, got nan"


def test_flags_replace_only_whole_names():
    error = ConfigError(
        "/tmp/seed/out.seed and seeds: seed must be RBMTrainConfig.seed; pass resume=True, not seed.json",
        "seed",
        "resume",
    )
    assert (
        in_flags(error, "train rbm")
        == "/tmp/seed/out.seed and seeds: --seed must be --seed; pass --resume, not seed.json"
    )
    assert in_flags(error, "no such command") == str(error)
    valued = ConfigError(
        """engine="numba" runs on the CPU only; use engine='torch' (or "auto"), not engines="x\"""", "engine"
    )
    assert (
        in_flags(valued, "train rbm")
        == """--engine numba runs on the CPU only; use --engine torch (or "auto"), not engines="x\""""
    )


# The front ends may speak in flags; the library below them may not.
FRONT_ENDS = ("cli", "web", "sweep.py", "report.py", "__main__.py")


def flags_in_library_errors(root: Path) -> list[str]:
    """Every string in a ``raise`` of a library module that names a flag (``--out``); a command
    quoted in backticks (`` `gibbsdream train --out` ``) may."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in FRONT_ENDS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for part in ast.walk(node.exc):
                    text = part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else ""
                    if re.search(r"(?<![\w-])--[a-z]", re.sub(r"`[^`]*`", "", text)):
                        found.append(f"{path.relative_to(root)}:{part.lineno}: {part.value}")
    return found


def test_library_errors_name_arguments_not_flags(tmp_path):
    assert flags_in_library_errors(Path(gibbsdream.__file__).parent) == []
    (tmp_path / "module.py").write_text(
        'raise ValueError("use `gibbsdream train --out`")\nraise ConfigError(f"pass a smaller --test-size", "x")\n'
    )
    assert flags_in_library_errors(tmp_path) == ["module.py:2: pass a smaller --test-size"]
