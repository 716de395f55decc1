"""Hostile and broken input, end to end through ``syncd sync`` against the real Dovecot.

Server side: a huge folder (memory stays bounded), a 50 MB message (byte-exact both ways),
folder names with every special character Dovecot accepts, a folder recreated under the
same UIDVALIDITY (HIGHESTMODSEQ and UIDNEXT go backwards), an INBOX that suddenly reads
empty. Local side: files in a Maildir that are not messages. Each is synced correctly, or
skipped with a clear warning; none is uploaded as garbage, none crashes the run.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening import REPO, Result, Rig, lf, message
from tests.servers.dovecot import Dovecot, User
from tests.servers.smtpd import Smtpd

pytestmark = pytest.mark.dovecot


# Linux counts the memory of the process a child was forked from in the child's
# ru_maxrss (the pre-exec copy), so a large pytest process would inflate the figure. A
# small Python in between forks syncd from itself and reports its children's peak.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def run_measured(rig: Rig, *args: str) -> tuple[Result, int]:
    """``syncd`` as a child process; its result and its own peak RSS in bytes."""
    rig.write_config()
    out_path, err_path = rig.root / "out.txt", rig.root / "err.txt"
    rss_path = rig.root / "rss.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _MEASURE,
                str(rss_path),
                sys.executable,
                "-m",
                "syncd",
                args[0],
                "-c",
                str(rig.config),
                *args[1:],
            ],
            stdout=out,
            stderr=err,
            cwd=REPO,
            check=False,
        )
    result = Result(proc.returncode, out_path.read_text(), err_path.read_text())
    return result, int(rss_path.read_text()) * 1024


# -- server side ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_huge_folder_syncs_in_bounded_memory(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    n = 20_000  # 100 000 works the same way, only slower (see the Guarantees in README)
    tiny = [
        (f"Subject: m{i}\r\nMessage-ID: <t{i}@example.org>\r\n\r\nx\r\n".encode(), ())
        for i in range(n)
    ]
    dovecot.fill(mail_user, {"INBOX": tiny}, chunk_messages=5000)
    rig = Rig(dovecot, mail_user, tmp_path, timeout=60)
    r, rss = run_measured(rig, "sync")
    assert r.code == 0, r.text
    assert rss < 150 * 1024 * 1024, f"peak RSS {rss / 2**20:.0f} MB"
    files = [p for sub in ("new", "cur") for p in (rig.folder_path() / sub).iterdir()]
    assert len(files) == n
    assert len({p.read_bytes() for p in files[:: n // 100]}) == len(files[:: n // 100])
    r, _ = run_measured(rig, "sync")  # nothing to do, and quickly
    assert r.code == 0 and r.out == "", r.text


@pytest.mark.slow
def test_a_50_mb_message_round_trips_byte_exact(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&()*+,-./:;<=>\r\n"
    body = line * (50 * 1024 * 1024 // len(line))
    down = b"Subject: big down\r\nMessage-ID: <big1@example.org>\r\n\r\n" + body
    dovecot.append(mail_user, "INBOX", down)
    rig = Rig(dovecot, mail_user, tmp_path, timeout=60)
    rig.ok("sync")
    (got,) = [p.read_bytes() for p in (rig.folder_path() / "new").iterdir()]
    assert got == lf(down)
    del got
    # Upload: a 50 MB file written locally reaches the server as its exact CRLF form.
    up = b"Subject: big up\nMessage-ID: <big2@example.org>\n\n" + lf(body) + b"\xff\xfe tail\n"
    del body
    box = rig.maildir / "Big"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "cur" / "1700000000.M1P1.local:2,S").write_bytes(up)
    rig.ok("sync")
    ((served, _flags),) = dovecot.messages(mail_user, "Big").values()
    assert served == up.replace(b"\n", b"\r\n")
    assert lf(served) == up  # and back: a fixed point


SERVER_NAMES = [
    "a b",
    "%",
    "*",
    "&",
    "a&b",
    '"quote"',
    "back\\slash",
    "ü",
    "日本",
    "-dash",
    "#hash",
    "[br]",
    "x.y",
    "a:b",
    "Ärger/Sub",
]
LOCAL_NAMES = [
    "L a b",
    "L%",
    "L*",
    "L&",
    "L&-x",
    '"Lq"',
    "L\\s",
    "Lü",
    "L日本",
    "-L",
    "L#",
    "L[1]",
    "L:c",
    "Lx.y",
    "Lp/Kid",
]


def test_folder_names_with_special_characters_sync_both_ways(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    """Every name here is accepted by Dovecot; ``~x``, control characters and the Maildir
    words ``new``/``cur``/``tmp`` are refused by Dovecot itself. A server name syncd cannot
    store locally (``.dot``: hidden in a verbatim Maildir) is reported, and the rest syncs."""
    with dovecot.imap(mail_user) as c:
        for i, name in enumerate([*SERVER_NAMES, ".dot"]):
            if "/" in name:
                c.create_folder(name.split("/")[0])
            c.create_folder(name)  # not fill(): its folder_exists() treats * and % as patterns
            c.append(name, message(i))
    rig = Rig(dovecot, mail_user, tmp_path)
    r = rig.run("sync")
    assert r.code == 1 and "Traceback" not in r.text, r.text
    assert "'.dot' cannot be stored" in r.err, r.err
    for i, name in enumerate(SERVER_NAMES):
        assert rig.local_bag(name) == Counter([lf(message(i))]), name
    # And back up: a new file in each of those, and whole new folders made locally.
    for i, name in enumerate(SERVER_NAMES):
        (rig.folder_path(name) / "cur" / "1700000000.M1P1.local:2,S").write_bytes(
            lf(message(100 + i))
        )
    for i, name in enumerate(LOCAL_NAMES):
        path = rig.folder_path(name)
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        (path / "cur" / "1700000000.M1P1.local:2,S").write_bytes(lf(message(200 + i)))
    r = rig.run("sync")
    assert r.code == 1 and "'.dot'" in r.err and "Traceback" not in r.text
    for i, name in enumerate(SERVER_NAMES):
        expected = Counter([lf(message(i)), lf(message(100 + i))])
        assert rig.remote_bag(name) == expected == rig.local_bag(name), name
    for i, name in enumerate(LOCAL_NAMES):
        assert rig.remote_bag(name) == Counter([lf(message(200 + i))]), name
    assert rig.remote_bag(".dot") == Counter([lf(message(len(SERVER_NAMES)))])  # untouched


@pytest.mark.parametrize("same_uidvalidity", [False, True])
def test_folder_recreated_with_counters_going_backwards_converges(
    dovecot: Dovecot, mail_user: User, tmp_path: Path, same_uidvalidity: bool
) -> None:
    old = [message(i) for i in range(5)]
    dovecot.fill(mail_user, {"F": [(r, ()) for r in old]})
    with dovecot.imap(mail_user) as c:
        c.select_folder("F")
        for _ in range(5):  # push HIGHESTMODSEQ up, so that it can fall
            c.add_flags([1, 2, 3], [b"\\Flagged"])
            c.remove_flags([1, 2, 3], [b"\\Flagged"])
        before = c.folder_status("F", ["UIDVALIDITY", "HIGHESTMODSEQ"])
    rig = Rig(dovecot, mail_user, tmp_path)
    rig.ok("sync")
    with dovecot.imap(mail_user) as c:
        c.delete_folder("F")
        c.create_folder("F")
    if same_uidvalidity:
        dovecot.set_uidvalidity(mail_user, "F", int(before[b"UIDVALIDITY"]))
    new = [message(100 + i) for i in range(3)]  # UIDs 1..3 again, other messages
    dovecot.fill(mail_user, {"F": [(r, ()) for r in new]})
    with dovecot.imap(mail_user) as c:
        after = c.folder_status("F", ["UIDVALIDITY", "HIGHESTMODSEQ"])
    assert after[b"HIGHESTMODSEQ"] < before[b"HIGHESTMODSEQ"]
    assert (after[b"UIDVALIDITY"] == before[b"UIDVALIDITY"]) is same_uidvalidity
    r = rig.ok("sync")
    assert "re-matched" in r.out, r.out
    # Nothing is lost: what the server no longer has is uploaded again (nothing is deleted
    # on a belief the server broke), what it has now comes down; each exactly once.
    expected = Counter(lf(m) for m in old + new)
    assert rig.remote_bag("F") == expected
    assert rig.local_bag("F") == expected
    # A later local deletion must remove that message, not whatever now has its old UID.
    victim = next(p for p in (rig.folder_path("F") / "new").iterdir())
    gone = victim.read_bytes()
    victim.unlink()
    rig.ok("sync")
    assert rig.remote_bag("F") == expected - Counter([gone])


def test_inbox_that_suddenly_reads_empty_is_left_alone(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    raws = [message(i) for i in range(25)]
    dovecot.fill(mail_user, {"INBOX": [(r, ()) for r in raws]})
    rig = Rig(dovecot, mail_user, tmp_path)
    rig.ok("sync")
    with dovecot.imap(mail_user) as c:
        c.select_folder("INBOX")
        c.delete_messages(c.search())
        c.expunge()
    for _ in range(2):  # refused every time, not only once
        r = rig.run("sync")
        assert r.code == 1, r.text
        assert "Traceback" not in r.text
        assert "INBOX" in r.err and "--force" in r.err, r.err
        assert rig.local_bag() == Counter(lf(m) for m in raws)
    rig.ok("sync", "--force")
    assert rig.local_bag() == Counter()


# -- local side ----------------------------------------------------------------------------


def test_junk_in_the_maildir_is_skipped_never_uploaded(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    dovecot.fill(mail_user, {"INBOX": [(message(1), ())]})
    rig = Rig(dovecot, mail_user, tmp_path)
    rig.ok("sync")
    cur, new = rig.folder_path() / "cur", rig.folder_path() / "new"
    junk = {
        "100.empty:2,S": b"",
        "101.random:2,S": bytes(range(256)) * 8,
        "102.png:2,": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(200),
        "108.blank:2,S": b"  \n\n \n",
        "109.text:2,S": b"just some notes, not a mail\nsecond line\n",
    }
    for name, data in junk.items():
        (cur / name).write_bytes(data)
    (cur / "103.dir:2,S").mkdir()
    outside = tmp_path / "outside.eml"
    outside.write_bytes(lf(message(50)))
    (cur / "104.link:2,S").symlink_to(outside)
    good = {
        "105.noinfo": lf(message(51)),  # no ":2," at all
        "106.unknown:2,SZa": lf(message(52)),  # unknown letters: kept, not lost
        "107.dup:2,S": lf(message(54)),  # same key as new/107.dup: this one wins
    }
    for name, data in good.items():
        (cur / name).write_bytes(data)
    (new / "107.dup").write_bytes(lf(message(53)))
    notmp = rig.maildir / "NoTmp"
    for sub in ("cur", "new"):
        (notmp / sub).mkdir(parents=True)
    (notmp / "cur" / "1.M1P1.x:2,S").write_bytes(lf(message(56)))

    r = rig.run("sync")
    assert r.code == 0, r.text
    assert "Traceback" not in r.text
    for needle in (
        "ignoring empty file",
        "101.random:2,S does not start with a header field",
        "102.png:2, does not start with a header field",
        "109.text:2,S does not start with a header field",
        "108.blank:2,S is empty",
        "ignoring directory",
        "ignoring symlink",
        "same key as",
    ):
        assert needle in r.err, f"no warning {needle!r}:\n{r.err}"
    expected = Counter([lf(message(1)), *good.values()])
    assert rig.remote_bag() == expected, "only real messages reach the server"
    assert rig.remote_bag("NoTmp") == Counter([lf(message(56))])
    # The junk is still there, untouched; the outside file was never followed or changed.
    for name, data in junk.items():
        assert (cur / name).read_bytes() == data
    assert (new / "107.dup").read_bytes() == lf(message(53))
    assert outside.read_bytes() == lf(message(50))
    assert (cur / "106.unknown:2,SZa").exists()
    # Mail arriving for the folder without tmp/ is delivered (tmp/ is made, with a warning).
    dovecot.fill(mail_user, {"NoTmp": [(message(57), ())]})
    r = rig.ok("sync")
    assert "tmp was missing; creating it" in r.err
    assert rig.local_bag("NoTmp") == rig.remote_bag("NoTmp")
    assert rig.run("sync").code == 0  # and the next run is as calm


def _run_as_nobody(rig: Rig, *args: str) -> Result:
    """``rig.run`` in a forked child that became ``nobody`` (chmod does not stop root).

    A fork, not a new interpreter: the venv's Python may live where nobody cannot read.
    Everything the run needs is imported already (the caller synced once in-process).
    """
    import encodings.ascii
    import encodings.latin_1  # noqa: F401  # codecs load lazily; nobody may not read them

    result = rig.root / "result.json"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(grp.getgrnam("nogroup").gr_gid)
            os.setuid(pwd.getpwnam("nobody").pw_uid)
            r = rig.run(*args, write=False)
            result.write_text(json.dumps([r.code, r.out, r.err]))
        except BaseException:
            result.write_text(json.dumps([99, "", traceback.format_exc()]))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    code, out, err = json.loads(result.read_text())
    return Result(code, out, err)


def test_an_unreadable_file_is_skipped_with_a_warning(
    dovecot: Dovecot, mail_user: User, tmp_path: Path
) -> None:
    dovecot.fill(mail_user, {"INBOX": [(message(1), ())]})
    rig = Rig(dovecot, mail_user, tmp_path / "acct")
    rig.ok("sync")
    cur = rig.folder_path() / "cur"
    secret = cur / "200.private:2,S"
    secret.write_bytes(lf(message(60)))
    (cur / "201.fine:2,S").write_bytes(lf(message(61)))
    secret.chmod(0o000)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody").pw_uid
        for path in [rig.root, *rig.root.rglob("*")]:
            os.lchown(path, nobody, -1)
        os.chown(secret, 0, 0)  # the one file nobody may not read
        for parent in rig.root.parents:  # let nobody reach its files (search bit only)
            if not parent.stat().st_mode & 0o001:
                parent.chmod(parent.stat().st_mode | 0o001)
        r = _run_as_nobody(rig, "sync")
    else:
        r = rig.run("sync", write=False)
    assert r.code in (0, 1), r.text
    assert "Traceback" not in r.text, r.text
    assert "unreadable" in r.err and "200.private" in r.err, r.err
    assert rig.remote_bag() == Counter([lf(message(1)), lf(message(61))])
    secret.chmod(0o600)
    assert secret.read_bytes() == lf(message(60))


# -- the outbox ----------------------------------------------------------------------------


@pytest.fixture
def smtpd() -> Iterator[Smtpd]:
    with Smtpd(tls="none") as server:
        yield server


@pytest.fixture
def box(tmp_path: Path, smtpd: Smtpd) -> Rig:
    nobody = User("unused", "unused", tmp_path / "unused")
    return Rig(
        None,  # type: ignore[arg-type]  # send and sendmail never reach the POP3 server
        nobody,
        tmp_path,
        kind="pop3",
        port=1,
        smtp_port=smtpd.port,
        smtp_user=smtpd.user,
        smtp_password=smtpd.password,
    )


def _mail(to: str, subject: str, extra: str = "") -> bytes:
    return (
        f"From: me@example.org\nTo: {to}\nSubject: {subject}\n{extra}"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\n\nbody of {subject}\n"
    ).encode()


@pytest.mark.smtp
def test_hostile_outbox_input_fails_with_a_reason_or_goes_exactly_where_meant(
    box: Rig, smtpd: Smtpd
) -> None:
    # Refused at the door (exit 75, nothing queued): a line break inside an argument
    # would otherwise become a second recipient, or a second SMTP command.
    for args in (
        ["a@x.org\r\nRCPT TO:<evil@y.org>"],
        ["a@x.org\nevil@y.org"],
        ["-f", "me@example.org\r\nRCPT TO:<evil@y.org>", "a@x.org"],
    ):
        r = box.run("sendmail", *args, stdin=_mail("a@x.org", "refused"))
        assert r.code == 75 and "NOT queued" in r.err, (args, r.text)
    queued = {
        "empty": (b"", None),
        "binary": (bytes(range(256)) * 4, None),
        "not rfc 5322": (b"hello bob,\nthis is not a mail\n", None),
        "bare cr in To": (b"From: me@example.org\nTo: a@x.org\rBcc: evil@y.org\n\nhi\n", None),
        "line as field": (
            b"From: me@example.org\nTo: <a@x.org\r\nRCPT TO:evil@y.org>\nSubject: x\n\nhi\n",
            None,
        ),
        "folded": (_mail("a@x.org,\r\n b@x.org", "folded"), ("a@x.org", "b@x.org")),
        "encoded": (
            _mail("=?utf-8?q?a=40x.org=0D=0ABcc=3A_evil=40y.org?= <c@x.org>", "encoded"),
            ("c@x.org",),
        ),
        "bcc": (_mail("d@x.org", "bcc", "Bcc: e@x.org\n"), ("d@x.org", "e@x.org")),
    }
    for raw, _ in queued.values():
        assert box.run("sendmail", "-t", stdin=raw).code == 0
    r = box.run("send")
    assert r.code == 1, r.text  # some failed for good: the user must act
    assert "Traceback" not in r.text
    got = {m.rcpt_tos: m for m in smtpd.messages()}
    assert sorted(got) == sorted(rcpts for _, rcpts in queued.values() if rcpts), got.keys()
    assert b"e@x.org" not in got[("d@x.org", "e@x.org")].data  # Bcc stripped
    failed = sorted((box.outbox / "failed").glob("*.error"))
    assert len(failed) == sum(1 for _, rcpts in queued.values() if rcpts is None)
    for error in failed:
        assert error.read_text().startswith("Not sent: "), error.read_text()
        assert error.with_suffix("").exists()  # the message itself is kept beside it
    reasons = " ".join(e.read_text() for e in failed)
    for words in ("empty (0 bytes)", "not a message", "line break or control character"):
        assert words in reasons
    assert [p for d in ("new", "cur") for p in (box.outbox / d).iterdir()] == []
    assert "evil@y.org" not in " ".join(a for m in smtpd.messages() for a in m.rcpt_tos)


@pytest.mark.smtp
@pytest.mark.slow
def test_a_30_mb_outbox_message_is_sent_byte_exact(box: Rig, smtpd: Smtpd) -> None:
    box.timeout = 60
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 .dot at end.\n"
    raw = (
        _mail("big@x.org", "big", "Date: Mon, 02 Mar 2026 10:00:00 +0000\n")
        + b".leading dot line\n"
        + line * (30 * 1024 * 1024 // len(line))
    )
    box.ok("sendmail", "-t", stdin=raw)
    box.ok("send")
    (m,) = smtpd.messages()
    assert m.rcpt_tos == ("big@x.org",)
    assert m.data == raw.replace(b"\n", b"\r\n")
    (copy,) = [p.read_bytes() for p in (box.maildir / "Sent" / "cur").iterdir()]
    assert copy == raw
