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
