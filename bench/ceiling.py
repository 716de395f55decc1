"""The server's ceiling: one ``UID FETCH 1:* BODY.PEEK[]`` per folder, read and thrown away.

    python -m bench.ceiling HOST PORT USER PASSWORD

A minimal imaplib client, no parsing beyond what imaplib does and nothing written to disk: no
sync tool can download the mailbox faster than this from the same server.  Prints the bytes and
messages received and the seconds spent after the interpreter started, as JSON.
"""

from __future__ import annotations

import imaplib
import json
import re
import sys
import time


def main(argv: list[str]) -> int:
    host, port, user, password = argv
    t0 = time.perf_counter()
    imap = imaplib.IMAP4(host, int(port))
    imap.login(user, password)
    _, listing = imap.list()
    folders = []
    for line in listing:
        m = re.match(rb'\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$', line or b"")
        if m is None or b"\\Noselect" in m["flags"]:
            continue
        folders.append(m["name"].decode())
    n = size = 0
    for folder in folders:
        typ, data = imap.select(folder, readonly=True)
        if typ != "OK" or int(data[0] or 0) == 0:
            continue
        typ, rows = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
        for row in rows:
            if isinstance(row, tuple):
                n += 1
                size += len(row[1])
        del rows
    imap.logout()
    print(json.dumps({"messages": n, "bytes": size, "seconds": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
