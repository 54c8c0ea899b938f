"""Every subcommand is registered, described, and shows an example in its help."""

from __future__ import annotations

import argparse

import pytest

from capacity.cli import COMMAND_MODULES, build_parser, main


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_module_registers() -> None:
    assert set(subparsers(build_parser())) == set(COMMAND_MODULES)


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_command_help_has_description_and_example(name: str) -> None:
    sub = subparsers(build_parser(name))[name]
    text = sub.format_help()
    assert sub.description, name
    assert "example" in text.lower(), name


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
