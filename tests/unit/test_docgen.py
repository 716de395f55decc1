"""The man page and shell completions are generated from the argparse parser and kept current."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from syncd import __version__, cli
from syncd.docgen import EXIT_STATUS, SHELLS, commands, completion, man_page

REPO = Path(__file__).resolve().parents[2]
GENERATED = {
    "doc/syncd.1": ["man"],
    "completions/syncd.bash": ["completion", "bash"],
    "completions/syncd.zsh": ["completion", "zsh"],
    "completions/syncd.fish": ["completion", "fish"],
}


def output(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert cli.main(list(argv)) == 0, err.getvalue()
    return out.getvalue()


def test_shells_match_the_command_line():
    assert SHELLS == cli._SHELLS


def test_every_command_is_found():
    found = {c.name: c for c in commands(cli.build_parser())}
    wanted = ["", "sync", "password", "password set", "import", "import mbsync"]
    wanted += ["import offlineimap", "import msmtp", "mailboxes", "completion", "man"]
    for name in wanted:
        assert name in found, name
    assert [n for n, _ in found["import"].subcommands] == ["mbsync", "offlineimap", "msmtp"]
    merge = next(o for o in found["import msmtp"].options if o.flags == ("--merge",))
    assert merge.path and merge.metavar == "CONFIG"
    fmt = next(o for o in found["mailboxes"].options if o.flags == ("--format",))
    assert fmt.choices == ("mutt", "neomutt", "aerc", "list")
    assert found["sync"].usage.startswith("syncd sync [-h] [-c CONFIG]")


def test_output_does_not_depend_on_the_terminal(monkeypatch):
    wide = output("man")
    monkeypatch.setenv("COLUMNS", "30")
    assert output("man") == wide
    assert output("completion", "zsh") == completion(cli.build_parser(), "zsh")


def test_man_page_sections_and_rendering(tmp_path):
    text = output("man")
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "FILES",
                    "ENVIRONMENT", "SEE ALSO"):  # fmt: skip
        assert f"\n.SH {heading}\n" in text
    assert f'"syncd {__version__}"' in text
    for command in commands(cli.build_parser())[1:]:
        assert f'.SS "syncd {command.name.replace("-", chr(92) + "-")}"' in text, command.name
    assert "\\fB\\-\\-merge\\fR \\fICONFIG\\fR" in text
    assert "75 (EX_TEMPFAIL) not queued" in text  # from CONTRACT.md
    assert "usage: syncd sendmail" not in text and "syncd sendmail [\\-c FILE]" in text
    for name in ("SYNCD_CONFIG", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        assert f"\\fB{name}\\fR" in text
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed; the roff was not rendered")
    page = tmp_path / "syncd.1"
    page.write_text(text)
    done = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-P-cbou", str(page)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "syncd import msmtp" in done.stdout


def test_exit_status_names_real_commands():
    names = {c.name for c in commands(cli.build_parser())}
    assert set(EXIT_STATUS) <= names


def test_man_page_escapes_roff():
    import argparse

    p = argparse.ArgumentParser(prog="x", description=".starts with a dot \\ and a backslash")
    sub = p.add_subparsers(dest="c")
    sub.add_parser("cmd", help="'quoted")
    text = man_page(p, version="1", exit_status={})
    assert "\\&.starts with a dot \\e and a backslash" in text
    assert "\n\\&'quoted\n" in text


BASH_CASES = [
    (["syncd", ""], "run sync send sendmail status check"),
    (["syncd", "im"], "import"),
    (["syncd", "import", ""], "mbsync offlineimap msmtp"),
    (["syncd", "import", "msmtp", "--"], "--help --output --force --merge"),
    (["syncd", "mailboxes", "--format", ""], "mutt neomutt aerc list"),
    (["syncd", "mailboxes", "-c", "x.yaml", "--format", "ne"], "neomutt"),
    (["syncd", "sync", "-a", "work", "--d"], "--dry-run"),
    (["syncd", "password", "set", "work", ""], "imap pop3 smtp"),
    (["syncd", "completion", ""], "bash zsh fish"),
    (["syncd", "-"], "-h --help -V --version"),
]


def bash_complete(script: Path, words: list[str], cwd: Path) -> str:
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}\nCOMP_WORDS=({line})\nCOMP_CWORD={len(words) - 1}\n"
        '_syncd\nprintf "%s\\n" "${COMPREPLY[*]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.strip()


def test_bash_completion_completes(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = tmp_path / "syncd.bash"
    script.write_text(output("completion", "bash"))
    for words, expected in BASH_CASES:
        got = bash_complete(script, words, tmp_path)
        assert got.startswith(expected), (words, got)
    (tmp_path / "mbsyncrc").write_text("")
    assert bash_complete(script, ["syncd", "import", "mbsync", "mbs"], tmp_path) == "mbsyncrc"
    assert bash_complete(script, ["syncd", "sync", "-c", "mb"], tmp_path) == "mbsyncrc"
    assert bash_complete(script, ["syncd", "sync", "-c", "mbsyncrc", ""], tmp_path) == ""


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts(shell, tmp_path):
    text = output("completion", shell)
    for command in commands(cli.build_parser())[1:]:
        assert f"'{command.name}'" in text, command.name
    assert "--merge" in text and "neomutt" in text
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed; only the script's content was checked")
    script = tmp_path / f"syncd.{shell}"
    script.write_text(text)
    done = subprocess.run([binary, "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_committed_outputs_are_current():
    for relative, argv in GENERATED.items():
        path = REPO / relative
        assert path.is_file(), f"{relative} is missing: run scripts/gen-docs"
        assert path.read_text() == output(*argv), f"{relative} is stale: run scripts/gen-docs"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-docs"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
