"""The state database opened by several processes at once."""

from __future__ import annotations

import multiprocessing

from syncd.state import SCHEMA_VERSION, State


def _open(path: str, barrier) -> None:
    barrier.wait()
    with State(__import__("pathlib").Path(path)) as st:
        st.set_meta("who", "x")


def test_two_processes_creating_the_database_at_once(tmp_path):
    # The daemon's first sync and a `syncd status` can open a new database together;
    # both must end with the full schema and neither may fail on "table exists", nor on
    # "database is locked" from the switch to WAL (SQLite answers BUSY without waiting).
    for round_ in range(5):
        path = tmp_path / f"acct{round_}.sqlite3"
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open, args=(str(path), barrier)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        with State(path) as st:
            assert st.get_meta("who") == "x"
            version = st.db.execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION


def test_pair_counts_follow_every_write(tmp_path):
    """count_pairs reads a kept count: inserts, replacements, drops and clears keep it exact,
    also on a database written before the count existed."""
    import sqlite3

    from syncd.model import Flag, LocalKey, Pair, Uid
    from syncd.state import State

    path = tmp_path / "a.sqlite3"
    with State(path) as st:
        st.put_pairs(
            "INBOX", [Pair(Uid(u), LocalKey(f"k{u}"), Flag.parse(""), None) for u in range(1, 6)]
        )
    db = sqlite3.connect(path)  # as a syncd before the count: no triggers, no table
    db.executescript(
        "DROP TRIGGER pairs_counted_ins; DROP TRIGGER pairs_counted_del; DROP TABLE pair_counts;"
    )
    db.execute("INSERT INTO pairs VALUES ('Archive', 1, 'a1', '', NULL)")
    db.commit()
    db.close()
    with State(path) as st:
        assert (st.count_pairs("INBOX"), st.count_pairs("Archive"), st.count_pairs("Sent")) == (
            5,
            1,
            0,
        )
        # The same UIDs again (a replace) and one new one.
        st.put_pairs(
            "INBOX", [Pair(Uid(u), LocalKey(f"k{u}"), Flag.parse("S"), None) for u in (1, 2, 6)]
        )
        assert st.count_pairs("INBOX") == 6
        st.drop_pairs("INBOX", [Uid(1), Uid(99)])
        assert st.count_pairs("INBOX") == 5
        st.clear_pairs("Archive")
        assert st.count_pairs("Archive") == 0
        assert st.count_pairs("INBOX") == len(st.pairs("INBOX"))
        st.recount_pairs("INBOX", 3)
        assert st.count_pairs("INBOX") == 3
