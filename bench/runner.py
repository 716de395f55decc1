"""The launcher of ``runner.c`` in Python, for machines without a C compiler.

    python -S runner.py OUTFILE COMMAND [ARG...]

Same protocol.  Its own image (~8 MB) becomes the floor of every measured peak RSS, which the
report states; the C launcher's floor is about 1 MB.
"""

import os
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    with open(out, "w") as f:
        f.write(f"{wall:.6f} {ru.ru_utime:.6f} {ru.ru_stime:.6f} {ru.ru_maxrss} {status}\n")
    return os.waitstatus_to_exitcode(status) % 256


if __name__ == "__main__":
    sys.exit(main())
