"""``folder_selected`` and ``plan_folders``: which folders are synced, created, gone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.planner import FolderPlan, folder_selected, plan_folders

SELECTED = [
    # (name, patterns, selected)
    ("INBOX", ["*"], True),
    ("Lists/python", ["*"], True),  # "*" crosses "/"
    ("Lists/python", ["Lists/*"], True),
    ("Lists", ["Lists/*"], False),
    ("Lists/python/3.12", ["Lists/*"], True),
    ("Lists/python", ["*", "!Lists/*"], False),
    ("Lists", ["*", "!Lists/*"], True),
    ("Lists/python", ["*", "!Lists"], True),  # excluding a parent is not excluding its children
    ("Trash", ["*", "!Trash"], False),
    ("Trash", ["!Trash", "*"], False),  # an exclusion wins wherever it stands
    ("Trashcan", ["*", "!Trash"], True),  # globs match the whole name
    ("Sent", ["INBOX", "Sent"], True),
    ("Drafts", ["INBOX", "Sent"], False),
    ("Sent", [], False),  # no pattern, nothing selected
    ("Sent", ["!Trash"], False),  # exclusions alone select nothing
    ("sent", ["Sent"], False),  # names other than INBOX are case-sensitive
    ("Archive/2023", ["Archive/202?"], True),
    ("Archive/2019", ["Archive/202?"], False),
    ("Ärger", ["*"], True),
    ("Ärger", ["*", "!Ä*"], False),
    # Patterns are shell globs: a literal "[" is written "[[]".
    ("[Gmail]/All Mail", ["*", "![Gmail]/All Mail"], False),
    ("[Gmail]/Sent Mail", ["*", "![Gmail]/All Mail"], True),
    ("[Gmail]/Sent Mail", ["[Gmail]/*"], True),
    # INBOX is case-insensitive, in names and in patterns, as in IMAP.
    ("INBOX", ["INBOX"], True),
    ("Inbox", ["INBOX"], True),
    ("inbox", ["INBOX"], True),
    ("INBOX", ["inbox"], True),
    ("INBOX", ["Inbox"], True),
    ("INBOX", ["*", "!inbox"], False),
    ("Inbox", ["*", "!INBOX"], False),
    ("INBOX", ["I*"], True),
    ("INBOX/sub", ["INBOX/*"], True),
    ("INBOX", ["INBOX/*"], False),
    ("INBOXES", ["INBOX"], False),
]


@pytest.mark.parametrize(("name", "patterns", "selected"), SELECTED)
def test_folder_selected(name: str, patterns: list[str], selected: bool) -> None:
    assert folder_selected(name, patterns) is selected


def test_plan_folders_cases() -> None:
    plan = plan_folders(
        remote=["INBOX", "Sent", "Remote-new", "Gone-locally", "Trash", "Lists/python"],
        local=["INBOX", "Sent", "Local-new", "Gone-remotely", "Trash", "Lists"],
        known=["INBOX", "Sent", "Gone-locally", "Gone-remotely", "Gone-both", "Trash"],
        patterns=["*", "!Trash"],
    )
    assert plan == FolderPlan(
        sync=("INBOX", "Sent"),
        create_local=("Lists/python", "Remote-new"),
        create_remote=("Lists", "Local-new"),
        gone_remote=("Gone-remotely",),
        gone_local=("Gone-locally",),
        forget=("Gone-both",),
    )


def test_new_folder_is_created_never_reported_gone() -> None:
    """A folder on one side only is "gone" only when it was synced before."""
    plan = plan_folders(remote=["A"], local=["B"], known=[], patterns=["*"])
    assert plan.create_local == ("A",)
    assert plan.create_remote == ("B",)
    assert plan.gone_local == plan.gone_remote == ()
    plan = plan_folders(remote=["A"], local=["B"], known=["A", "B"], patterns=["*"])
    assert plan.create_local == plan.create_remote == ()
    assert plan.gone_local == ("A",)
    assert plan.gone_remote == ("B",)


def test_unselected_folders_are_left_alone() -> None:
    """A folder outside the patterns is neither created, nor reported gone, nor forgotten,
    even when it was synced before the patterns changed."""
    plan = plan_folders(
        remote=["Spam", "Old"],
        local=["Spam"],
        known=["Spam", "Old", "Older"],
        patterns=["*", "!Spam", "!Old*"],
    )
    assert plan == FolderPlan((), (), (), (), (), ())


def test_inbox_selected_by_any_case_pattern() -> None:
    plan = plan_folders(remote=["INBOX"], local=["INBOX"], known=[], patterns=["inbox"])
    assert plan.sync == ("INBOX",)


# -- properties ------------------------------------------------------------------------

names_st = st.sets(st.sampled_from(["INBOX", "Sent", "Trash", "Lists", "Lists/python", "A", "B"]))
patterns_st = st.lists(
    st.sampled_from(["*", "INBOX", "Lists/*", "!Trash", "!Lists/*", "S*", "!A", "inbox"]),
    max_size=4,
)


@given(names_st, names_st, names_st, patterns_st)
def test_plan_folders_properties(
    remote: set[str], local: set[str], known: set[str], patterns: list[str]
) -> None:
    plan = plan_folders(sorted(remote), sorted(local), sorted(known), patterns)
    groups = [
        plan.sync,
        plan.create_local,
        plan.create_remote,
        plan.gone_remote,
        plan.gone_local,
        plan.forget,
    ]
    named = [n for g in groups for n in g]
    assert len(named) == len(set(named)), "a folder in two groups"
    selected = {n for n in remote | local | known if folder_selected(n, patterns)}
    assert set(named) == selected
    assert set(plan.sync) == selected & remote & local
    assert set(plan.create_local) == (selected & remote) - local - known
    assert set(plan.create_remote) == (selected & local) - remote - known
    assert set(plan.gone_local) == (selected & remote & known) - local
    assert set(plan.gone_remote) == (selected & local & known) - remote
    assert set(plan.forget) == (selected & known) - remote - local
    for g in groups:
        assert list(g) == sorted(g)

    swapped = plan_folders(sorted(local), sorted(remote), sorted(known), patterns)
    assert swapped == FolderPlan(
        plan.sync,
        plan.create_remote,
        plan.create_local,
        plan.gone_local,
        plan.gone_remote,
        plan.forget,
    )


def test_brackets_are_literal_so_gmail_folders_can_be_named():
    from syncd.planner import folder_selected

    patterns = ["*", "![Gmail]/All Mail"]
    assert not folder_selected("[Gmail]/All Mail", patterns)
    assert folder_selected("[Gmail]/Sent Mail", patterns)
    assert folder_selected("G", patterns)  # "[Gmail]" is not a character class
    assert folder_selected("[Gmail]/Starred", ["[Gmail]/*"])
    assert not folder_selected("Gmail/Starred", ["[Gmail]/*"])
