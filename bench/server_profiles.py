"""Resync cost per server profile: bytes from the server for a no-op and an incremental resync.

    .venv/bin/python -m bench.server_profiles [N]      # N messages in INBOX (10 000)

One private Dovecot per profile of tests/servers/profiles.py, behind the same capability
guard as the test suite, which counts the bytes the server sends. For each profile: an
initial sync of N tiny messages, then a no-op resync, then an incremental one after
another client changed one message's flags, delivered one message and expunged one.
Prints a Markdown table. The README's "Servers" table takes its numbers from
``bench.server_profiles_mbsync``, which runs mbsync beside syncd on the same relay.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.conftest import Account
from tests.servers.corpus import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.profiles import PROFILES, ProfileServer


def _measure(server: ProfileServer, root: Path, n: int) -> tuple[int, float, int, float]:
    user = server.add_user()
    rng = random.Random(1)
    # Straight into the user's Maildir (Dovecot indexes it at the first SELECT): the
    # poorer profiles have no MULTIAPPEND for fill().
    for sub in ("cur", "new", "tmp"):
        (user.maildir / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        raw = make_message(rng, i, size_class="tiny").replace(b"\r\n", b"\n")
        (user.maildir / "cur" / f"{1700000000 + i}.M{i}P1.bench:2,").write_bytes(raw)
    for path in [user.maildir, *user.maildir.rglob("*")]:
        os.chown(path, server.mail_uid, server.mail_gid)
    acct = Account(server, user, root)
    root.mkdir()
    acct.sync()
    guard = server.guard

    def timed() -> tuple[int, float]:
        before, t0 = guard.bytes_to_client, time.perf_counter()
        acct.sync()
        return guard.bytes_to_client - before, time.perf_counter() - t0

    noop = timed()
    with server.imap(user) as c:
        c.select_folder("INBOX")
        uids = sorted(c.search("ALL"))
        c.add_flags([uids[n // 2]], [b"\\Flagged"])
        c.delete_messages([uids[n // 3]])
        c._imap.uid("EXPUNGE", str(uids[n // 3]))
    server.append(user, "INBOX", make_message(rng, n + 1, size_class="tiny"))
    incr = timed()
    return noop[0], noop[1], incr[0], incr[1]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-profiles-") as tmp:
        for name, profile in PROFILES.items():
            with Dovecot(Path(tmp) / name, imap_capability=profile.capability) as dovecot:
                server = ProfileServer(dovecot, profile)
                try:
                    rows.append((name, *_measure(server, Path(tmp) / f"{name}-acct", n)))
                finally:
                    server.close()
    print(f"| profile | no-op resync, {n} messages | incremental resync |")
    print("| --- | --- | --- |")
    for name, nb, nt, ib, it in rows:
        print(f"| {name} | {nb / 1000:.1f} kB, {nt:.2f} s | {ib / 1000:.1f} kB, {it:.2f} s |")


if __name__ == "__main__":
    main()
