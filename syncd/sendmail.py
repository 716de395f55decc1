"""``syncd sendmail``: queue one message from stdin in an account's outbox (CONTRACT.md).

Theory of operation
-------------------
A mail reader runs its ``sendmail`` once per message, as a whole process, and waits for it:
``git send-email`` of a series runs it fifty times in a row. So this command is the one place
where the interpreter's start counts, and it has its own module that imports little: ``os``,
``sys``, ``re``, ``json`` and :mod:`syncd.drivers.enqueue` (the outbox's writer). The rest is
imported only on the way that needs it:

- the accounts come from :mod:`syncd.configfile`'s notes while the config file and the
  environment it uses are unchanged; otherwise the config is parsed in full (PyYAML, the
  config walker, logging for its warnings), with all its checks and messages;
- addresses are read by ``email.utils`` unless each is a plain ``local@domain`` or
  ``Name <local@domain>`` (:func:`syncd.drivers.enqueue.parse_addresses`);
- nothing here logs, so the logging package is set up only with the full parse.

Exit 0 when the message is queued (fsync'ed, with its envelope), 75 (EX_TEMPFAIL) when not,
with a line on stderr saying why.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

from syncd.drivers import enqueue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from syncd.configfile import Routes

EXIT_OK = 0
EXIT_TEMPFAIL = 75

USAGE = """\
usage: syncd sendmail [-c FILE] [-a ACCOUNT] [-t] [-f FROM] [-i] [-oi] [RCPT ...] < MESSAGE

Queue one message, read from stdin, in the account's outbox; `syncd send`, `syncd sync` or
the daemon sends it. Works offline. Recipients are the RCPT arguments, plus the To/Cc/Bcc
headers with -t (or when no RCPT is given). The account is -a, or the one whose from:
addresses or username match -f/-r or the From header. Other sendmail options (-oem, -odb,
-bm, -F NAME, -N, -R, -V ...) are accepted and ignored. Exit 0: queued; 75: not queued.
"""
# Letters of sendmail options that take a value (attached, -fme@x, or as the next word).
_VALUE_OPTIONS = frozenset("abBcCdeFfhLMNoOpRrVX")


def parse_args(argv: Sequence[str]) -> SimpleNamespace:
    """getopt-style, like sendmail itself: bundled letters, attached values, ``--``.

    Unknown letters are ignored, so whatever a mail reader passes cannot stop a message.
    ValueError for an option missing its value or a mode other than -bm. ``config`` is the
    ``-c`` value as given (a string), or None.
    """
    ns = SimpleNamespace(
        config=None, account=None, extract=False, sender=None, verbose=0, quiet=False
    )
    ns.recipients = []
    ns.help = False
    ns.ignored = []
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            ns.recipients.extend(words[i:])
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name in ("config", "account"):
                if not eq:
                    if i >= len(words):
                        raise ValueError(f"option --{name} needs a value")
                    value, i = words[i], i + 1
                setattr(ns, name, value)
            elif name == "help":
                ns.help = True
            elif name in ("verbose", "quiet"):
                ns.verbose += name == "verbose"
                ns.quiet |= name == "quiet"
            else:
                ns.ignored.append(word)
            continue
        if not word.startswith("-") or word == "-":
            ns.recipients.append(word)
            continue
        j = 1
        while j < len(word):
            letter = word[j]
            j += 1
            if letter == "q":  # -q[time]: queue runs, which syncd does on its own
                ns.ignored.append(word)
                break
            if letter not in _VALUE_OPTIONS:
                if letter == "t":
                    ns.extract = True
                elif letter == "v":
                    ns.verbose += 1
                elif letter != "i":
                    ns.ignored.append(f"-{letter}")
                continue
            value = word[j:]
            if not value:
                if i >= len(words):
                    raise ValueError(f"option -{letter} needs a value")
                value, i = words[i], i + 1
            if letter == "c":
                ns.config = value
            elif letter == "a":
                ns.account = value
            elif letter in "fr":
                ns.sender = value
            elif letter == "b" and value != "m":
                raise ValueError(f"sendmail mode -b{value} is not supported; only -bm")
            elif letter not in "ob":
                ns.ignored.append(f"-{letter} {value}")
            break
    return ns


def _routes(ns: SimpleNamespace) -> Routes:
    """The accounts as sendmail needs them: from the last call's notes when the config is
    unchanged (no YAML, no config walker), else from a full load. ConfigError as the full
    load gives it, also for an ``-a`` naming no account."""
    from syncd import configfile

    found = configfile.read(ns.config)
    if found is not None:
        routes = configfile.lookup(*found)
        if routes is not None and (ns.account is None or routes.named(ns.account)):
            return routes
    from pathlib import Path

    from syncd.config import load_config
    from syncd.log import setup_logging

    # The full load may warn (a literal password in a readable file): logging is set up
    # only now, as nothing on the way of an unchanged config logs.
    setup_logging(-1 if ns.quiet else ns.verbose - 1)
    config = Path(ns.config) if ns.config is not None else None
    cfg = load_config(config, text=found[1] if found is not None else None)
    if ns.account is not None:
        cfg.account(ns.account)  # the error that lists the accounts there are
    if found is None:
        return configfile.Routes.from_config(cfg)
    return configfile.store(*found, cfg)


def main(argv: Sequence[str]) -> int:
    """``syncd sendmail ARGS``: queue stdin in the outbox. 0 when queued, 75 when not."""

    def refuse(why: str) -> int:
        print(f"syncd sendmail: {why}; the message was NOT queued", file=sys.stderr)
        return EXIT_TEMPFAIL

    try:
        ns = parse_args(argv)
    except ValueError as exc:
        return refuse(str(exc))
    if ns.help:
        print(USAGE, end="")
        return EXIT_OK

    from syncd.errors import SyncdError

    try:
        raw = sys.stdin.buffer.read()
    except (OSError, ValueError) as exc:
        return refuse(f"cannot read the message from stdin: {exc}")
    # -i/-oi: stdin is always read to its end, as msmtp does; a lone "." never ends it, so
    # a message can never be cut short.
    problem = None
    try:
        from_header, header_rcpts = enqueue.header_addresses(raw)
    except enqueue.Malformed as exc:
        from_header, header_rcpts, problem = [], [], str(exc)
    try:
        routes = _routes(ns)
    except SyncdError as exc:
        return refuse(str(exc))
    if ns.account is not None:
        acct = routes.named(ns.account)
        assert acct is not None  # _routes raised the config's error otherwise
    else:
        sender = ns.sender or (from_header[0] if from_header else "")
        found = routes.for_sender(sender) if sender else None
        if found is None and len(routes.accounts) == 1:
            found = routes.accounts[0]
        if found is None:
            return refuse(
                f"no account sends as {sender or '(no From address)'}; name the account "
                "with -a ACCOUNT, or list the address under the account's from:"
            )
        acct = found
    if not acct.sends:
        return refuse(f"account {acct.name} has no smtp: section, so it cannot send")

    for word in [*ns.recipients, ns.sender or ""]:
        # getaddresses would split "a@x\r\nRCPT TO:<evil@y>" into two recipients.
        if any(ch in word for ch in "\r\n\0"):
            return refuse(f"the address {word!r} holds a line break or NUL character")
    explicit = [a for a in enqueue.parse_addresses(ns.recipients) if a]
    recipients: tuple[str, ...] | None = None
    if explicit:
        extra = header_rcpts if ns.extract else []
        unique: dict[str, str] = {}
        for address in [*explicit, *extra]:
            unique.setdefault(address.casefold(), address)
        recipients = tuple(unique.values())
    elif not header_rcpts and problem is None:
        problem = "the message has no recipients (no RCPT argument, no To, Cc or Bcc)"
    envelope = enqueue.envelope_json(ns.sender or None, recipients, time.time())
    try:
        _key, path = enqueue.enqueue(acct.outbox, raw, envelope)
    except SyncdError as exc:
        return refuse(str(exc))
    if problem is not None:
        print(
            f"syncd sendmail: warning: {problem}. It is queued as {path}, and sending "
            "will move it to failed/ with this reason",
            file=sys.stderr,
        )
    elif ns.verbose:
        print(f"syncd sendmail: queued as {path}", file=sys.stderr)
    return EXIT_OK
