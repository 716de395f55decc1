"""``syncd mailboxes``: the local folders in the syntax of a mail reader's config.

Like OfflineIMAP's mbnames, but printed on demand, so a reader can read it at start-up:
``source "syncd mailboxes --format mutt|"`` in a muttrc runs it each time mutt starts.
Pure: the caller lists the folders (``MaildirStore.list_folders``) and this module only
turns names, layout and Maildir root into text.

* ``mutt``: ``mailboxes "+INBOX" "+Lists/python"``, names relative to ``$folder`` (which
  must be the account's Maildir root) for one account; full paths for several accounts,
  since one ``$folder`` cannot cover them all.
* ``neomutt``: ``named-mailboxes`` with the folder name as the label (``account/folder``
  for several accounts).
* ``aerc``: the ``source``, ``folders`` and ``default`` lines of an ``accounts.conf``
  section; aerc names folders as syncd does in both layouts (``Lists/python``).
* ``list``: one directory per line, for scripts (``notmuch``, ``find``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

__all__ = ["FORMATS", "MailboxAccount", "folder_path", "render"]

FORMATS: Final = ("mutt", "neomutt", "aerc", "list")
_INBOX: Final = "INBOX"


@dataclass(frozen=True, slots=True)
class MailboxAccount:
    """One account's local folders, as :func:`render` needs them."""

    name: str
    root: PurePath
    """The account's Maildir root, absolute."""
    layout: str
    """``verbatim`` or ``maildir++``."""
    folders: tuple[str, ...]
    """Folder names with ``/`` between levels, as ``MaildirStore.list_folders`` gives them."""


def _relative(layout: str, name: str) -> str:
    """Where folder ``name`` lives below the root ("" for the root itself)."""
    if layout == "maildir++":
        return "" if name == _INBOX else "." + name.replace("/", ".")
    return name


def folder_path(root: PurePath, layout: str, name: str) -> PurePath:
    """The directory of folder ``name`` in a Maildir of this layout."""
    relative = _relative(layout, name)
    return root / relative if relative else root


def _mutt_quote(text: str) -> str:
    # Inside double quotes mutt expands $VAR and `command`; both must stay literal here.
    escaped = text
    for char in ("\\", '"', "$", "`"):
        escaped = escaped.replace(char, "\\" + char)
    return f'"{escaped}"'


def _ordered(folders: Sequence[str]) -> list[str]:
    """INBOX first (readers open the first mailbox), the rest in name order."""
    return sorted(folders, key=lambda f: (f != _INBOX, f))


def _mutt(accounts: Sequence[MailboxAccount], neomutt: bool) -> list[str]:
    lines: list[str] = []
    single = len(accounts) == 1
    command = "named-mailboxes" if neomutt else "mailboxes"
    for account in accounts:
        folders = _ordered(account.folders)
        if single:
            lines.append(
                f"# syncd account {account.name}: names relative to "
                f'$folder, so: set folder = "{account.root}"'
            )
        else:
            lines.append(f"# syncd account {account.name} ({account.root})")
        if not folders:
            lines.append("# (no local folders yet: run `syncd sync` first)")
            continue
        words: list[str] = []
        for name in folders:
            if single:
                path = "+" + _relative(account.layout, name)
            else:
                path = str(folder_path(account.root, account.layout, name))
            if neomutt:
                label = name if single else f"{account.name}/{name}"
                words.append(_mutt_quote(label))
            words.append(_mutt_quote(path))
        lines.append(f"{command} " + " ".join(words))
    return lines


def _aerc(accounts: Sequence[MailboxAccount]) -> list[str]:
    lines: list[str] = []
    for i, account in enumerate(accounts):
        if i:
            lines.append("")
        scheme = "maildirpp" if account.layout == "maildir++" else "maildir"
        lines.append(f"# syncd account {account.name}: in its [section] of aerc's accounts.conf")
        lines.append(f"source = {scheme}://{account.root}")
        folders = _ordered(account.folders)
        usable = [f for f in folders if "," not in f]
        left_out = [f for f in folders if "," in f]
        if left_out:
            lines.append("# left out, as aerc's list is comma-separated: " + "; ".join(left_out))
        if usable:
            lines.append("folders = " + ",".join(usable))
            lines.append(f"default = {_INBOX if _INBOX in usable else usable[0]}")
        else:
            lines.append("# (no local folders yet: run `syncd sync` first)")
    return lines


def render(accounts: Sequence[MailboxAccount], fmt: str) -> str:
    """The folder list of ``accounts`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt in ("mutt", "neomutt"):
        lines = _mutt(accounts, neomutt=fmt == "neomutt")
    elif fmt == "aerc":
        lines = _aerc(accounts)
    elif fmt == "list":
        lines = [
            str(folder_path(account.root, account.layout, name))
            for account in accounts
            for name in _ordered(account.folders)
        ]
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return "".join(line + "\n" for line in lines)
