"""The benchmark's Dovecot: one template user filled once, cheap identical clones for each run.

Filling 265 MB through MULTIAPPEND for every tool and repetition would cost more than the runs
themselves, so the corpus goes in once (into a template user) and each run gets a fresh user whose
server-side Maildir is a copy of the template's: message files are hard links (Dovecot never
rewrites a message file, it only renames or unlinks it, which leaves the template's link alone),
Dovecot's index, uidlist and list files are real copies.  The clone is made before the user first
logs in, so Dovecot simply finds a mailbox with the same UIDs, flags and UIDVALIDITY.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.measure import ServerCpu
from tests.servers.dovecot import Dovecot, User

Corpus = Mapping[str, Sequence[tuple[bytes, Sequence[bytes]]]]


class BenchServer:
    def __init__(self, base: Path, imap_capability: str | None = None) -> None:
        # imap_capability: what Dovecot advertises (a server profile, bench.server_profiles_mbsync).
        self.dovecot = Dovecot(base / "dovecot", fsync=False, imap_capability=imap_capability)
        self.template: User | None = None
        self.cpu = ServerCpu(None)

    def __enter__(self) -> BenchServer:
        self.dovecot.start()
        self.cpu = ServerCpu(self.dovecot.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.dovecot.stop()

    @property
    def host(self) -> str:
        return self.dovecot.host

    def load(self, corpus: Corpus) -> float:
        """Fill the template user with ``corpus``; returns the seconds it took."""
        t0 = time.perf_counter()
        self.template = self.dovecot.add_user()
        self.dovecot.fill(self.template, corpus)
        self.cpu.idle()  # the loading session has written its indexes and exited
        return time.perf_counter() - t0

    def clone(self) -> User:
        """A fresh user holding exactly what the template holds."""
        assert self.template is not None, "load() first"
        user = self.dovecot.add_user()
        src, dst = self.template.maildir, user.maildir
        uid, gid = self.dovecot.mail_uid, self.dovecot.mail_gid
        for root, _dirs, files in os.walk(src):
            rel = Path(root).relative_to(src)
            target = dst / rel
            target.mkdir(parents=True, exist_ok=True)
            os.chown(target, uid, gid)
            in_msgs = rel.name in ("cur", "new")
            for name in files:
                s, d = Path(root) / name, target / name
                if in_msgs:
                    os.link(s, d)
                else:
                    shutil.copy2(s, d)
                    os.chown(d, uid, gid)
        # Directory times last, as Dovecot recorded them: it then has no reason to rescan.
        for root, _dirs, _files in os.walk(src, topdown=False):
            shutil.copystat(root, dst / Path(root).relative_to(src))
        return user
