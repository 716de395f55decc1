"""syncd: keeps a local Maildir in two-way sync with IMAP and POP3 servers."""

__version__ = "0.1.0"
