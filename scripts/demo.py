"""syncd demo: a private Dovecot full of sample mail, one `syncd sync`, and what came out.

Run through ``scripts/demo`` (which sets up Dovecot and the venv first):

    scripts/demo            # start from scratch, sync, show the result, stop the server
    scripts/demo --keep     # leave the server running to play with syncd further;
                            # prints its ports, its config for doveadm -c, how to deliver
                            # mail by LMTP, and how to stop it and start it again later

Everything lives in ./demo (or --dir DIR; removed at the start of every run):

    demo/server/    the Dovecot (config, log, server-side mail)
    demo/Mail/      syncd's local Maildir folders
    demo/state/     syncd's state
    demo/config.yaml, demo/password
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.servers.corpus import make_corpus  # noqa: E402
from tests.servers.dovecot import Dovecot, DovecotError, find_binaries  # noqa: E402

DEMO = REPO / "demo"
"""The default of --dir."""
FOLDERS = ["INBOX", "Sent", "Archive", "Lists/python", "Ärger"]


def rel(path: Path) -> str:
    """``path`` as typed from the repository root (./demo/...)."""
    try:
        return "./" + str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def stop_previous(server_dir: Path) -> None:
    """Stop a server left running by ``--keep`` last time (by its recorded pid), or
    started again from its config since (``dovecot -c``)."""
    conf = server_dir / "dovecot.conf"
    if conf.exists():
        _dovecot, doveadm = find_binaries()
        subprocess.run(
            [doveadm, "-c", str(conf), "stop"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    pid_file = server_dir / "dovecot.pid"
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"dovecot" not in cmdline or str(server_dir).encode() not in cmdline:
        return  # the pid was reused by something else
    print(f"stopping the demo server left running before (pid {pid})")
    os.killpg(pid, signal.SIGTERM)
    for _ in range(200):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.025)


def write_config(demo: Path, server: Dovecot, username: str, password: str) -> Path:
    password_file = demo / "password"
    password_file.touch(mode=0o600)
    password_file.chmod(0o600)
    password_file.write_text(password + "\n")
    # JSON strings are YAML strings: quoting for free, whatever the path.
    q = json.dumps
    config = demo / "config.yaml"
    config.write_text(
        f"""\
# Written by scripts/demo: syncd against a private Dovecot on 127.0.0.1.
state_dir: {q(str(demo / "state"))}
accounts:
  demo:
    maildir: {q(str(demo / "Mail"))}
    imap:
      host: {server.host}
      port: {server.imap_port}
      tls: none
      username: {q(username)}
      password_command: {q("cat " + shlex.quote(str(password_file)))}
"""
    )
    return config


def count_local(root: Path) -> dict[str, int]:
    """Messages per local Maildir folder (cur/ + new/), folder names relative to ``root``."""
    counts: dict[str, int] = {}
    if not root.is_dir():
        return counts
    for cur in sorted(root.rglob("cur")):
        folder = cur.parent
        if not (folder / "new").is_dir():
            continue
        name = folder.relative_to(root).as_posix()
        if name.startswith(".outbox"):
            continue
        counts[name] = sum(1 for _ in cur.iterdir()) + sum(1 for _ in (folder / "new").iterdir())
    return counts


def print_keep(demo: Path, server: Dovecot, username: str, syncd: Path, config: Path) -> None:
    """What a user needs to play with the server left running: every command runs as
    printed from the repository root (lines starting with "$ ")."""
    dovecot, doveadm = find_binaries()
    conf = rel(server.conf_path)
    lmtp = (
        f"{shlex.quote(sys.executable)} -c 'import smtplib, sys; "
        f'smtplib.LMTP("{server.host}", {server.lmtp_port}).sendmail('
        f'"me@example.org", ["{username}"], sys.stdin.buffer.read())\' < message.eml'
    )
    print(
        f"""
Dovecot keeps running (pid {server.pid}; log {rel(server.log_path)}):
  IMAP {server.host}:{server.imap_port}, POP3 {server.host}:{server.pop3_port}, \
LMTP {server.host}:{server.lmtp_port}
  user {username}, password in {rel(demo / "password")}
  Dovecot's config, for doveadm -c: {conf}

Sync again:
  $ {rel(syncd)} sync -c {rel(config)}
See the server's side:
  $ {doveadm} -c {conf} mailbox status -u {username} messages '*'
Deliver new mail by LMTP, as a mail server would (message.eml: headers, blank line,
body; send to {username}+Archive to deliver into Archive):
  $ {lmtp}
Stop the server:
  $ {doveadm} -c {conf} stop
Start it again later, with the same mail and ports:
  $ {dovecot} -c {conf}
(scripts/demo again stops it and starts from scratch.)"""
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the Dovecot server running")
    parser.add_argument("--messages", type=int, default=300, help="sample messages (300)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the sample mail")
    parser.add_argument(
        "--dir", type=Path, default=DEMO, help="where everything goes (./demo); emptied first"
    )
    args = parser.parse_args(argv)
    demo = args.dir.resolve()
    os.chdir(REPO)

    server_dir = demo / "server"
    stop_previous(server_dir)
    shutil.rmtree(demo, ignore_errors=True)
    demo.mkdir(parents=True)

    t0 = time.monotonic()
    server = Dovecot(server_dir, die_with_parent=not args.keep)
    try:
        server.start()
    except DovecotError as exc:
        print(f"could not start Dovecot: {exc}", file=sys.stderr)
        return 1
    keep_running = False
    try:
        print(
            f"Dovecot is up on {server.host}: IMAP port {server.imap_port}, POP3 port "
            f"{server.pop3_port} ({time.monotonic() - t0:.2f} s)"
        )
        user = server.add_user("demo")
        corpus = make_corpus(args.messages, FOLDERS, seed=args.seed, big_share=0.01)
        t0 = time.monotonic()
        server.fill(user, corpus)
        size = sum(len(raw) for messages in corpus.values() for raw, _ in messages)
        print(
            f"loaded {args.messages} sample messages ({size / 1e6:.1f} MB) into "
            f"{len(FOLDERS)} folders for user {user.name!r} ({time.monotonic() - t0:.2f} s)"
        )

        config = write_config(demo, server, user.name, user.password)
        syncd = REPO / ".venv" / "bin" / "syncd"
        if not syncd.exists():
            print(f"{rel(syncd)} is missing: run scripts/setup-env", file=sys.stderr)
            return 1
        cmd = [str(syncd), "sync", "-c", rel(config)]
        print(f"\n$ {' '.join([rel(syncd), *cmd[1:]])}", flush=True)
        t0 = time.monotonic()
        code = subprocess.run(cmd, cwd=REPO, check=False).returncode
        took = time.monotonic() - t0
        print(f"(exit status {code}, {took:.2f} s)\n")

        local = count_local(demo / "Mail")
        width = max(len(f) for f in [*FOLDERS, *local])
        print(f"{'folder':<{width}}  server  local")
        ok = code == 0
        for folder in [*FOLDERS, *sorted(set(local) - set(FOLDERS))]:
            remote = len(corpus.get(folder, []))
            here = local.get(folder, 0)
            mark = "" if remote == here else "   <- differs"
            ok = ok and remote == here
            print(f"{folder:<{width}}  {remote:>6}  {here:>5}{mark}")
        print()
        if ok:
            print("All messages are in the local Maildir. Have a look:")
        else:
            print("The sync did not bring everything over (see above). What is there:")
        print(f"  mutt -f {rel(demo / 'Mail' / 'INBOX')}")
        print(f"  {rel(syncd)} status -c {rel(config)}")
        if args.keep:
            keep_running = True
            print_keep(demo, server, user.name, syncd, config)
        return 0 if ok else 1
    finally:
        if not keep_running:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
