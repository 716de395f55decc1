"""Options given before an inner subcommand (`password set`, `oauth login`) are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.cli import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["oauth", "-c", "/etc/a.yaml", "login", "work"],
        ["oauth", "login", "work", "-c", "/etc/a.yaml"],
        ["password", "-c", "/etc/a.yaml", "set", "work", "imap"],
        ["password", "set", "-c", "/etc/a.yaml", "work"],
    ],
)
def test_config_option_anywhere_is_used(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.config == Path("/etc/a.yaml")
    assert (args.verbose, args.quiet) == (0, False)


def test_defaults_without_options() -> None:
    args = build_parser().parse_args(["oauth", "login", "work"])
    assert (args.config, args.verbose, args.quiet) == (None, 0, False)
