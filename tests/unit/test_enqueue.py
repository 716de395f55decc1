"""The outbox's light writing half (syncd.drivers.enqueue), which `syncd sendmail` imports alone."""

from __future__ import annotations

import os
import subprocess
import sys
from email.utils import getaddresses, parseaddr
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from syncd.configfile import sender_key
from syncd.drivers.enqueue import parse_addresses, simple_address

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
atom = st.text(ATEXT, min_size=1, max_size=6)
dot_atom = st.lists(atom, min_size=1, max_size=3).map(".".join)
domain = st.lists(st.text("abZ09-", min_size=1, max_size=5), min_size=1, max_size=3).map(".".join)
addr_spec = st.builds(lambda local, dom: f"{local}@{dom}", dot_atom, domain)
space = st.sampled_from(["", " ", "\t", "  "])
named = st.builds(
    lambda words, sep, a, pre, post: f"{pre}{sep.join(words)} <{a}>{post}",
    st.lists(atom, min_size=1, max_size=3),
    st.sampled_from([" ", "  ", "\t"]),
    addr_spec,
    space,
    space,
)
bare = st.builds(lambda pre, a, post: f"{pre}{a}{post}", space, addr_spec, space)
# Also near misses: what the shortcut must leave to getaddresses.
noise = st.text("ab@.<> ,;:\"()[]\\\tx'", max_size=14)


@given(st.lists(st.one_of(bare, named, noise), max_size=4))
@example(["undisclosed-recipients:;"])
@example(["a@b", ""])
@example(['"Bob, Jr." <bob@example.org>'])
@example(["Bob (home) <bob@example.org>"])
@example(["a..b@example.org", "a@b..c"])
def test_addresses_read_as_getaddresses_reads_them(values: list[str]) -> None:
    assert parse_addresses(values) == [a for _, a in getaddresses(values)]


@given(st.one_of(bare, named))
def test_simple_shapes_are_recognised(value: str) -> None:
    assert simple_address(value) == parseaddr(value)[1]
    assert sender_key(value) == parseaddr(value)[1].casefold()


@given(st.one_of(bare, named, noise))
def test_sender_key_as_parseaddr(value: str) -> None:
    assert sender_key(value) == (parseaddr(value)[1].casefold() or value.strip().casefold())


def test_the_writer_imports_only_the_standard_librarys_light_modules() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"  # a development install's import hook loads pathlib
        "import syncd.drivers.enqueue, syncd.configfile\n"
        "heavy = sorted(m for m in ('pathlib', 'typing', 'dataclasses', 'logging', 'email', "
        "'socket', 'syncd.model') if m in set(sys.modules) - before)\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_sendmail_with_unchanged_config_imports_none_of_the_heavy_standard_library(
    tmp_path: Path,
) -> None:
    """What keeps `syncd sendmail` under 50 ms a call (bench scenario 9): once the config's
    notes are kept, a call loads none of these (each costs milliseconds at start)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""accounts:
  a:
    maildir: {tmp_path}/Mail
    from: [me@example.org]
    pop3: {{host: 127.0.0.1, port: 1, tls: none, username: u, password_command: echo x}}
    smtp: {{host: 127.0.0.1, port: 1, tls: none, username: u, password_command: echo x}}
"""
    )
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"  # a development install's import hook loads pathlib
        "from syncd import cli\n"
        f"rc = cli.main(['sendmail', '-c', {str(config)!r}, '-oi', '--', 'Bob <bob@x.org>'])\n"
        "heavy = sorted(m for m in ('pathlib', 'typing', 'dataclasses', 'logging', 'email', "
        "'socket', 'argparse', 'yaml', 'syncd.config', 'syncd.model', 'syncd.drivers.outbox') "
        "if m in set(sys.modules) - before)\n"
        "print(rc, heavy)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    raw = b"From: Me <me@example.org>\nTo: Bob <bob@x.org>\nSubject: s\n\nbody\n"
    outs = [
        subprocess.run(
            [sys.executable, "-c", code], input=raw, capture_output=True, env=env, check=True
        ).stdout.decode()
        for _ in range(2)
    ]
    assert outs[0].startswith("0 ") and "syncd.config" in outs[0]  # parsed, notes kept
    assert outs[1].strip() == "0 []"
    queued = sorted((tmp_path / "Mail" / ".outbox" / "new").iterdir())
    assert [p.read_bytes() for p in queued] == [raw, raw]
