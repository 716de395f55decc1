"""The outbox's light writing half (syncd.drivers.enqueue), which `syncd sendmail` imports alone."""

from __future__ import annotations

import subprocess
import sys
from email.utils import getaddresses, parseaddr

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
