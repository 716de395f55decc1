"""syncd import: mbsync, OfflineIMAP and msmtp configs in, a valid syncd config and a list of
what could not be translated out. Includes the example configs the Debian packages ship."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from syncd import cli
from syncd.config import Config, Layout, SecretKind, TlsMode, parse_config
from syncd.importers import (
    ImportResult,
    IssueKind,
    SourceError,
    account_name,
    default_sources,
    find_source,
    mbsync,
    msmtp,
    offlineimap,
    run_import,
    shell_path,
    write_output,
)
from syncd.importers.yamlout import Map, dump, scalar
from syncd.model import fingerprint
from tests.integration.conftest import Result
from tests.servers import servers_required

HOME = "/home/me"
CWD = "/home/me/work"


@pytest.fixture(autouse=True)
def _home(monkeypatch):
    """``~`` in the imported configs is the HOME the translations were given."""
    monkeypatch.setenv("HOME", HOME)


def config_of(result: ImportResult) -> Config:
    assert result.text is not None, [str(i) for i in result.issues]
    return parse_config(result.text, Path(CWD) / "imported.yaml")


def issues(result: ImportResult, kind: IssueKind | None = None) -> list[str]:
    return [str(i) for i in result.issues if kind is None or i.kind is kind]


def one_issue(result: ImportResult, needle: str) -> str:
    found = [text for text in issues(result) if needle in text]
    assert len(found) == 1, (needle, issues(result))
    return found[0]


def run(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def _installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and "install ok installed" in done.stdout


def debian_example(package: str, path: str) -> str:
    """The example config a Debian package ships (gzipped or not); skip when absent."""
    plain, packed = Path(path), Path(path + ".gz")
    if plain.is_file():
        return plain.read_text(encoding="utf-8")
    if packed.is_file():
        return gzip.decompress(packed.read_bytes()).decode("utf-8")
    reason = f"{path}[.gz] is not there"
    if _installed(package):
        if servers_required():
            pytest.fail(f"{reason}, though {package} is installed", pytrace=False)
        pytest.skip(f"{reason}, though {package} is installed (its docs were left out?)")
    pytest.skip(f"{reason}: install {package} to test against its example config")


def mb(text: str) -> ImportResult:
    return mbsync.translate(textwrap.dedent(text), source="rc", home=HOME, cwd=CWD)


def oi(text: str, **kwargs: object) -> ImportResult:
    return offlineimap.translate(
        textwrap.dedent(text),
        source="rc",
        home=HOME,
        cwd=CWD,
        **kwargs,  # type: ignore[arg-type]
    )


def ms(text: str) -> ImportResult:
    return msmtp.translate(textwrap.dedent(text), source="rc", home=HOME, cwd=CWD)


# -- the YAML writer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["INBOX", "yes", "no", "on", "null", "~", "0755", "1e3", "2024-01-01", "*", "!Trash",
     "[Gmail]/All Mail", "a: b", "x #y", "", " lead", "trail ", "it's", 'say "hi"', "tab\there",
     "Ärger", "%done", "@home", "-1", "cat ~/pw", "pass show mail/x"],
)  # fmt: skip
def test_scalars_read_back_as_written(value):
    import yaml

    assert yaml.safe_load(f"k: {scalar(value)}")["k"] == value
    assert yaml.safe_load(f"k: [{scalar(value, flow=True)}]")["k"] == [value]


def test_plain_where_plain_is_safe():
    assert scalar("INBOX") == "INBOX"
    assert scalar("~/Mail/work") == "~/Mail/work"
    assert scalar("yes") == '"yes"'
    assert scalar(True) == "true"
    assert scalar(993) == "993"


def test_dump_is_commented_and_deterministic():
    doc = Map()
    inner = doc.child("accounts").child("a", above=["about a"])
    inner.add("maildir", "~/Mail", "where mail is")
    inner.add("folders", ["*", "!Spam"])
    inner.add("long", "x", "y" * 120)
    text = dump(doc, ["header"])
    assert text == dump(doc, ["header"])
    assert text.startswith("# header\n\naccounts:\n  # about a\n  a:\n")
    assert "    maildir: ~/Mail  # where mail is\n" in text
    assert '    folders: ["*", "!Spam"]\n' in text
    assert "    # yyyy" in text  # a comment too long for the line goes above it


# -- mbsync ----------------------------------------------------------------------------------


def test_mbsync_arguments_follow_its_quoting_rules():
    assert mbsync.split_args('PassCmd "+gpg -d \\"my pw\\".gpg"') == (
        ["PassCmd", '+gpg -d "my pw".gpg'],
        False,
        None,
    )
    assert mbsync.split_args('Far :remote:"[Gmail]/Sent Mail"  # c') == (
        ["Far", ":remote:[Gmail]/Sent Mail"],
        True,
        None,
    )
    assert mbsync.split_args("Path C:\\\\Mail") == (["Path", "C:\\Mail"], False, None)
    assert mbsync.split_args('Pass "open') == (["Pass"], False, "missing closing quote")
    assert mbsync.split_args("   # only a comment") == ([], True, None)


def test_mbsync_sections_end_at_blank_lines_not_comments():
    rc, problems = mbsync.parse("Expunge Both\n\nIMAPAccount a\nHost h\n# note\nUser u\n\nUser x\n")
    assert not problems
    assert [d.text for d in rc.globals] == ["Expunge Both", "User x"]
    assert [d.key for d in rc.sections[0].body] == ["Host", "User"]


GMAIL_RC = """\
    # Gmail, the way the Arch wiki writes it
    IMAPAccount gmail
    Host imap.gmail.com
    User me@gmail.com
    PassCmd "+pass show mail/gmail"
    TLSType IMAPS
    CertificateFile /etc/ssl/certs/ca-certificates.crt

    IMAPStore gmail-remote
    Account gmail

    MaildirStore gmail-local
    Subfolders Verbatim
    Path ~/Mail/gmail/
    Inbox ~/Mail/gmail/INBOX

    Channel gmail
    Far :gmail-remote:
    Near :gmail-local:
    Patterns * !"[Gmail]/Spam"
    Create Both
    Expunge Both
    SyncState *
    """


def test_mbsync_gmail_account():
    result = mb(GMAIL_RC)
    cfg = config_of(result)
    (acct,) = cfg.accounts
    assert acct.name == "gmail"
    assert acct.maildir == Path(HOME, "Mail/gmail")
    assert acct.layout is Layout.VERBATIM
    imap = acct.imap
    assert imap is not None
    assert (imap.host, imap.port, imap.tls) == ("imap.gmail.com", 993, TlsMode.IMPLICIT)
    assert imap.username == "me@gmail.com"
    assert imap.secret.kind is SecretKind.COMMAND
    assert imap.secret.command == "pass show mail/gmail"  # without mbsync's "+" TTY mark
    assert imap.ca_file == Path("/etc/ssl/certs/ca-certificates.crt")
    assert imap.folders == ("*", "![Gmail]/Spam", "![Gmail]/All Mail")
    assert imap.special_folders is None  # mbsync used the server's names
    assert "maildir: ~/Mail/gmail" in (result.text or "")
    assert one_issue(result, "Expunge Both").startswith("not translated: line 22: `Expunge Both`")
    assert one_issue(result, "SyncState").startswith("not translated: line 23:")
    assert not any("Create" in text for text in issues(result))  # Create Both is syncd's way


def test_mbsync_maildirpp_store_and_legacy_tls():
    result = mb(
        """\
        IMAPStore work
        Host imaps:mail.example.com
        Port 10993
        User joe
        Pass s3cret!

        MaildirStore local
        SubFolders Maildir++
        Inbox ~/Maildir

        Channel work
        Master :work:
        Slave :local:
        Patterns %
        """
    )
    (acct,) = config_of(result).accounts
    imap = acct.imap
    assert imap is not None
    assert acct.layout is Layout.MAILDIRPP and acct.maildir == Path(HOME, "Maildir")
    assert (imap.host, imap.port, imap.tls) == ("mail.example.com", 10993, TlsMode.IMPLICIT)
    assert imap.secret.kind is SecretKind.LITERAL and imap.secret.value == "s3cret!"
    assert imap.folders == ("*", "!*/*")
    pass_note = one_issue(result, "Pass")
    assert "s3cret" not in "\n".join(issues(result))
    assert pass_note.startswith("note: line 5: `Pass ********`")
    assert "read as Far" in one_issue(result, "Master")


@pytest.mark.parametrize(
    ("lines", "tls", "problem"),
    [
        ("SSLType STARTTLS", TlsMode.STARTTLS, None),
        ("TLSType IMAPS", TlsMode.IMPLICIT, None),
        ("", TlsMode.STARTTLS, None),  # mbsync's default
        ("UseIMAPS yes", TlsMode.IMPLICIT, "deprecated"),
        ("RequireSSL no", TlsMode.STARTTLS, "deprecated"),  # mbsync ignores a lone "no"
        ("RequireSSL no\nUseTLSv1 no", TlsMode.STARTTLS, "clear text"),  # None, refused
        ("SSLType None", TlsMode.STARTTLS, "clear text"),
    ],
)
def test_mbsync_tls_settings(lines, tls, problem):
    body = "\n".join(f"        {line}" for line in lines.splitlines())
    result = mb(
        f"""\
        IMAPAccount a
        Host mail.example.org
        User u
{body}

        IMAPStore a
        Account a

        MaildirStore l
        Path ~/Mail/
        Inbox ~/Mail/INBOX

        Channel a
        Far :a:
        Near :l:
        Patterns *
        """
    )
    imap = config_of(result).accounts[0].imap
    assert imap is not None and imap.tls is tls
    if problem is not None:
        assert any(problem in text for text in issues(result)), issues(result)


def test_mbsync_no_tls_to_loopback_is_kept():
    result = mb(
        """\
        IMAPStore r
        Host 127.0.0.1
        User u
        PassCmd "cat ~/pw"
        SSLType None

        MaildirStore l
        Path /srv/mail/
        Inbox /srv/mail/INBOX

        Channel c
        Far :r:
        Near :l:
        Patterns *
        """
    )
    imap = config_of(result).accounts[0].imap
    assert imap is not None and imap.tls is TlsMode.NONE and imap.port == 143
    assert not issues(result, IssueKind.UNTRANSLATED)


def test_mbsync_single_folder_channels_share_one_account():
    result = mb(
        """\
        IMAPAccount work
        Host imap.work.example
        User joe
        PassCmd pass work

        IMAPStore work-remote
        Account work

        MaildirStore work-local
        Path ~/Mail/work/
        Inbox ~/Mail/work/INBOX

        Channel work-inbox
        Far :work-remote:
        Near :work-local:

        Channel work-sent
        Far :work-remote:Sent
        Near :work-local:Sent

        Channel work-archive
        Far :work-remote:"Archive/2024"
        Near :work-local:Old

        Group work
        Channel work-inbox
        Channel work-sent
        """
    )
    (acct,) = config_of(result).accounts
    assert acct.maildir == Path(HOME, "Mail/work") and acct.layout is Layout.VERBATIM
    assert acct.imap is not None and acct.imap.folders == ("INBOX", "Sent")
    renamed = one_issue(result, "Archive/2024")
    assert "line 21" in renamed and "under another name" in renamed
    assert "not needed" in one_issue(result, "Group work")


def test_mbsync_inbox_only_channel_is_a_maildirpp_root():
    result = mb(
        """\
        IMAPStore isp
        Host mail.isp.example
        User me

        MaildirStore local
        Path ~/Mail/

        Channel isp
        Far :isp:
        Near :local:isp
        """
    )
    (acct,) = config_of(result).accounts
    assert acct.layout is Layout.MAILDIRPP and acct.maildir == Path(HOME, "Mail/isp")
    assert acct.imap is not None and acct.imap.folders == ("INBOX",)


def test_mbsync_inbox_outside_the_root_is_reported_with_the_fix():
    result = mb(
        """\
        IMAPStore r
        Host mail.example.org
        User me
        PassCmd "pass x"

        MaildirStore l
        Path ~/Mail/
        Inbox ~/Maildir

        Channel c
        Far :r:
        Near :l:
        Patterns *
        """
    )
    config_of(result)
    text = one_issue(result, "INBOX at ~/Maildir")
    assert "`mv ~/Maildir ~/Mail/INBOX`" in text and "line 8" in text


def test_mbsync_untranslatable_constructs_are_listed():
    result = mb(
        """\
        FSync no
        BufferLimit 20m
        Frobnicate yes

        IMAPAccount a
        Host mail.example.org
        UserCmd "pass user"
        PassCmd "pass pw"
        PipelineDepth 1
        DisableExtension COMPRESS
        AuthMechs CRAM-MD5
        SystemCertificates no
        Timeout 0

        IMAPStore a
        Account a
        Trash Trash
        MaxSize 1m

        MaildirStore l
        Path ~/Mail/
        Inbox ~/Mail/INBOX
        Flatten .
        InfoDelimiter ;

        Channel a
        Far :a:
        Near :l:
        Patterns * !Junk INBOX
        Sync Pull
        Create Near
        Remove None
        MaxMessages 100
        CopyArrivalDate yes
        """
    )
    config = config_of(result)
    assert config.accounts[0].imap is not None
    assert config.accounts[0].imap.username == "CHANGE-ME"
    reported = "\n".join(issues(result))
    for construct in (
        "FSync no",
        "BufferLimit 20m",
        "Frobnicate yes",
        "UserCmd",
        "PipelineDepth 1",
        "DisableExtension COMPRESS",
        "AuthMechs CRAM-MD5",
        "SystemCertificates no",
        "Timeout 0",
        "Trash Trash",
        "MaxSize 1m",
        "Flatten .",
        "InfoDelimiter ;",
        "Sync Pull",
        "Create Near",
        "Remove None",
        "MaxMessages 100",
    ):
        assert f"`{construct}" in reported, construct
    assert "CopyArrivalDate" not in reported  # syncd always keeps the date
    assert "exclusion always wins" in one_issue(result, "Patterns")
    lines = [i.line for i in result.issues if i.line is not None]
    assert lines == sorted(lines)


def test_mbsync_tunnel_and_oauth2():
    result = mb(
        """\
        IMAPStore shell
        Tunnel "ssh -q mail.example.org /usr/lib/dovecot/imap"

        IMAPStore o365
        Host outlook.office365.com
        SSLType IMAPS
        User me@example.org
        AuthMechs XOAUTH2
        PassCmd "oauth2ms --token"

        MaildirStore shell-local
        Path ~/Mail/shell/
        Inbox ~/Mail/shell/INBOX

        MaildirStore o365-local
        Path ~/Mail/o365/
        Inbox ~/Mail/o365/INBOX

        Channel shell
        Far :shell:
        Near :shell-local:
        Patterns *

        Channel o365
        Far :o365:
        Near :o365-local:
        Patterns *
        """
    )
    shell, o365 = config_of(result).accounts
    assert shell.imap is not None and o365.imap is not None
    assert shell.imap.tunnel == "ssh -q mail.example.org /usr/lib/dovecot/imap"
    assert o365.imap.auth.value == "xoauth2"
    assert o365.imap.secret.command == "oauth2ms --token"


def test_mbsync_nothing_to_import():
    result = mb("IMAPStore a\nHost h\n\nIMAPStore b\nHost i\n\nChannel c\nFar :a:\nNear :b:\n")
    assert result.text is None
    assert "two stores of the same kind" in one_issue(result, "Channel c")


def test_mbsync_debian_example():
    text = debian_example("isync", "/usr/share/doc/isync/examples/mbsyncrc.sample")
    result = mbsync.translate(text, source="sample", home=HOME, cwd=CWD)
    cfg = config_of(result)
    by_name = {a.name: a for a in cfg.accounts}
    assert set(by_name) == {"work", "personal", "remote", "server"}
    work, personal, remote, server = (by_name[n] for n in ("work", "personal", "remote", "server"))
    assert work.imap is not None and personal.imap is not None
    assert remote.imap is not None and server.imap is not None
    assert (work.imap.host, work.imap.tls, work.imap.username) == (
        "work.host.com",
        TlsMode.STARTTLS,
        "tehuser",
    )
    assert work.maildir == Path(HOME, "Mail/work") and work.layout is Layout.MAILDIRPP
    assert (personal.imap.host, personal.imap.port) == ("host.play.com", 6789)
    assert remote.imap.tunnel == "ssh -q host.remote.com /usr/sbin/imapd"
    assert (server.imap.host, server.imap.tls) == ("foo.bar.com", TlsMode.IMPLICIT)
    assert server.imap.ca_file == Path(HOME, ".server-certificate.crt")
    assert server.maildir == Path(HOME, "Maildir") and server.imap.folders == ("*", "!*/*")
    reported = "\n".join(issues(result))
    for construct in ("Expunge None", "Sync PullNew Push", "MaxMessages 150", "MapInbox inbox",
                      "Channel rst", "Far :server:INBOX", "Group partial o2o:inbox"):  # fmt: skip
        assert f"`{construct}" in reported, construct
    assert "xxxxxxxx" not in reported


# -- OfflineIMAP -----------------------------------------------------------------------------


PYTHONFILE = '''\
import subprocess

def get_pass(account, store="mail"):
    """Ask pass."""
    return subprocess.check_output(["pass", "show", store + "/" + account]).decode().strip()

def get_user(account):
    return subprocess.check_output("pass show user/%s | head -1" % account, shell=True).strip()

def too_clever(account):
    value = subprocess.check_output(["pass", account])
    return value.strip()
'''


@pytest.mark.parametrize(
    ("expr", "command"),
    [
        ('subprocess.check_output("pass show x", shell=True).strip()', "pass show x"),
        ("subprocess.check_output(['gpg', '-dq', '/a b.gpg']).decode('utf-8').rstrip('\\n')",
         "gpg -dq '/a b.gpg'"),
        ('os.popen("pass mail").read().strip()', "pass mail"),
        ('subprocess.getoutput("secret-tool lookup a b")', "secret-tool lookup a b"),
        ('subprocess.run("pass x", shell=True, capture_output=True, text=True).stdout.strip()',
         "pass x"),
        ('get_pass("work")', "pass show mail/work"),
        ('get_pass("work", store="other")', "pass show other/work"),
        ('get_user(account="me")', "pass show user/me | head -1"),
        ('"literal"', None),
        ('get_pass(os.environ["X"])', None),
        ("too_clever('x')", None),
        ("unknown('x')", None),
        ("__import__('os').system('rm -rf /')", None),
        ("subprocess.check_output('pass x')", None),  # no shell: a program named "pass x"
        ("lambda: 1", None),
        ("not python(", None),
    ],
)  # fmt: skip
def test_remotepasseval_is_translated_only_when_plain(expr, command):
    found = offlineimap.translate_passeval(expr, PYTHONFILE)
    if command is None:
        assert found is None or found[0] == "literal"
    else:
        assert found == ("command", command)


@pytest.mark.parametrize(
    ("expr", "folders"),
    [
        ("lambda f: f in ['INBOX', 'Sent']", ["INBOX", "Sent"]),
        ("lambda foldername: foldername not in ['Trash', 'Junk']", ["*", "!Trash", "!Junk"]),
        ("lambda f: f != 'Trash' and f not in ('Spam',)", ["*", "!Trash", "!Spam"]),
        ("lambda f: f == 'INBOX' or f.startswith('Lists/')", ["INBOX", "Lists/*"]),
        ("lambda f: not f.startswith(('[Gmail]', 'Old'))", ["*", "![Gmail]*", "!Old*"]),
        ("lambda f: f.startswith('A') and f != 'A/x'", ["A*", "!A/x"]),
        ("lambda f: f in [\n    'INBOX',\n    'Sent Mail']", ["INBOX", "Sent Mail"]),
        ("lambda f: not re.search('(^Trash$|Del)', f)", None),
        ("lambda f: f.startswith('A') and f.startswith('B')", None),
        ("lambda f: f in ['a*b']", None),
        ("lambda f, g: True", None),
        ("lambda f: f in names", None),
    ],
)
def test_folderfilter_is_translated_only_when_plain(expr, folders):
    assert offlineimap.translate_folderfilter(expr) == folders


OFFLINEIMAP_RC = """\
    [general]
    accounts = Personal, Work, Google
    pythonfile = ~/.offlineimap.py
    ui = ttyui
    maxsyncaccounts = 2

    [DEFAULT]
    mailroot = ~/Mail

    [Account Personal]
    localrepository = personal-local
    remoterepository = personal-remote
    autorefresh = 5
    postsynchook = notmuch new

    [Repository personal-local]
    type = Maildir
    localfolders = %(mailroot)s/personal
    sep = /
    nametrans = lambda f: f.replace('Sent', 'sent')

    [Repository personal-remote]
    type = IMAP
    remotehost = mail.example.org
    remoteuser = me@example.org
    remotepasseval = get_pass("personal")
    sslcacertfile = OS-DEFAULT
    cert_fingerprint = AA:BB:{fp}
    folderfilter = lambda f: f not in ['Trash', 'Spam']
    idlefolders = ['INBOX']
    maxconnections = 3

    [Account Work]
    localrepository = work-local
    remoterepository = work-remote

    [Repository work-local]
    type = Maildir
    localfolders = %(mailroot)s/work

    [Repository work-remote]
    type = IMAP
    remotehost = imap.work.example
    remoteport = 1143
    ssl = no
    remoteuser = joe
    remotepassfile = ~/.work pass
    sslcacertfile = ~/certs/work-ca.pem
    folderfilter = lambda f: not re.search('^Archive', f)

    [Account Google]
    localrepository = g-local
    remoterepository = g-remote

    [Repository g-local]
    type = GmailMaildir
    localfolders = ~/Mail/google
    sep = /

    [Repository g-remote]
    type = Gmail
    remoteuser = me@gmail.com
    remotepass = p%%ss
    """.replace("{fp}", ":".join(["0F"] * 30))


def test_offlineimap_realistic_config():
    result = oi(OFFLINEIMAP_RC, pythonfile_text=PYTHONFILE)
    personal, work, google = config_of(result).accounts
    assert personal.name == "Personal" and personal.maildir == Path(HOME, "Mail/personal")
    assert personal.layout is Layout.VERBATIM
    pi = personal.imap
    assert pi is not None
    assert (pi.host, pi.port, pi.tls) == ("mail.example.org", 993, TlsMode.IMPLICIT)
    assert pi.secret.command == "pass show mail/personal"
    assert pi.fingerprint == "aabb" + "0f" * 30
    assert pi.folders == ("*", "!Trash", "!Spam")
    assert pi.idle == ("INBOX",)
    assert pi.special_folders is None
    wi = work.imap
    assert wi is not None
    assert (wi.host, wi.port, wi.tls) == ("imap.work.example", 1143, TlsMode.STARTTLS)
    assert wi.secret.command == "cat ~/'.work pass'"
    assert wi.ca_file == Path(HOME, "certs/work-ca.pem")
    assert wi.folders == ("*",)
    gi = google.imap
    assert gi is not None
    assert (gi.host, gi.tls, gi.username) == ("imap.gmail.com", TlsMode.IMPLICIT, "me@gmail.com")
    assert gi.secret.value == "p%ss"
    assert gi.folders == ("*", "![Gmail]/All Mail")
    reported = "\n".join(issues(result))
    for construct in ("ui = ttyui", "maxsyncaccounts = 2", "autorefresh = 5",
                      "postsynchook = notmuch new", "nametrans = lambda f:", "maxconnections = 3",
                      "folderfilter = lambda f: not re.search"):  # fmt: skip
        assert f"`{construct}" in reported, construct
    assert one_issue(result, "Repository work-local").startswith("note:")  # sep = . (default)
    assert "translated to password_command" in one_issue(result, "remotepasseval")
    assert "p%ss" not in reported and "remotepass = ********" in reported


def test_offlineimap_sep_dot_lists_the_renames_it_needs():
    rc = """\
        [general]
        accounts = a
        [Account a]
        localrepository = l
        remoterepository = r
        [Repository l]
        type = Maildir
        localfolders = ~/Mail
        [Repository r]
        type = IMAP
        remotehost = h.example
        remoteuser = u
        """
    clean = oi(rc, local_dirs={f"{HOME}/Mail": ["INBOX", "Sent"]})
    assert not any("sep" in text or "Lists" in text for text in issues(clean))
    dotted = oi(rc, local_dirs={f"{HOME}/Mail": ["INBOX", "Lists", "Lists.python", "a.b.c"]})
    text = one_issue(dotted, "Lists/python")
    assert "`mkdir -p ~/Mail/Lists && mv ~/Mail/Lists.python ~/Mail/Lists/python`" in text
    assert "`mkdir -p ~/Mail/a/b && mv ~/Mail/a.b.c ~/Mail/a/b/c`" in text


def test_offlineimap_needs_a_user_and_a_host():
    result = oi(
        """\
        [general]
        accounts = a, b, missing
        [Account a]
        localrepository = l
        remoterepository = r
        [Account b]
        localrepository = l
        remoterepository = nohost
        [Repository l]
        type = Maildir
        localfolders = ~/Mail/a
        sep = /
        [Repository r]
        type = IMAP
        remotehost = h.example
        remoteusereval = get_user()
        [Repository nohost]
        type = IMAP
        remotehosteval = get_host()
        """
    )
    (acct,) = config_of(result).accounts
    assert acct.imap is not None and acct.imap.username == "CHANGE-ME"
    reported = "\n".join(issues(result))
    assert "no remotehost; account skipped" in reported
    assert "[Account missing] section" in reported
    assert "`remoteusereval = get_user()` — Python code is not run" in reported


def test_offlineimap_unreadable_file():
    result = oi("accounts = a\n[general\n")
    assert result.text is None
    assert "not a valid OfflineIMAP config" in issues(result)[0]


@pytest.mark.parametrize("name", ["offlineimap.conf", "offlineimap.conf.minimal"])
def test_offlineimap_debian_examples(name):
    text = debian_example("offlineimap3", f"/usr/share/doc/offlineimap3/examples/{name}")
    result = offlineimap.translate(text, source=name, home=HOME, cwd=CWD)
    (acct,) = config_of(result).accounts
    assert acct.name == "Test" and acct.maildir == Path(HOME, "Test")
    assert acct.imap is not None
    assert (acct.imap.host, acct.imap.port, acct.imap.tls) == (
        "examplehost",
        993,
        TlsMode.IMPLICIT,
    )
    assert acct.imap.username == ("username" if name == "offlineimap.conf" else "jgoerzen")
    assert acct.imap.secret.kind is SecretKind.KEYRING
    assert any("sep = ." in t or "Lists.python" in t for t in issues(result))


# -- msmtp -----------------------------------------------------------------------------------


def test_msmtp_debian_user_example():
    text = debian_example("msmtp", "/usr/share/doc/msmtp/examples/msmtprc-user.example")
    result = msmtp.translate(text, source="example", home=HOME, cwd=CWD)
    freemail, company = config_of(result).accounts
    assert freemail.addresses == ("joe_smith@freemail.example", "joey@freemail.example")
    smtp = freemail.smtp
    assert smtp is not None
    assert (smtp.host, smtp.port, smtp.tls) == ("smtp.freemail.example", 587, TlsMode.STARTTLS)
    assert smtp.username == "joe.smith"
    assert smtp.secret.command == "gpg2 --no-tty -q -d ~/.msmtp-password.gpg"
    assert company.smtp is not None and company.smtp.username == "company12345"
    assert company.smtp.secret.kind is SecretKind.KEYRING
    assert "is a guess" in one_issue(result, "account freemail`")


def test_msmtp_debian_system_example():
    text = debian_example("msmtp", "/usr/share/doc/msmtp/examples/msmtprc-system.example")
    result = msmtp.translate(text, source="example", home=HOME, cwd=CWD)
    (acct,) = config_of(result).accounts
    assert acct.smtp is not None
    assert (acct.smtp.port, acct.smtp.tls) == (465, TlsMode.IMPLICIT)
    reported = "\n".join(issues(result))
    for construct in ("from %U@oursite.example", "syslog LOG_MAIL", "set_from_header on"):
        assert f"`{construct}`" in reported


def test_msmtp_user_example_agrees_with_msmtp_itself(tmp_path):
    """Cross-check the parser (defaults, inheritance, quoting) with `msmtp --pretend`."""
    binary = shutil.which("msmtp")
    if binary is None:
        pytest.skip("msmtp is not installed")
    text = debian_example("msmtp", "/usr/share/doc/msmtp/examples/msmtprc-user.example")
    # --pretend evaluates passwordeval; run something harmless instead of gpg2.
    text = text.replace(
        "passwordeval gpg2 --no-tty -q -d ~/.msmtp-password.gpg", "passwordeval echo x"
    )
    rc = tmp_path / "msmtprc"
    rc.write_text(text)
    rc.chmod(0o600)
    accounts, default, _ = msmtp.parse(text)
    assert default == "freemail"
    for account in accounts:
        done = subprocess.run(
            [binary, "-C", str(rc), "-a", account.name, "--pretend"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        shown = dict(line.split(" = ", 1) for line in done.stdout.splitlines() if " = " in line)
        for key in ("host", "port", "user", "from", "tls", "tls_starttls"):
            ours = account.settings.get(key)
            if ours is not None:
                assert shown[key] == ours.value, (account.name, key)


def test_msmtp_settings():
    result = ms(
        """\
        # comment
        account plain
        host 127.0.0.1
        port 2525
        user u
        password "hunter2 "
        from me@example.org

        account cleartext
        host smtp.example.org
        tls off
        user u
        from you@example.org

        account pinned
        host smtp.example.net
        tls on
        tls_starttls off
        tls_fingerprint {PIN}
        tls_certcheck off
        auth oauthbearer
        user me@example.net
        passwordeval "oauth2 token me"
        from me@example.net

        account sha1
        host smtp.example.com
        tls on
        tls_trust_file ~/ca.pem
        tls_fingerprint 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33
        logfile ~/.msmtp.log
        eval echo host x
        """.replace("{PIN}", ":".join(["01", "23", "45", "67", "89", "AB", "CD", "EF"] * 4))
    )
    plain, cleartext, pinned, sha1 = config_of(result).accounts
    assert plain.smtp is not None and cleartext.smtp is not None
    assert pinned.smtp is not None and sha1.smtp is not None
    assert (plain.smtp.tls, plain.smtp.port) == (TlsMode.NONE, 2525)
    assert plain.smtp.secret.value == "hunter2 "
    assert cleartext.smtp.tls is TlsMode.STARTTLS and cleartext.smtp.port == 25
    assert (pinned.smtp.tls, pinned.smtp.port) == (TlsMode.IMPLICIT, 465)
    assert pinned.smtp.fingerprint == "0123456789abcdef" * 4
    assert pinned.smtp.auth.value == "oauthbearer"
    assert pinned.smtp.secret.command == "oauth2 token me"
    assert sha1.smtp.fingerprint is None and sha1.smtp.ca_file == Path(HOME, "ca.pem")
    reported = "\n".join(issues(result))
    assert "hunter2" not in reported and "`password ********`" in reported
    assert "clear text" in one_issue(result, "tls off")
    for construct in ("tls_certcheck off", "logfile ~/.msmtp.log", "eval echo host x"):
        assert f"`{construct}`" in reported, construct
    assert "SHA-256 fingerprints only" in one_issue(result, "00:11:22")


MERGE_INTO = """\
# my config
state_dir: ~/.local/state/syncd
accounts:
  work:
    maildir: ~/Mail/work
    imap:
      host: imap.example.org
      username: joe@example.org
      password_command: pass show work   # keep this comment
  home:
    maildir: ~/Mail/home
    imap: {host: imap.example.net, username: joe}
  flow: {maildir: ~/Mail/flow, imap: {host: imap.flow.example, username: f@flow.example}}
  done:
    maildir: ~/Mail/done
    from: [d@done.example]
    imap:
      host: imap.done.example
      username: d
    smtp:
      host: smtp.done.example
      username: d

# trailing comment
"""

MSMTPRC = """\
defaults
tls on

account work
host smtp.example.org
port 587
auth on
user joe@example.org
from joe@example.org
passwordeval "pass show work"

account home
host smtp.example.net
user joe
from joe@example.net

account flow
host smtp.flow.example
from f@flow.example

account done
host smtp.done.example
from d@done.example

account other
host smtp.other.example
from nobody@other.example
"""


def test_msmtp_merge_keeps_the_config_and_adds_smtp():
    result = msmtp.merge(MERGE_INTO, None, MSMTPRC, source="rc", home=HOME, cwd=CWD)
    assert result.text is not None
    assert result.accounts == ("work", "home")
    before_home, _ = MERGE_INTO.split("  home:")
    assert result.text.startswith(before_home.rstrip("\n"))
    assert result.text.endswith("\n# trailing comment\n")
    assert "# keep this comment" in result.text
    cfg = parse_config(result.text)
    work, home = cfg.account("work"), cfg.account("home")
    assert work.smtp is not None and home.smtp is not None
    assert (work.smtp.host, work.smtp.port, work.smtp.tls) == (
        "smtp.example.org",
        587,
        TlsMode.STARTTLS,
    )
    assert work.smtp.secret.command == "pass show work"
    assert work.addresses == ("joe@example.org",)
    assert home.smtp.host == "smtp.example.net" and home.addresses == ("joe@example.net",)
    assert cfg.account("flow").smtp is None
    reported = "\n".join(issues(result))
    assert "flow style" in reported
    assert "account done has an smtp: section already" in reported
    assert "no syncd account sends as nobody@other.example" in reported


def test_msmtp_merge_with_nothing_to_merge():
    result = msmtp.merge(MERGE_INTO, None, "account x\nhost h\nfrom x@y.example\n",
                         source="rc", home=HOME, cwd=CWD)  # fmt: skip
    assert result.text is None


# -- the command line ------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_cli_import_prints_config_and_issues(tmp_path):
    rc = write(tmp_path / "rc", GMAIL_RC)
    r = run("import", "mbsync", str(rc))
    assert r.code == 0, r.err
    parse_config(r.out)
    assert "not translated: line 22: `Expunge Both`" in r.err
    assert "syncd: imported 1 account(s) (gmail)" in r.err
    assert run("import", "mbsync", str(rc)).out == r.out  # deterministic


def test_cli_import_output_file_rules(tmp_path):
    rc = write(tmp_path / "rc", GMAIL_RC)
    original = rc.read_bytes()
    out = tmp_path / "syncd.yaml"
    assert run("import", "mbsync", str(rc), "-o", str(out)).code == 0
    assert out.stat().st_mode & 0o777 == 0o600
    out.write_text("mine")
    refused = run("import", "mbsync", str(rc), "-o", str(out))
    assert refused.code == 1 and "--force" in refused.err and out.read_text() == "mine"
    assert run("import", "mbsync", str(rc), "-o", str(out), "--force").code == 0
    assert out.read_text().startswith("# syncd config imported")
    own = run("import", "mbsync", str(rc), "-o", str(rc), "--force")
    assert own.code == 1 and "never changes it" in own.err
    assert rc.read_bytes() == original
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_import_default_places(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    missing = run("import", "offlineimap")
    assert missing.code == 1
    assert f"{tmp_path}/.offlineimaprc or {tmp_path}/xdg/offlineimap/config" in missing.err
    write(tmp_path / "xdg" / "isyncrc", GMAIL_RC)
    assert run("import", "mbsync").code == 0
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert find_source("mbsync", None, home=tmp_path, env=xdg) == tmp_path / "xdg" / "isyncrc"
    write(tmp_path / ".mbsyncrc", GMAIL_RC)
    source, _ = run_import("mbsync", None, home=tmp_path, env={}, cwd=tmp_path)
    assert source == tmp_path / ".mbsyncrc"
    assert default_sources("msmtp", tmp_path, {}) == [
        tmp_path / ".msmtprc",
        tmp_path / ".config" / "msmtp" / "config",
    ]


def test_cli_import_nothing_importable(tmp_path):
    rc = write(tmp_path / "rc", "# nothing\nExpunge Both\n")
    r = run("import", "mbsync", str(rc))
    assert r.code == 1 and r.out == ""
    assert "defines no Channel" in r.err and "nothing could be imported" in r.err


def test_cli_import_offlineimap_reads_pythonfile(tmp_path):
    write(tmp_path / "helpers.py", PYTHONFILE)
    rc = write(
        tmp_path / "rc",
        f"""\
        [general]
        accounts = a
        pythonfile = {tmp_path}/helpers.py
        [Account a]
        localrepository = l
        remoterepository = r
        [Repository l]
        type = Maildir
        localfolders = {tmp_path}/Mail
        sep = /
        [Repository r]
        type = IMAP
        remotehost = h.example
        remoteuser = u
        remotepasseval = get_pass("a")
        """,
    )
    r = run("import", "offlineimap", str(rc))
    assert r.code == 0, r.err
    assert "password_command: pass show mail/a" in r.out


def test_cli_import_msmtp_merge(tmp_path):
    config = write(tmp_path / "syncd.yaml", MERGE_INTO)
    rc = write(tmp_path / "msmtprc", MSMTPRC)
    out = tmp_path / "merged.yaml"
    r = run("import", "msmtp", str(rc), "--merge", str(config), "-o", str(out))
    assert r.code == 0, r.err
    assert "syncd: merged smtp: into 2 account(s) (work, home)" in r.err
    assert config.read_text() == MERGE_INTO
    assert parse_config(out.read_text()).account("work").smtp is not None
    onto = run("import", "msmtp", str(rc), "--merge", str(config), "-o", str(config), "--force")
    assert onto.code == 1 and config.read_text() == MERGE_INTO


# -- helpers ---------------------------------------------------------------------------------


def test_account_names_and_shell_paths():
    assert account_name("my mail@home", []) == "my-mail-home"
    assert account_name("a", ["a", "a-2"]) == "a-3"
    assert account_name("---", []) == "account"
    assert shell_path("~/my pw") == "~/'my pw'"
    assert shell_path("/x/y") == "/x/y"


def test_write_output_refuses_the_source(tmp_path):
    src = write(tmp_path / "rc", "x")
    with pytest.raises(SourceError, match="never changes it"):
        write_output(src, "y", force=True, protect=[src])
    with pytest.raises(SourceError, match="cannot write"):
        write_output(tmp_path / "no" / "dir" / "out", "y", force=False)


def test_fingerprint_ignores_the_x_tuid_mbsync_adds():
    """mbsync writes X-TUID into each message it downloads; the server copy has none."""
    server = b"From: a@b\r\nSubject: hi\r\nMessage-ID: <1@b>\r\n\r\nbody\r\n"
    local = b"From: a@b\nSubject: hi\nMessage-ID: <1@b>\nX-TUID: qYS/yBXwui78\n\nbody\n"
    folded = b"X-TUID: abc\n def\nFrom: a@b\nSubject: hi\nMessage-ID: <1@b>\n\nbody\n"
    assert fingerprint(local) == fingerprint(server) == fingerprint(folded)
    assert fingerprint(b"From: a@b\nSubject: other\n\n") != fingerprint(server)


def test_fingerprint_ignores_the_fields_mutt_rewrites_in_a_saved_copy():
    """mutt's save writes the copy with its own Content-Length (and Lines), and rewrites
    Status/X-Status: the copy is still the same message, or a move becomes an upload."""
    server = b"From: a@b\r\nSubject: hi\r\nMessage-ID: <1@b>\r\nStatus: O\r\n\r\nbody\r\n"
    saved = b"From: a@b\nSubject: hi\nMessage-ID: <1@b>\nContent-Length: 5\nLines: 1\n\nbody\n"
    marked = b"From: a@b\nSubject: hi\nMessage-ID: <1@b>\nStatus: RO\nX-Status: F\n\nbody\n"
    assert fingerprint(saved) == fingerprint(server) == fingerprint(marked)
    # Only whole fields go: a Subject that mentions them is still part of the message.
    assert fingerprint(b"From: a@b\nSubject: status: 2 lines:\n\n") != fingerprint(
        b"From: a@b\nSubject: other\n\n"
    )


# -- OAuth2 (issue 15): each import says which mapping it chose ---------------------------------


def test_mbsync_oauth2_helper_is_kept_as_token_command_and_says_so():
    result = mb(
        """\
        IMAPStore gmail
        Host imap.gmail.com
        SSLType IMAPS
        User me@gmail.com
        AuthMechs XOAUTH2
        PassCmd "~/bin/mutt_oauth2.py ~/.gmail.tokens"

        MaildirStore gmail-local
        Path ~/Mail/gmail/
        Inbox ~/Mail/gmail/INBOX

        Channel gmail
        Far :gmail:
        Near :gmail-local:
        Patterns *
        """
    )
    (acct,) = config_of(result).accounts
    assert acct.imap is not None and acct.imap.auth.value == "xoauth2"
    assert acct.imap.secret.command == "~/bin/mutt_oauth2.py ~/.gmail.tokens"
    note = one_issue(result, "OAuth2: kept as token_command")
    assert note.startswith("note:") and "mutt's mutt_oauth2.py" in note
    assert "syncd oauth login" in note


def test_msmtp_oauth2_passwordeval_is_kept_as_token_command_and_says_so():
    result = ms(
        """\
        account work
        host smtp.office365.com
        port 587
        tls on
        tls_starttls on
        auth xoauth2
        user me@contoso.com
        passwordeval "pizauth show work"
        from me@contoso.com
        """
    )
    (acct,) = config_of(result).accounts
    assert acct.smtp is not None and acct.smtp.auth.value == "xoauth2"
    assert acct.smtp.secret.command == "pizauth show work"
    assert "pizauth goes on getting" in one_issue(result, "OAuth2: kept as token_command")


OFFLINEIMAP_OAUTH = """\
[general]
accounts = Gmail

[Account Gmail]
localrepository = gmail-local
remoterepository = gmail-remote

[Repository gmail-local]
type = Maildir
localfolders = ~/Mail/gmail

[Repository gmail-remote]
type = Gmail
remoteuser = me@gmail.com
auth_mechanisms = XOAUTH2
oauth2_request_url = https://accounts.google.com/o/oauth2/token
oauth2_client_id = 1234-abc.apps.googleusercontent.com
oauth2_client_secret = GOCSPX-not-so-secret
oauth2_refresh_token = 1//0refresh-token-never-copied
sslcacertfile = OS-DEFAULT
"""


def test_offlineimap_oauth2_keys_become_the_builtin_flow_without_the_refresh_token():
    result = oi(OFFLINEIMAP_OAUTH)
    (acct,) = config_of(result).accounts
    assert acct.oauth2 is not None
    assert acct.oauth2.provider.value == "google"
    assert acct.oauth2.client_id == "1234-abc.apps.googleusercontent.com"
    assert acct.oauth2.client_secret == "GOCSPX-not-so-secret"
    assert acct.imap is not None and acct.imap.secret.kind.value == "oauth2"
    assert result.text is not None and "1//0refresh-token-never-copied" not in result.text
    note = one_issue(result, "OAuth2: the built-in flow")
    assert note.startswith("note:") and "syncd oauth login" in note
    assert "oauth2_refresh_token not copied" in note
    assert not any("oauth2_client_id" in i for i in issues(result, IssueKind.UNTRANSLATED))


def test_offlineimap_microsoft_tenant_from_the_request_url():
    rc = OFFLINEIMAP_OAUTH.replace(
        "type = Gmail", "type = IMAP\nremotehost = outlook.office365.com"
    )
    rc = rc.replace(
        "https://accounts.google.com/o/oauth2/token",
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
    ).replace("oauth2_client_secret = GOCSPX-not-so-secret\n", "")
    (acct,) = config_of(oi(rc)).accounts
    assert acct.oauth2 is not None and acct.oauth2.provider.value == "microsoft"
    assert "/contoso.onmicrosoft.com/" in acct.oauth2.token_url
    assert acct.oauth2.client_secret is None


def test_offlineimap_xoauth2_without_a_client_id_is_reported():
    rc = OFFLINEIMAP_OAUTH.replace("oauth2_client_id = 1234-abc.apps.googleusercontent.com\n", "")
    result = oi(rc)
    (acct,) = config_of(result).accounts
    assert acct.oauth2 is None
    assert "no oauth2_client_id; add an oauth2: block" in one_issue(result, "not carried over")
