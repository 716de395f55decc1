"""The ``syncd`` command line: argparse subcommands and the exit codes of CONTRACT.md.

The only module that prints. Heavy modules (imapclient, yaml, sqlite3, keyring) are
imported inside the commands that need them, so ``syncd --version`` starts fast. A mail
reader's ``syncd sendmail`` goes to :mod:`syncd.sendmail` before anything else is built:
the console script imports this module, so its own imports stay light (no pathlib, no
typing at run time).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from syncd import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from pathlib import Path

    from syncd.config import AccountConfig, Config, OAuth2Config
    from syncd.engine import SyncReport

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75


def _parser_class() -> type[argparse.ArgumentParser]:
    # argparse is imported only here: `syncd sendmail` never needs it.
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            self.print_usage(sys.stderr)
            print(f"syncd: error: {message}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE)

    return _Parser


def build_parser() -> argparse.ArgumentParser:
    from pathlib import Path

    _Parser = _parser_class()

    def options(inner: bool) -> argparse.ArgumentParser:
        # An inner subcommand's parser (`password set`, `oauth login`) must not reset what
        # was given before it: `syncd oauth -c F login X` keeps F (argparse copies every
        # default of a subparser over the namespace, so the inner ones have none).
        import argparse

        parser = _Parser(add_help=False)
        unset = argparse.SUPPRESS
        parser.add_argument(
            "-c",
            "--config",
            type=Path,
            default=unset if inner else None,
            help="config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)",
        )
        parser.add_argument(
            "-v", "--verbose", action="count", default=unset if inner else 0, help="more detail"
        )
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=unset if inner else False,
            help="only warnings and errors",
        )
        return parser

    common = options(inner=False)
    inner = options(inner=True)

    p = _Parser(
        prog="syncd",
        description="Keep local Maildir folders in two-way sync with IMAP and POP3 servers.",
    )
    p.add_argument("-V", "--version", action="version", version=f"syncd {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser(
        "run", parents=[common], help="the long-running daemon (systemd runs it as Type=notify)"
    )

    s = sub.add_parser("sync", parents=[common], help="sync every (or one) account once, then exit")
    s.add_argument("-a", "--account", help="only this account")
    s.add_argument("-f", "--folder", help="only this folder (needs --account if several)")
    s.add_argument(
        "-n", "--dry-run", action="store_true", help="show what would change; change nothing"
    )
    s.add_argument("--force", action="store_true", help="lift the mass-deletion guard for this run")

    se = sub.add_parser("send", parents=[common], help="send what is queued in the outbox now")
    se.add_argument("-a", "--account", help="only this account")
    # Listed for --help only: main() hands `sendmail` to its own sendmail-style parser.
    sub.add_parser(
        "sendmail",
        add_help=False,
        help="queue one message from stdin in the outbox (sendmail-compatible; works offline)",
    )

    st = sub.add_parser("status", parents=[common], help="what was synced when, and errors")
    st.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("check", parents=[common], help="validate the config and try every login")

    ini = sub.add_parser(
        "init",
        parents=[common],
        help="find an address's mail servers, try the login and write a config",
    )
    ini.add_argument("address", help="your email address, e.g. me@example.org")
    ini.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write the config (default: -c, $SYNCD_CONFIG or the XDG path)",
    )
    ini.add_argument("--username", help="the login name (default: the address)")
    ini.add_argument(
        "--password-command",
        metavar="CMD",
        help="a command that prints the password; goes into the config instead of the keyring",
    )
    ini.add_argument(
        "--no-keyring", action="store_true", help="do not store the password in the keyring"
    )
    ini.add_argument(
        "--name", metavar="ACCOUNT", help="account name (default: the domain's first part)"
    )
    ini.add_argument("--maildir", metavar="PATH", help="default: ~/Mail/ACCOUNT")
    ini.add_argument("--ca-file", type=Path, metavar="PEM", help="trust this CA (a private CA)")
    ini.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="per DNS query and per connection attempt (default: 10)",
    )
    ini.add_argument("--force", action="store_true", help="replace an existing config file")
    ini.add_argument(
        "--oauth2",
        choices=["google", "microsoft"],
        help="sign in with OAuth2 at this provider (found by itself for its own domains)",
    )
    ini.add_argument("--client-id", metavar="ID", help="the OAuth2 client ID (README: OAuth2)")
    ini.add_argument(
        "--client-secret", metavar="SECRET", help="the OAuth2 client secret, if it has one"
    )

    pw = sub.add_parser("password", parents=[common], help="manage secrets in the system keyring")
    pw_sub = pw.add_subparsers(dest="password_command", metavar="ACTION", parser_class=_Parser)
    pw_sub.required = True
    pws = pw_sub.add_parser("set", parents=[inner], help="store a password in the keyring")
    pws.add_argument("account")
    pws.add_argument("role", nargs="?", choices=["imap", "pop3", "smtp"], default=None)
    oa = sub.add_parser("oauth", parents=[common], help="OAuth2 sign-in (Gmail, Microsoft 365)")
    oa_sub = oa.add_subparsers(dest="oauth_command", metavar="ACTION", parser_class=_Parser)
    oa_sub.required = True
    oal = oa_sub.add_parser(
        "login",
        parents=[inner],
        help="sign in once in a browser; the refresh token goes into the keyring",
    )
    oal.add_argument("account", help="the account, as named under accounts: in the config")
    oal.add_argument(
        "--device",
        action="store_true",
        help="show a code to enter on any device instead (no browser on this machine)",
    )
    oal.add_argument(
        "--no-browser", action="store_true", help="print the URL only; do not open a browser"
    )
    oal.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the browser to come back (default: 300)",
    )
    _add_migration_commands(sub, common, _Parser)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["sendmail"]:
        # sendmail's options (-oem, -odb, -ti, -F NAME ...) are not argparse's, and this
        # path must stay fast: nothing else is imported or built.
        from syncd import sendmail

        return sendmail.main(words[1:])
    args = build_parser().parse_args(argv)
    from syncd.log import setup_logging

    # The commands print their own summary; log lines below WARNING are for -v.
    # The daemon has only its log, so it logs a line per change by default.
    base = 0 if args.command == "run" else -1
    setup_logging(-1 if args.quiet else base + args.verbose)
    handler = {
        "run": cmd_run,
        "sync": cmd_sync,
        "send": cmd_send,
        "status": cmd_status,
        "check": cmd_check,
        "password": cmd_password,
        "oauth": cmd_oauth,
        "import": cmd_import,
        "mailboxes": cmd_mailboxes,
        "completion": cmd_completion,
        "man": cmd_man,
        "init": cmd_init,
    }[args.command]
    try:
        code = handler(args)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()


def _reader_went_away() -> int:
    """stdout's reader quit early (``syncd status | head``): stop quietly, as cat does.

    Returns 141 (128 + SIGPIPE), what a shell reports for a writer stopped by a closed pipe.
    """
    # Python would report the failed flush of what is left at exit: send it nowhere.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141


def _load(args: argparse.Namespace) -> Config:
    from syncd.config import load_config

    return load_config(args.config)


def _config_or_exit(args: argparse.Namespace) -> Config | int:
    from syncd.errors import ConfigError

    try:
        return _load(args)
    except ConfigError as exc:
        print(f"syncd: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _select_accounts(cfg: Config, name: str | None) -> list[AccountConfig]:
    if name is None:
        return list(cfg.accounts)
    return [cfg.account(name)]


# -- run -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from syncd.daemon.supervisor import Supervisor

    return Supervisor(args.config).run()


# -- sync ----------------------------------------------------------------------------


class _ProgressBar:
    """A one-line progress display on a terminal; silent elsewhere."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.enabled = sys.stderr.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, folder: str, done: int, total: int) -> None:
        if not self.enabled or total < 50:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.account}/{folder} [{bar}] {done}/{total}")
        sys.stderr.flush()
        self._shown = True
        if done >= total:
            self.clear()

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False


def cmd_sync(args: argparse.Namespace) -> int:
    from syncd.errors import ConfigError, SyncdError

    cfg = _config_or_exit(args)
    if isinstance(cfg, int):
        return cfg
    try:
        accounts = _select_accounts(cfg, args.account)
    except ConfigError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.folder and len(accounts) > 1:
        print("syncd: --folder needs --account when the config has several", file=sys.stderr)
        return EXIT_USAGE
    failed = False
    for acct in accounts:
        # The outbox goes first: mail leaves as early as possible, a sync failure (IMAP
        # down, POP3 not handled here) cannot hold it back, and the Sent copy made by the
        # drain comes down in this same sync.
        if acct.smtp is not None and not args.dry_run:
            failed |= not _send_account(cfg, acct, args, force=False)
        try:
            report = _sync_one(cfg, acct, args)
        except SyncdError as exc:
            print(f"syncd: account {acct.name}: {exc}", file=sys.stderr)
            failed = True
            continue
        if report is None:
            continue
        _print_report(report, args)
        if not report.ok:
            failed = True
    return EXIT_FAILED if failed else EXIT_OK


def _sync_one(cfg: Config, acct: AccountConfig, args: argparse.Namespace) -> SyncReport | None:
    from dataclasses import replace

    from syncd.credentials import secret_for
    from syncd.engine import sync_account
    from syncd.errors import SyncdError

    if acct.imap is None:
        pop3 = acct.pop3
        if pop3 is None:
            raise SyncdError("the account has neither an imap: nor a pop3: section")
        if args.folder is not None and args.folder != pop3.folder:
            raise SyncdError(f"a POP3 account has one folder, {pop3.folder}; not {args.folder}")
        from syncd.engine.fetch import fetch_account

        pop_bar = _ProgressBar(acct.name)
        try:
            return fetch_account(
                acct,
                cfg.state_dir,
                secret_for(pop3),
                dry_run=args.dry_run,
                progress=pop_bar,
            )
        finally:
            pop_bar.clear()
    imap = acct.imap
    policy = replace(acct.policy, force=bool(args.force))
    bar = _ProgressBar(acct.name)
    try:
        return sync_account(
            acct,
            cfg.state_dir,
            secret_for(imap),
            policy=policy,
            only_folder=args.folder,
            dry_run=args.dry_run,
            progress=bar,
        )
    finally:
        bar.clear()


def _print_report(report: SyncReport, args: argparse.Namespace) -> None:
    from syncd.model import Side
    from syncd.planner import Copy, Delete, SetFlags

    for name, fr in sorted(report.folders.items()):
        if args.dry_run:
            plan = fr.planned
            parts = []
            if fr.created:
                parts.append(f"would create {fr.created}")
            if plan is not None:
                for label, kind, side in (
                    ("download", Copy, Side.LOCAL),
                    ("upload", Copy, Side.REMOTE),
                    ("flag on server", SetFlags, Side.REMOTE),
                    ("flag locally", SetFlags, Side.LOCAL),
                    ("delete on server", Delete, Side.REMOTE),
                    ("delete locally", Delete, Side.LOCAL),
                ):
                    n = plan.count(kind, side)
                    if n:
                        parts.append(f"would {label}: {n}")
                if plan.refused:
                    parts.append(f"REFUSED: {plan.refused}")
            if fr.error:
                parts.append(f"error: {fr.error}")
            if parts and not args.quiet:
                print(f"{report.account}/{name}: " + "; ".join(parts))
            continue
        if fr.error:
            print(f"{report.account}/{name}: error: {fr.error}", file=sys.stderr)
        elif fr.changed and not args.quiet:
            print(f"{report.account}/{name}: {fr.summary()}")
        for note in fr.notes:
            if not args.quiet:
                print(f"{report.account}/{name}: note: {note}")


# -- send, sendmail ------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    from syncd.errors import ConfigError

    cfg = _config_or_exit(args)
    if isinstance(cfg, int):
        return EXIT_FAILED  # CONTRACT: send exits 0 or 1
    try:
        accounts = _select_accounts(cfg, args.account)
    except ConfigError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.account is None:
        accounts = [a for a in accounts if a.smtp is not None]
        if not accounts and not args.quiet:
            print("syncd: no account has an smtp: section; nothing to send", file=sys.stderr)
    results = [_send_account(cfg, acct, args, force=True) for acct in accounts]
    return EXIT_OK if all(results) else EXIT_FAILED


def _send_account(
    cfg: Config, acct: AccountConfig, args: argparse.Namespace, *, force: bool
) -> bool:
    """Drain one account's outbox and print what happened; False when the user must act."""
    from syncd.credentials import secret_for
    from syncd.engine.send import drain
    from syncd.errors import SyncdError

    smtp, imap = acct.smtp, acct.imap
    if smtp is None:
        print(f"syncd: account {acct.name} has no smtp: section; it cannot send", file=sys.stderr)
        return False
    try:
        report = drain(
            acct,
            cfg.state_dir,
            secret_for(smtp),
            imap_secret=secret_for(imap) if imap is not None else None,
            force=force,
            lock_wait=5.0,
        )
    except SyncdError as exc:
        print(f"syncd: account {acct.name}: cannot send: {exc}", file=sys.stderr)
        return False
    name = acct.name
    if not args.quiet:
        for line in report.sent:
            print(f"{name}: sent {line}")
        if report.waiting:
            print(
                f"{name}: {report.waiting} message(s) wait for their next try "
                "(`syncd send` sends them now)"
            )
    # The engine has logged each problem with its reason (warnings and errors show even
    # with -q); one line sums them up.
    problems = []
    if report.retrying:
        problems.append(f"{len(report.retrying)} not sent yet, kept queued for a retry")
    if report.partial:
        problems.append(f"{len(report.partial)} partly refused")
    if report.failed:
        problems.append(f"{len(report.failed)} failed, kept in {acct.outbox}/failed")
    if any(not temporary for _, temporary in report.errors):
        problems.append("an error needs fixing")
    if problems:
        print(f"{name}: outbox: {'; '.join(problems)} (`syncd status` lists them)", file=sys.stderr)
    return report.ok


def _outbox_info(acct: AccountConfig, state_dir: Path) -> dict[str, object]:
    from syncd.engine.send import outbox_status
    from syncd.errors import SyncdError

    try:
        status = outbox_status(acct, state_dir)
    except SyncdError as exc:
        return {"path": str(acct.outbox), "error": str(exc)}
    return {
        "path": str(acct.outbox),
        "queued": status.queued,
        "unfinished": status.unfinished,
        "retrying": [
            {
                "message": item.key,
                "subject": item.subject,
                "attempts": item.attempts,
                "next_attempt": item.next_attempt,
                "last_error": item.last_error,
            }
            for item in status.retrying
        ],
        "failed": [{"file": str(f.path), "reason": f.reason} for f in status.failed],
    }


def _print_outbox(box: dict[str, object], live: object = None) -> None:
    if box.get("error"):
        print(f"  outbox: ERROR: {box['error']}")
        return
    retrying = box.get("retrying") or []
    failed = box.get("failed") or []
    assert isinstance(retrying, list) and isinstance(failed, list)
    parts = [f"{box['queued']} queued"]
    if retrying:
        parts.append(f"{len(retrying)} retrying")
    if box.get("unfinished"):
        parts.append(f"{box['unfinished']} sent, Sent copy pending")
    if failed:
        parts.append(f"{len(failed)} failed")
    print(f"  outbox: {', '.join(parts)}")
    # A message without a time of its own (the connection failed, not the message) is
    # tried with the daemon's next attempt at the server, or by the next `syncd send`.
    daemon_next = live.get("outbox_next_try") if isinstance(live, dict) else None
    for item in retrying:
        assert isinstance(item, dict)
        if item["next_attempt"]:
            nxt = f"next try {_when(item['next_attempt'])}"
        elif daemon_next:
            nxt = f"next try {_when(daemon_next)}"
        else:
            nxt = "no daemon running: the next `syncd send` or `syncd sync` tries it"
        print(
            f"    retrying {item['subject'] or item['message']!r} ({item['attempts']} attempts, "
            f"{nxt}): {item['last_error']}"
        )
    for item in failed:
        assert isinstance(item, dict)
        print(f"    failed {item['file']}: {item['reason']}")


# -- status --------------------------------------------------------------------------


def _when(ts: float | None) -> str:
    if not ts:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def cmd_status(args: argparse.Namespace) -> int:
    from syncd.state import State

    cfg = _config_or_exit(args)
    if isinstance(cfg, int):
        return cfg
    out: dict[str, object] = {"accounts": {}}
    accounts: dict[str, object] = {}
    for acct in cfg.accounts:
        db = cfg.state_dir / f"{acct.name}.sqlite3"
        info: dict[str, object] = {
            "kind": "imap" if acct.imap else "pop3",
            "maildir": str(acct.maildir),
            "last_sync": None,
            "last_error": None,
            "folders": {},
        }
        if db.exists():
            with State(db) as st:
                last = st.get_meta("last_sync")
                info["last_sync"] = float(last) if last else None
                info["last_error"] = st.get_meta("last_error")
                folders: dict[str, object] = {}
                for name, fs in sorted(st.folders().items()):
                    folders[name] = {
                        "messages": st.count_pairs(name),
                        "remote_messages": fs.messages,
                        "local_messages": fs.local_count,
                        "last_sync": fs.last_sync,
                        "last_error": fs.last_error,
                    }
                info["folders"] = folders
                poll = st.get_meta("pop3_last_poll")
                if poll:
                    try:
                        info["pop3"] = json.loads(poll)
                    except ValueError:
                        info["pop3"] = None
        if acct.smtp is not None:
            info["outbox"] = _outbox_info(acct, cfg.state_dir)
        accounts[acct.name] = info
    out["accounts"] = accounts
    from syncd.daemon.status import read_status_file

    live = read_status_file(cfg.state_dir)
    out["daemon"] = live
    if live is not None:
        for name, entry in accounts.items():
            assert isinstance(entry, dict)
            entry["live"] = live.get("accounts", {}).get(name)
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return EXIT_OK
    if live is None:
        print("daemon: not running")
    else:
        print(
            f"daemon: running (pid {live['pid']}, since {_when(live['started'])}): {live['status']}"
        )
    for name, raw in accounts.items():
        assert isinstance(raw, dict)
        print(f"{name} ({raw['kind']}, {raw['maildir']})")
        lv = raw.get("live")
        if isinstance(lv, dict):
            line = f"  now: {lv['state']}"
            if lv.get("next_retry"):
                line += f", next try {_when(lv['next_retry'])}"
            if lv.get("pending"):
                line += f", pending: {', '.join(lv['pending'])}"
            idle = lv.get("idle") or {}
            if idle:
                up = [f for f, ok in idle.items() if ok]
                line += f", IDLE on {len(up)}/{len(idle)} folders"
            if lv.get("no_idle"):
                line += (
                    f", no IDLE on the server: polling every {lv.get('poll_interval')} s "
                    f"({', '.join(lv['no_idle'])})"
                )
            print(line)
            if lv.get("last_error"):
                print(f"  error now: {lv['last_error']}")
        print(f"  last sync: {_when(raw['last_sync'])}")
        if raw["last_error"]:
            print(f"  last error: {raw['last_error']}")
        folders = raw["folders"]
        assert isinstance(folders, dict)
        pop = raw.get("pop3")
        if isinstance(pop, dict):
            line = (
                f"  last poll: {pop.get('server_messages')} on the server, "
                f"{pop.get('downloaded')} downloaded into {pop.get('folder')}, "
                f"{pop.get('deleted')} deleted on the server"
            )
            if pop.get("too_big"):
                line += f", {pop['too_big']} skipped as larger than max_size"
            print(line)
            for note in pop.get("notes") or []:
                print(f"    note: {note}")
        elif not folders:
            print("  no folder synced yet")
        width = max((len(f) for f in folders), default=0)
        for fname, f in folders.items():
            assert isinstance(f, dict)
            line = (
                f"  {fname:<{width}}  {f['messages']:>7} messages  synced {_when(f['last_sync'])}"
            )
            if f["last_error"]:
                line += f"  ERROR: {f['last_error']}"
            print(line)
        if isinstance(raw.get("outbox"), dict):
            _print_outbox(raw["outbox"], raw.get("live"))
    return EXIT_OK


# -- check ---------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from syncd.credentials import secret_for
    from syncd.drivers.probe import probe
    from syncd.errors import SyncdError

    cfg = _config_or_exit(args)
    if isinstance(cfg, int):
        return cfg
    print(f"config {cfg.path}: OK, {len(cfg.accounts)} account(s)")
    bad = False
    for acct in cfg.accounts:
        for server in acct.servers:
            user = f"{server.username}@" if server.username else ""
            label = f"{acct.name}/{server.role} {user}{server.host}:{server.port}"
            try:
                detail = probe(server, secret_for(server))
            except SyncdError as exc:
                print(f"{label}: FAILED: {exc}")
                bad = True
                continue
            print(f"{label}: OK{', ' + detail if detail else ''}")
        if acct.oauth2 is not None:
            print(_oauth_check_line(acct.name, acct.oauth2))
    return EXIT_FAILED if bad else EXIT_OK


def _oauth_check_line(account: str, oauth2: OAuth2Config) -> str:
    """Where the account's OAuth2 grant is kept and when its access token ends (never a token)."""
    from syncd import oauth

    where, obtained, left = oauth.token_status(oauth2)
    line = f"{account}/oauth2 ({oauth2.provider.value}, client {oauth2.client_id}): refresh token "
    line += f"in {where}"
    if not obtained:
        return line + "; no access token obtained"
    if left is None:
        return line + "; the provider did not say when the access token expires"
    until = time.strftime("%H:%M:%S", time.localtime(time.time() + left))
    return line + f"; the access token expires at {until} (in {max(0, round(left))} s)"


# -- init ----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    """``syncd init ADDRESS``: find the servers, try the login, write the config.

    0 when the config was written; 1 when nothing was found, a login failed or the file
    exists (the draft or the account's block is printed then); 2 for bad arguments.
    """
    import getpass

    from syncd import setup

    try:
        request = setup.make_request(
            args.address,
            output=args.output or args.config,
            username=args.username,
            name=args.name,
            maildir=args.maildir,
            password_command=args.password_command,
            no_keyring=args.no_keyring,
            ca_file=args.ca_file,
            force=args.force,
            timeout=args.timeout,
            oauth2=args.oauth2,
            client_id=args.client_id,
            client_secret=args.client_secret,
        )
    except ValueError as exc:
        print(f"syncd: init: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def ask_secret() -> str:
        if sys.stdin.isatty():
            try:
                return getpass.getpass(f"Password for {request.username}: ")
            except EOFError:  # Ctrl-D
                return ""
        print(f"Reading the password for {request.username} from standard input.")
        return sys.stdin.readline().rstrip("\r\n")

    result = setup.run_init(
        request, ask_secret=ask_secret, say=lambda line: print(line, flush=True)
    )
    if result.ok:
        print("Next steps:")
        width = max(len(command) for command, _ in result.next_steps)
        for command, what in result.next_steps:
            print(f"  {command:<{width}}  # {what}")
        return EXIT_OK
    if result.block is not None:
        print(f"\nThe account to add under accounts: in {request.output}:\n")
        print(result.block, end="")
    elif result.draft is not None:
        print(f"\nThe config for {request.output}, to save once the problem is fixed:\n")
        print(result.draft, end="")
    for line in (result.problem or "failed").splitlines():
        print(f"syncd: init: {line}", file=sys.stderr)
    return EXIT_FAILED


# -- password ------------------------------------------------------------------------


def cmd_password(args: argparse.Namespace) -> int:
    import getpass

    from syncd.credentials import set_secret
    from syncd.errors import ConfigError, CredentialError

    role = args.role
    cfg = None
    try:
        cfg = _load(args)
    except ConfigError:
        cfg = None
    if role is None:
        if cfg is None:
            print("syncd: name the role (imap, pop3 or smtp)", file=sys.stderr)
            return EXIT_USAGE
        try:
            acct = cfg.account(args.account)
        except ConfigError as exc:
            print(f"syncd: {exc}", file=sys.stderr)
            return EXIT_USAGE
        role = "imap" if acct.imap else "pop3"
    if sys.stdin.isatty():
        secret = getpass.getpass(f"Password for {args.account}/{role}: ")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        print("syncd: empty password; nothing stored", file=sys.stderr)
        return EXIT_FAILED
    try:
        set_secret(args.account, role, secret)
    except CredentialError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"stored the {role} password of {args.account} in the keyring (service syncd)")
    return EXIT_OK


# -- oauth ---------------------------------------------------------------------------


def cmd_oauth(args: argparse.Namespace) -> int:
    """``syncd oauth login ACCOUNT``: 0 stored, 1 the sign-in failed, 2 bad config or usage."""
    from syncd import oauth
    from syncd.errors import ConfigError, SyncdError

    cfg = _config_or_exit(args)
    if isinstance(cfg, int):
        return cfg
    try:
        acct = cfg.account(args.account)
    except ConfigError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if acct.oauth2 is None:
        print(
            f"syncd: account {acct.name} has no oauth2: block; add one (provider, client_id) "
            "and set auth: xoauth2 in its server sections (see the README, OAuth2)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        result = oauth.login(
            acct.oauth2,
            device=args.device,
            say=lambda line: print(line, flush=True),
            open_browser=not args.no_browser,
            timeout=args.timeout,
        )
    except SyncdError as exc:
        print(f"syncd: oauth login {acct.name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"Signed in. The refresh token of {acct.name} is in {result.where}.")
    print(f"Check the logins with: syncd check{_config_flag(args)}")
    _wake_daemon(cfg)
    return EXIT_OK


def _config_flag(args: argparse.Namespace) -> str:
    import shlex

    return f" -c {shlex.quote(str(args.config))}" if args.config else ""


def _wake_daemon(cfg: Config) -> None:
    """A running daemon waits long after a refused login: tell it to try again now."""
    import signal

    from syncd.daemon.status import read_status_file

    live = read_status_file(cfg.state_dir)
    if live is None:
        return
    with contextlib.suppress(OSError):
        os.kill(int(live["pid"]), signal.SIGUSR1)
        print(f"Told the running daemon (pid {live['pid']}) to log in again now.")


# -- import, mailboxes, completion, man ------------------------------------------------

# Kept here rather than imported, so building the parser stays cheap; tests check that
# they match syncd.mailboxes.FORMATS and syncd.docgen.SHELLS.
_MAILBOX_FORMATS = ("mutt", "neomutt", "aerc", "list")
_SHELLS = ("bash", "zsh", "fish")
_IMPORT_SOURCES = (
    ("mbsync", "an mbsync (isync) config", "~/.mbsyncrc, else $XDG_CONFIG_HOME/isyncrc"),
    (
        "offlineimap",
        "an OfflineIMAP config",
        "~/.offlineimaprc, else $XDG_CONFIG_HOME/offlineimap/config",
    ),
    (
        "msmtp",
        "the SMTP accounts of an msmtp config",
        "~/.msmtprc, else $XDG_CONFIG_HOME/msmtp/config",
    ),
)


def _add_migration_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    _Parser: type[argparse.ArgumentParser],
) -> None:
    from pathlib import Path

    imp = sub.add_parser(
        "import", help="turn an mbsync, OfflineIMAP or msmtp config into a syncd config"
    )
    imp.set_defaults(verbose=0, quiet=False)
    imp_sub = imp.add_subparsers(dest="import_kind", metavar="PROGRAM", parser_class=_Parser)
    imp_sub.required = True
    for kind, what, default in _IMPORT_SOURCES:
        ip = imp_sub.add_parser(kind, help=f"import {what}; the original is never changed")
        ip.set_defaults(verbose=0, quiet=False)
        ip.add_argument(
            "path", nargs="?", type=Path, metavar="FILE", help=f"the config (default: {default})"
        )
        ip.add_argument(
            "-o",
            "--output",
            type=Path,
            metavar="FILE",
            help="write the syncd config to FILE (mode 0600) instead of standard output",
        )
        ip.add_argument("--force", action="store_true", help="replace an existing output file")
        if kind == "msmtp":
            ip.add_argument(
                "--merge",
                type=Path,
                metavar="CONFIG",
                help="add each smtp: section to the account of this syncd config that sends "
                "as its from address; the result goes to -o (CONFIG is not changed)",
            )

    mb = sub.add_parser(
        "mailboxes", parents=[common], help="print the local folders for mutt, neomutt or aerc"
    )
    mb.add_argument("-a", "--account", help="only this account")
    mb.add_argument(
        "--format",
        choices=_MAILBOX_FORMATS,
        default="mutt",
        help="the reader's syntax; list: one directory per line (default: mutt)",
    )

    co = sub.add_parser("completion", help="print the shell completion script")
    co.set_defaults(verbose=0, quiet=False)
    co.add_argument("shell", choices=_SHELLS, help="the shell")
    mn = sub.add_parser("man", help="print the man page (view it with: syncd man | man -l -)")
    mn.set_defaults(verbose=0, quiet=False)


def cmd_import(args: argparse.Namespace) -> int:
    """``syncd import PROGRAM [FILE]``: 0 when a config was produced, 1 otherwise."""
    import logging

    from syncd.config import parse_config
    from syncd.errors import ConfigError
    from syncd.importers import IssueKind, SourceError, run_import, run_merge, write_output

    kind = args.import_kind
    merge = getattr(args, "merge", None)
    try:
        if merge is not None:
            source, result = run_merge(args.path, merge)
        else:
            source, result = run_import(kind, args.path)
    except SourceError as exc:
        print(f"syncd: import: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for issue in result.issues:
        print(issue, file=sys.stderr)
    if result.text is None:
        print(f"syncd: import: nothing could be imported from {source}", file=sys.stderr)
        return EXIT_FAILED
    config_log = logging.getLogger("syncd.config")
    level = config_log.level
    config_log.setLevel(logging.ERROR)  # its literal-password warning is in the issues already
    try:
        parse_config(result.text, args.output)
    except ConfigError as exc:
        print(f"syncd: import: the result is not a valid config (a bug): {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        config_log.setLevel(level)
    if args.output is not None:
        protect = [source] + ([merge] if merge is not None else [])
        try:
            write_output(args.output, result.text, force=args.force, protect=protect)
        except SourceError as exc:
            print(f"syncd: import: {exc}", file=sys.stderr)
            return EXIT_FAILED
    else:
        print(result.text, end="")
    untranslated = sum(1 for i in result.issues if i.kind is IssueKind.UNTRANSLATED)
    verb = "merged smtp: into" if merge is not None else "imported"
    where = f"; wrote {args.output}" if args.output is not None else ""
    names = ", ".join(result.accounts)
    print(
        f"syncd: {verb} {len(result.accounts)} account(s) ({names}) from {source}{where}; "
        f"{untranslated} construct(s) not translated (listed above)",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_mailboxes(args: argparse.Namespace) -> int:
    """``syncd mailboxes``: the local folder list in a mail reader's syntax."""
    from syncd.drivers.maildir import MaildirStore
    from syncd.errors import ConfigError, SyncdError
    from syncd.mailboxes import MailboxAccount, render

    cfg = _config_or_exit(args)
    if isinstance(cfg, int):
        return cfg
    try:
        accounts = _select_accounts(cfg, args.account)
    except ConfigError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    found: list[MailboxAccount] = []
    for acct in accounts:
        store = MaildirStore(acct.maildir, acct.layout, exclude=[acct.outbox])
        try:
            names = store.list_folders()
        except SyncdError as exc:
            print(f"syncd: account {acct.name}: {exc}", file=sys.stderr)
            names = []
        found.append(MailboxAccount(acct.name, acct.maildir, store.layout, tuple(names)))
    print(render(found, args.format), end="")
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    from syncd.docgen import completion

    print(completion(build_parser(), args.shell), end="")
    return EXIT_OK


def cmd_man(args: argparse.Namespace) -> int:
    from syncd import sendmail
    from syncd.docgen import man_page

    text = man_page(
        build_parser(), version=__version__, usage_overrides={"sendmail": sendmail.USAGE}
    )
    print(text, end="")
    return EXIT_OK
