"""syncd's benchmark against mbsync, OfflineIMAP, getmail6, fetchmail and msmtp (issue 5).

    python -m bench [--messages N] [--folders N] [--reps N] [--only 1,2,...] [--scale 1000,10000]
    python -m bench --quick          # a smoke run: ~1000 messages, one repetition

Modules: ``scenarios`` (what is run), ``anchors`` (how each tool is configured), ``server``
(the private Dovecot and its cloned users), ``measure`` (process timing, rusage, the counting
proxy), ``verify`` (did the tool get it right), ``ceiling`` (the raw-fetch client), ``results``
and ``report`` (statistics, RESULTS.md, results.json).
"""
