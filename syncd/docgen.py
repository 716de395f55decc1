"""The man page and the bash, zsh and fish completions, generated from the argparse parser.

Theory of operation: :func:`commands` walks the parser that ``syncd`` itself uses
(``cli.build_parser()``), sub-command by sub-command, into plain :class:`Command` values:
the words that reach it (``("import", "mbsync")``), its help line, its usage line, its
options and positional arguments. Every generator reads only those values, so a new option
appears in ``--help``, the man page and all three completions at once. Usage lines are
laid out with a fixed width, never the terminal's, so the output is the same everywhere
(``scripts/gen-docs`` writes it into the repository and a test keeps it current).

Completion scripts walk the words typed so far the same way argparse does: a word naming a
sub-command of the current command descends into it, an option that takes a value skips
the next word. They then offer the current command's sub-commands, options, an option's
choices, or file names where the argument is a path.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "EXIT_STATUS",
    "SHELLS",
    "Command",
    "Option",
    "commands",
    "completion",
    "man_page",
]

SHELLS: Final = ("bash", "zsh", "fish")
_FILE: Final = "@file"

EXIT_STATUS: Final[Mapping[str, str]] = {
    "run": "0 after SIGTERM or SIGINT and a clean shutdown; 2 bad config",
    "sync": "0 all synced; 1 some account failed (the error is printed); 2 bad config or usage",
    "send": "0 the queue is empty or only temporary failures are left; 1 on error",
    "sendmail": "0 queued; 75 (EX_TEMPFAIL) not queued",
    "status": "0",
    "check": "0 all good; 1 otherwise",
    "password set": "0 stored; 1 not stored",
    "oauth login": "0 signed in and the refresh token stored; 1 the sign-in failed or the token "
    "could not be stored; 2 bad config, unknown account or no oauth2: block",
    "import": "0 a config was written (what could not be translated is listed on stderr); "
    "1 nothing could be imported, or the output could not be written",
    "mailboxes": "0; 2 bad config or unknown account",
    "completion": "0",
    "man": "0",
}
"""Exit status per command, from CONTRACT.md; 2 means a usage error for every command."""

_FILES: Final = (
    (
        "$XDG_CONFIG_HOME/syncd/config.yaml",
        "The config file (usually ~/.config/syncd/config.yaml); -c FILE or $SYNCD_CONFIG "
        "name another.",
    ),
    (
        "$XDG_STATE_HOME/syncd/ACCOUNT.sqlite3",
        "The state database of each account (usually ~/.local/state/syncd/); state_dir: in "
        "the config moves it. Lost, the next sync re-matches every message by header.",
    ),
    ("$XDG_STATE_HOME/syncd/ACCOUNT.lock", "Keeps a second syncd off the same account."),
    ("MAILDIR/.syncd-id", "Ties the Maildir to its state, so an unmounted Maildir is refused."),
    ("MAILDIR/.outbox", "The outbox, a Maildir, unless outbox: names another."),
)
_ENVIRONMENT: Final = (
    ("SYNCD_CONFIG", "The config file, unless -c is given."),
    ("XDG_CONFIG_HOME", "Where the config file is looked for (default ~/.config)."),
    ("XDG_STATE_HOME", "Where the state is kept (default ~/.local/state)."),
    (
        "JOURNAL_STREAM",
        "Set by systemd; log lines then carry syslog priorities and no time stamps.",
    ),
    (
        "SYNCD_ACCOUNT, SYNCD_FOLDER, SYNCD_NEW",
        "Set for an on_new_mail command: the account, the folder and the number of new messages.",
    ),
)


@dataclass(frozen=True, slots=True)
class Option:
    """An option or positional argument of one command."""

    flags: tuple[str, ...]
    """``("-a", "--account")``; empty for a positional argument."""
    metavar: str | None
    """What the value is called; None when the option takes no value."""
    help: str
    choices: tuple[str, ...]
    path: bool
    """The value is a file name."""

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None


@dataclass(frozen=True, slots=True)
class Command:
    path: tuple[str, ...]
    """The words after ``syncd`` that select this command; () for ``syncd`` itself."""
    help: str
    usage: str
    options: tuple[Option, ...]
    positionals: tuple[Option, ...]
    subcommands: tuple[tuple[str, str], ...]
    """(name, help) of each sub-command, in definition order."""

    @property
    def name(self) -> str:
        return " ".join(self.path)


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=10_000)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, "")
    return " ".join(formatter.format_help().split())


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if text == argparse.SUPPRESS:
        return ""
    if "%" in text:
        params = dict(vars(action), prog=prog)
        if action.choices is not None:
            params["choices"] = ", ".join(str(c) for c in action.choices)
        try:
            text = text % params
        except (KeyError, TypeError, ValueError):
            pass
    return " ".join(text.split())


def _metavar(action: argparse.Action) -> str | None:
    if action.nargs == 0:
        return None
    if action.metavar is not None:
        return (
            str(action.metavar)
            if not isinstance(action.metavar, tuple)
            else " ".join(action.metavar)
        )
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _option(action: argparse.Action, prog: str) -> Option:
    choices = tuple(str(c) for c in action.choices) if action.choices is not None else ()
    return Option(
        flags=tuple(action.option_strings),
        metavar=_metavar(action),
        help=_help(action, prog),
        choices=choices,
        path=action.type is Path,
    )


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command reachable from ``parser``, parents before their sub-commands."""
    out: list[Command] = []

    def walk(p: argparse.ArgumentParser, path: tuple[str, ...], help_text: str) -> None:
        options: list[Option] = []
        positionals: list[Option] = []
        subs: list[tuple[str, str, argparse.ArgumentParser]] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help or "" for a in action._choices_actions}
                for name, sub in action.choices.items():
                    if sub is not None:
                        subs.append((name, " ".join(helps.get(name, "").split()), sub))
            elif action.help == argparse.SUPPRESS:
                continue
            elif action.option_strings:
                options.append(_option(action, p.prog))
            else:
                positionals.append(_option(action, p.prog))
        out.append(
            Command(
                path=path,
                help=help_text,
                usage=_usage(p),
                options=tuple(options),
                positionals=tuple(positionals),
                subcommands=tuple((name, h) for name, h, _ in subs),
            )
        )
        for name, sub_help, sub in subs:
            walk(sub, (*path, name), sub_help)

    walk(parser, (), " ".join((parser.description or "").split()))
    return out


# -- man page ---------------------------------------------------------------------------


def _roff(text: str) -> str:
    """Text for a roff line: backslashes escaped, a leading . or ' neutralized."""
    text = text.replace("\\", "\\e")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def _roff_words(text: str) -> str:
    """Command-line text: also every hyphen a minus sign, as man pages want for options."""
    return _roff(text).replace("-", "\\-")


def _option_item(option: Option) -> list[str]:
    if option.flags:
        head = ", ".join(f"\\fB{_roff_words(flag)}\\fR" for flag in option.flags)
    else:
        head = ""
    if option.metavar is not None:
        value = f"\\fI{_roff_words(option.metavar)}\\fR"
        head = f"{head} {value}" if head else value
    return [".TP", head, _roff(option.help or "(no description)")]


def man_page(
    parser: argparse.ArgumentParser,
    *,
    version: str,
    usage_overrides: Mapping[str, str] | None = None,
    exit_status: Mapping[str, str] = EXIT_STATUS,
) -> str:
    """syncd(1) in roff (``man -l``), from ``parser``.

    ``usage_overrides`` gives the usage text of commands argparse does not parse itself
    (``sendmail``, which has sendmail's own option syntax).
    """
    overrides = dict(usage_overrides or {})
    all_commands = commands(parser)
    root = all_commands[0]
    prog = parser.prog
    lines = [
        f'.TH {prog.upper()} 1 "" "{prog} {version}" "User Commands"',
        ".SH NAME",
        f"{prog} \\- {_roff(root.help[:1].lower() + root.help[1:].rstrip('.'))}",
        ".SH SYNOPSIS",
    ]
    leaves = [c for c in all_commands[1:] if not c.subcommands]
    for command in leaves:
        usage = overrides.get(command.name, command.usage)
        usage = usage.splitlines()[0].removeprefix("usage: ")
        lines.extend([".PP", f"\\fB{_roff_words(usage)}\\fR"])
    lines.extend([".PP", f"\\fB{prog} \\-\\-version\\fR", ".SH DESCRIPTION", _roff(root.help)])
    lines.append(
        ".PP\nThe config is YAML; every mistake in it is reported with the file, line and "
        "key. Commands that read it take \\fB\\-c\\fR \\fIFILE\\fR."
    )
    lines.append(".SH COMMANDS")
    for command in all_commands[1:]:
        lines.append(f'.SS "{_roff_words(prog + " " + command.name)}"')
        lines.append(_roff(command.help or ""))
        if command.name in overrides:
            lines.extend([".PP", ".nf"])
            body = overrides[command.name].removeprefix("usage: ")
            lines.extend(_roff_words(line) for line in body.splitlines())
            lines.append(".fi")
            continue
        if command.subcommands:
            names = ", ".join(f"\\fB{_roff_words(n)}\\fR" for n, _ in command.subcommands)
            lines.extend([".PP", f"Sub-commands: {names}."])
        for option in (*command.positionals, *command.options):
            if option.flags == ("-h", "--help"):
                continue
            if not option.flags and command.subcommands:
                continue
            lines.extend(_option_item(option))
    root_options = [o for o in root.options if o.flags != ("-h", "--help")]
    if root_options:
        lines.append(".SH GLOBAL OPTIONS")
        for option in root_options:
            lines.extend(_option_item(option))
    lines.append(".SH EXIT STATUS")
    lines.append("2 means a usage error (an unknown option, a missing argument) for every command.")
    for command in all_commands[1:]:
        status = exit_status.get(command.name)
        if status is None:
            continue
        lines.extend([".TP", f"\\fB{_roff_words(prog + ' ' + command.name)}\\fR", _roff(status)])
    lines.append(".SH FILES")
    for path, text in _FILES:
        lines.extend([".TP", f"\\fI{_roff_words(path)}\\fR", _roff(text)])
    lines.append(".SH ENVIRONMENT")
    for name, text in _ENVIRONMENT:
        lines.extend([".TP", f"\\fB{_roff_words(name)}\\fR", _roff(text)])
    lines.extend(
        [
            ".SH SEE ALSO",
            "\\fBmbsync\\fR(1), \\fBofflineimap\\fR(1), \\fBmsmtp\\fR(1), \\fBmutt\\fR(1), "
            "\\fBneomutt\\fR(1), \\fBaerc\\fR(1), \\fBnotmuch\\fR(1), \\fBmaildir\\fR(5)",
        ]
    )
    return "\n".join(lines) + "\n"


# -- completions ------------------------------------------------------------------------


def _value_options(command: Command) -> list[str]:
    return [flag for o in command.options if o.takes_value for flag in o.flags]


def _values(option: Option) -> str:
    if option.choices:
        return " ".join(option.choices)
    return _FILE if option.path else ""


def _positional_values(command: Command) -> str:
    words: list[str] = []
    for option in command.positionals:
        if option.path:
            words.append(_FILE)
        words.extend(option.choices)
    return " ".join(dict.fromkeys(words))


def _sh_case(pairs: Sequence[tuple[str, str]], indent: str = "        ") -> list[str]:
    lines = []
    for key, value in pairs:
        lines.append(f"{indent}{_sh_quote(key)}) echo {_sh_quote(value)} ;;")
    return lines


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _bash(prog: str, all_commands: Sequence[Command]) -> str:
    fn = "_" + re.sub(r"\W", "_", prog)
    cmds = [(c.name, " ".join(n for n, _ in c.subcommands)) for c in all_commands]
    opts = [(c.name, " ".join(f for o in c.options for f in o.flags)) for c in all_commands]
    valopts = [(c.name, " ".join(_value_options(c))) for c in all_commands]
    values = [
        (f"{c.name}|{flag}", _values(o))
        for c in all_commands
        for o in c.options
        if o.takes_value
        for flag in o.flags
    ]
    positionals = [(c.name, _positional_values(c)) for c in all_commands]
    lines = [
        f"# bash completion for {prog}; generated from its argparse definitions by",
        f"# `{prog} completion bash` (do not edit). Install: copy to",
        f"# ~/.local/share/bash-completion/completions/{prog}",
        "",
        f"{fn}_table() {{",
        '    case "$1" in',
        "    commands)",
        '        case "$2" in',
        *_sh_case(cmds),
        "        esac ;;",
        "    options)",
        '        case "$2" in',
        *_sh_case(opts),
        "        esac ;;",
        "    value-options)",
        '        case "$2" in',
        *_sh_case(valopts),
        "        esac ;;",
        "    values)",
        '        case "$2" in',
        *_sh_case(values),
        "        esac ;;",
        "    positionals)",
        '        case "$2" in',
        *_sh_case(positionals),
        "        esac ;;",
        "    esac",
        "}",
        "",
        f"{fn}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmdpath="" word i skip=0 words',
        "    COMPREPLY=()",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        "        if ((skip)); then",
        "            skip=0",
        "            continue",
        "        fi",
        '        if [[ "$word" == -* ]]; then',
        f'            if [[ "$word" != *=* && " $({fn}_table value-options "$cmdpath") " == '
        '*" $word "* ]]; then',
        "                skip=1",
        "            fi",
        f'        elif [[ " $({fn}_table commands "$cmdpath") " == *" $word "* ]]; then',
        '            cmdpath="${cmdpath:+$cmdpath }$word"',
        "        fi",
        "    done",
        "    if ((skip)); then",
        '        prev="${COMP_WORDS[COMP_CWORD-1]}"',
        f'        words="$({fn}_table values "$cmdpath|$prev")"',
        f'        if [[ "$words" == "{_FILE}" ]]; then',
        "            compopt -o filenames 2>/dev/null",
        '            mapfile -t COMPREPLY < <(compgen -f -- "$cur")',
        "        else",
        '            mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")',
        "        fi",
        "        return 0",
        "    fi",
        '    if [[ "$cur" == -* ]]; then',
        f'        words="$({fn}_table options "$cmdpath")"',
        '        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")',
        "        return 0",
        "    fi",
        f'    words="$({fn}_table commands "$cmdpath")"',
        '    if [[ -n "$words" ]]; then',
        '        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")',
        "        return 0",
        "    fi",
        f'    words="$({fn}_table positionals "$cmdpath")"',
        f'    if [[ " $words " == *" {_FILE} "* ]]; then',
        "        compopt -o filenames 2>/dev/null",
        '        mapfile -t COMPREPLY < <(compgen -f -- "$cur")',
        "    fi",
        f'    words="${{words//{_FILE}/}}"',
        '    if [[ -n "${words// /}" ]]; then',
        '        mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -W "$words" -- "$cur")',
        "    fi",
        "    return 0",
        "}",
        "",
        f"complete -F {fn} {prog}",
    ]
    return "\n".join(lines) + "\n"


def _zsh_item(name: str, help_text: str) -> str:
    return _sh_quote(name.replace(":", "\\:") + ":" + help_text)


def _zsh(prog: str, all_commands: Sequence[Command]) -> str:
    fn = "_" + re.sub(r"\W", "_", prog)
    cmds = [(c.name, " ".join(_zsh_item(n, h) for n, h in c.subcommands)) for c in all_commands]
    opts = [
        (c.name, " ".join(_zsh_item(f, o.help) for o in c.options for f in o.flags))
        for c in all_commands
    ]
    lines = [
        f"#compdef {prog}",
        f"# zsh completion for {prog}; generated from its argparse definitions by",
        f"# `{prog} completion zsh` (do not edit). Install: copy to a directory in $fpath",
        f"# as _{prog}.",
        "",
        f"{fn}_table() {{",
        '    case "$1" in',
        "    commands)",
        '        case "$2" in',
        *(f"        {_sh_quote(k)}) reply=({v}) ;;" for k, v in cmds),
        "        *) reply=() ;;",
        "        esac ;;",
        "    options)",
        '        case "$2" in',
        *(f"        {_sh_quote(k)}) reply=({v}) ;;" for k, v in opts),
        "        *) reply=() ;;",
        "        esac ;;",
        "    value-options)",
        '        case "$2" in',
        *(
            f"        {_sh_quote(c.name)}) reply=({' '.join(_sh_quote(f) for f in _value_options(c))}) ;;"  # noqa: E501
            for c in all_commands
        ),
        "        *) reply=() ;;",
        "        esac ;;",
        "    values)",
        '        case "$2" in',
        *(
            f"        {_sh_quote(c.name + '|' + flag)}) reply=({_values(o)}) ;;"
            for c in all_commands
            for o in c.options
            if o.takes_value
            for flag in o.flags
        ),
        "        *) reply=() ;;",
        "        esac ;;",
        "    positionals)",
        '        case "$2" in',
        *(f"        {_sh_quote(c.name)}) reply=({_positional_values(c)}) ;;" for c in all_commands),
        "        *) reply=() ;;",
        "        esac ;;",
        "    esac",
        "}",
        "",
        f"{fn}() {{",
        "    local cmdpath='' word i skip=0",
        "    local -a reply",
        "    for ((i = 2; i < CURRENT; i++)); do",
        '        word="${words[i]}"',
        "        if ((skip)); then",
        "            skip=0",
        "            continue",
        "        fi",
        '        if [[ "$word" == -* ]]; then',
        f'            {fn}_table value-options "$cmdpath"',
        '            if [[ "$word" != *=* && ${reply[(Ie)$word]} -gt 0 ]]; then',
        "                skip=1",
        "            fi",
        "        else",
        f'            {fn}_table commands "$cmdpath"',
        "            if (( ${reply[(I)${word}:*]} > 0 )); then",
        '                cmdpath="${cmdpath:+$cmdpath }$word"',
        "            fi",
        "        fi",
        "    done",
        "    if ((skip)); then",
        f'        {fn}_table values "$cmdpath|${{words[CURRENT-1]}}"',
        f'        if [[ "${{reply[1]}}" == "{_FILE}" ]]; then',
        "            _files",
        "        elif (( ${#reply} )); then",
        "            compadd -a reply",
        "        fi",
        "        return",
        "    fi",
        '    if [[ "${words[CURRENT]}" == -* ]]; then',
        f'        {fn}_table options "$cmdpath"',
        "        _describe -t options option reply",
        "        return",
        "    fi",
        f'    {fn}_table commands "$cmdpath"',
        "    if (( ${#reply} )); then",
        "        _describe -t commands command reply",
        "        return",
        "    fi",
        f'    {fn}_table positionals "$cmdpath"',
        f"    if (( ${{reply[(Ie){_FILE}]}} )); then",
        "        _files",
        "    fi",
        f"    reply=(${{reply:#{_FILE}}})",
        "    (( ${#reply} )) && compadd -a reply",
        "}",
        "",
        f'{fn} "$@"',
    ]
    return "\n".join(lines) + "\n"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(prog: str, all_commands: Sequence[Command]) -> str:
    fn = "__" + re.sub(r"\W", "_", prog)
    lines = [
        f"# fish completion for {prog}; generated from its argparse definitions by",
        f"# `{prog} completion fish` (do not edit). Install: copy to",
        f"# ~/.config/fish/completions/{prog}.fish",
        "",
        f"function {fn}_commands",
        "    switch $argv[1]",
    ]
    for c in all_commands:
        if c.subcommands:
            names = " ".join(_fish_quote(n) for n, _ in c.subcommands)
            lines.extend(
                [f"        case {_fish_quote(c.name)}", f"            printf '%s\\n' {names}"]
            )
    lines.extend(["    end", "end", "", f"function {fn}_value_options", "    switch $argv[1]"])
    for c in all_commands:
        flags = _value_options(c)
        if flags:
            lines.extend(
                [
                    f"        case {_fish_quote(c.name)}",
                    "            printf '%s\\n' " + " ".join(_fish_quote(f) for f in flags),
                ]
            )
    lines.extend(
        [
            "    end",
            "end",
            "",
            f"function {fn}_path",
            "    set -l words (commandline -opc)",
            "    set -e words[1]",
            "    set -l cmdpath ''",
            "    set -l skip 0",
            "    for word in $words",
            "        if test $skip -eq 1",
            "            set skip 0",
            "            continue",
            "        end",
            "        if string match -q -- '-*' $word",
            "            if not string match -q -- '*=*' $word; and contains -- $word "
            f'({fn}_value_options "$cmdpath")',
            "                set skip 1",
            "            end",
            f'        else if contains -- $word ({fn}_commands "$cmdpath")',
            '            set cmdpath (string trim -- "$cmdpath $word")',
            "        end",
            "    end",
            '    echo "$cmdpath"',
            "end",
            "",
            f"function {fn}_at",
            f"    set -l cmdpath ({fn}_path)",
            '    test "$cmdpath" = "$argv[1]"',
            "end",
            "",
            f"complete -c {prog} -f",
        ]
    )
    for c in all_commands:
        at = _fish_quote(f"{fn}_at {_fish_quote(c.name)}")
        for name, help_text in c.subcommands:
            lines.append(
                f"complete -c {prog} -n {at} -a {_fish_quote(name)} -d {_fish_quote(help_text)}"
            )
        for option in c.options:
            parts = [f"complete -c {prog} -n {at}"]
            for flag in option.flags:
                if flag.startswith("--"):
                    parts.append(f"-l {_fish_quote(flag[2:])}")
                elif len(flag) == 2:
                    parts.append(f"-s {_fish_quote(flag[1:])}")
                else:
                    parts.append(f"-o {_fish_quote(flag[1:])}")
            if option.takes_value:
                if option.choices:
                    parts.append("-x -a " + _fish_quote(" ".join(option.choices)))
                elif option.path:
                    parts.append("-r -F")
                else:
                    parts.append("-x")
            if option.help:
                parts.append(f"-d {_fish_quote(option.help)}")
            lines.append(" ".join(parts))
        for positional in c.positionals:
            if c.subcommands:
                continue
            if positional.path:
                lines.append(f"complete -c {prog} -n {at} -F")
            if positional.choices:
                lines.append(
                    f"complete -c {prog} -n {at} -a {_fish_quote(' '.join(positional.choices))}"
                )
    return "\n".join(lines) + "\n"


def completion(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    all_commands = commands(parser)
    prog = parser.prog
    if shell == "bash":
        return _bash(prog, all_commands)
    if shell == "zsh":
        return _zsh(prog, all_commands)
    if shell == "fish":
        return _fish(prog, all_commands)
    raise ValueError(f"unknown shell {shell!r}; use one of {', '.join(SHELLS)}")
