#compdef syncd
# zsh completion for syncd; generated from its argparse definitions by
# `syncd completion zsh` (do not edit). Install: copy to a directory in $fpath
# as _syncd.

_syncd_table() {
    case "$1" in
    commands)
        case "$2" in
        '') reply=('run:the long-running daemon (systemd runs it as Type=notify)' 'sync:sync every (or one) account once, then exit' 'send:send what is queued in the outbox now' 'sendmail:queue one message from stdin in the outbox (sendmail-compatible; works offline)' 'status:what was synced when, and errors' 'check:validate the config and try every login' 'init:find an address'\''s mail servers, try the login and write a config' 'password:manage secrets in the system keyring' 'oauth:OAuth2 sign-in (Gmail, Microsoft 365)' 'import:turn an mbsync, OfflineIMAP or msmtp config into a syncd config' 'mailboxes:print the local folders for mutt, neomutt or aerc' 'completion:print the shell completion script' 'man:print the man page (view it with: syncd man | man -l -)') ;;
        'run') reply=() ;;
        'sync') reply=() ;;
        'send') reply=() ;;
        'sendmail') reply=() ;;
        'status') reply=() ;;
        'check') reply=() ;;
        'init') reply=() ;;
        'password') reply=('set:store a password in the keyring') ;;
        'password set') reply=() ;;
        'oauth') reply=('login:sign in once in a browser; the refresh token goes into the keyring') ;;
        'oauth login') reply=() ;;
        'import') reply=('mbsync:import an mbsync (isync) config; the original is never changed' 'offlineimap:import an OfflineIMAP config; the original is never changed' 'msmtp:import the SMTP accounts of an msmtp config; the original is never changed') ;;
        'import mbsync') reply=() ;;
        'import offlineimap') reply=() ;;
        'import msmtp') reply=() ;;
        'mailboxes') reply=() ;;
        'completion') reply=() ;;
        'man') reply=() ;;
        *) reply=() ;;
        esac ;;
    options)
        case "$2" in
        '') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-V:show program'\''s version number and exit' '--version:show program'\''s version number and exit') ;;
        'run') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors') ;;
        'sync') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors' '-a:only this account' '--account:only this account' '-f:only this folder (needs --account if several)' '--folder:only this folder (needs --account if several)' '-n:show what would change; change nothing' '--dry-run:show what would change; change nothing' '--force:lift the mass-deletion guard for this run') ;;
        'send') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors' '-a:only this account' '--account:only this account') ;;
        'sendmail') reply=() ;;
        'status') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors' '--json:machine-readable output') ;;
        'check') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors') ;;
        'init') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors' '-o:where to write the config (default: -c, $SYNCD_CONFIG or the XDG path)' '--output:where to write the config (default: -c, $SYNCD_CONFIG or the XDG path)' '--username:the login name (default: the address)' '--password-command:a command that prints the password; goes into the config instead of the keyring' '--no-keyring:do not store the password in the keyring' '--name:account name (default: the domain'\''s first part)' '--maildir:default: ~/Mail/ACCOUNT' '--ca-file:trust this CA (a private CA)' '--timeout:per DNS query and per connection attempt (default: 10)' '--force:replace an existing config file' '--oauth2:sign in with OAuth2 at this provider (found by itself for its own domains)' '--client-id:the OAuth2 client ID (README: OAuth2)' '--client-secret:the OAuth2 client secret, if it has one') ;;
        'password') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors') ;;
        'password set') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors') ;;
        'oauth') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors') ;;
        'oauth login') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors' '--device:show a code to enter on any device instead (no browser on this machine)' '--no-browser:print the URL only; do not open a browser' '--timeout:how long to wait for the browser to come back (default: 300)') ;;
        'import') reply=('-h:show this help message and exit' '--help:show this help message and exit') ;;
        'import mbsync') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-o:write the syncd config to FILE (mode 0600) instead of standard output' '--output:write the syncd config to FILE (mode 0600) instead of standard output' '--force:replace an existing output file') ;;
        'import offlineimap') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-o:write the syncd config to FILE (mode 0600) instead of standard output' '--output:write the syncd config to FILE (mode 0600) instead of standard output' '--force:replace an existing output file') ;;
        'import msmtp') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-o:write the syncd config to FILE (mode 0600) instead of standard output' '--output:write the syncd config to FILE (mode 0600) instead of standard output' '--force:replace an existing output file' '--merge:add each smtp: section to the account of this syncd config that sends as its from address; the result goes to -o (CONFIG is not changed)') ;;
        'mailboxes') reply=('-h:show this help message and exit' '--help:show this help message and exit' '-c:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '--config:config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)' '-v:more detail' '--verbose:more detail' '-q:only warnings and errors' '--quiet:only warnings and errors' '-a:only this account' '--account:only this account' '--format:the reader'\''s syntax; list: one directory per line (default: mutt)') ;;
        'completion') reply=('-h:show this help message and exit' '--help:show this help message and exit') ;;
        'man') reply=('-h:show this help message and exit' '--help:show this help message and exit') ;;
        *) reply=() ;;
        esac ;;
    value-options)
        case "$2" in
        '') reply=() ;;
        'run') reply=('-c' '--config') ;;
        'sync') reply=('-c' '--config' '-a' '--account' '-f' '--folder') ;;
        'send') reply=('-c' '--config' '-a' '--account') ;;
        'sendmail') reply=() ;;
        'status') reply=('-c' '--config') ;;
        'check') reply=('-c' '--config') ;;
        'init') reply=('-c' '--config' '-o' '--output' '--username' '--password-command' '--name' '--maildir' '--ca-file' '--timeout' '--oauth2' '--client-id' '--client-secret') ;;
        'password') reply=('-c' '--config') ;;
        'password set') reply=('-c' '--config') ;;
        'oauth') reply=('-c' '--config') ;;
        'oauth login') reply=('-c' '--config' '--timeout') ;;
        'import') reply=() ;;
        'import mbsync') reply=('-o' '--output') ;;
        'import offlineimap') reply=('-o' '--output') ;;
        'import msmtp') reply=('-o' '--output' '--merge') ;;
        'mailboxes') reply=('-c' '--config' '-a' '--account' '--format') ;;
        'completion') reply=() ;;
        'man') reply=() ;;
        *) reply=() ;;
        esac ;;
    values)
        case "$2" in
        'run|-c') reply=(@file) ;;
        'run|--config') reply=(@file) ;;
        'sync|-c') reply=(@file) ;;
        'sync|--config') reply=(@file) ;;
        'sync|-a') reply=() ;;
        'sync|--account') reply=() ;;
        'sync|-f') reply=() ;;
        'sync|--folder') reply=() ;;
        'send|-c') reply=(@file) ;;
        'send|--config') reply=(@file) ;;
        'send|-a') reply=() ;;
        'send|--account') reply=() ;;
        'status|-c') reply=(@file) ;;
        'status|--config') reply=(@file) ;;
        'check|-c') reply=(@file) ;;
        'check|--config') reply=(@file) ;;
        'init|-c') reply=(@file) ;;
        'init|--config') reply=(@file) ;;
        'init|-o') reply=(@file) ;;
        'init|--output') reply=(@file) ;;
        'init|--username') reply=() ;;
        'init|--password-command') reply=() ;;
        'init|--name') reply=() ;;
        'init|--maildir') reply=() ;;
        'init|--ca-file') reply=(@file) ;;
        'init|--timeout') reply=() ;;
        'init|--oauth2') reply=(google microsoft) ;;
        'init|--client-id') reply=() ;;
        'init|--client-secret') reply=() ;;
        'password|-c') reply=(@file) ;;
        'password|--config') reply=(@file) ;;
        'password set|-c') reply=(@file) ;;
        'password set|--config') reply=(@file) ;;
        'oauth|-c') reply=(@file) ;;
        'oauth|--config') reply=(@file) ;;
        'oauth login|-c') reply=(@file) ;;
        'oauth login|--config') reply=(@file) ;;
        'oauth login|--timeout') reply=() ;;
        'import mbsync|-o') reply=(@file) ;;
        'import mbsync|--output') reply=(@file) ;;
        'import offlineimap|-o') reply=(@file) ;;
        'import offlineimap|--output') reply=(@file) ;;
        'import msmtp|-o') reply=(@file) ;;
        'import msmtp|--output') reply=(@file) ;;
        'import msmtp|--merge') reply=(@file) ;;
        'mailboxes|-c') reply=(@file) ;;
        'mailboxes|--config') reply=(@file) ;;
        'mailboxes|-a') reply=() ;;
        'mailboxes|--account') reply=() ;;
        'mailboxes|--format') reply=(mutt neomutt aerc list) ;;
        *) reply=() ;;
        esac ;;
    positionals)
        case "$2" in
        '') reply=() ;;
        'run') reply=() ;;
        'sync') reply=() ;;
        'send') reply=() ;;
        'sendmail') reply=() ;;
        'status') reply=() ;;
        'check') reply=() ;;
        'init') reply=() ;;
        'password') reply=() ;;
        'password set') reply=(imap pop3 smtp) ;;
        'oauth') reply=() ;;
        'oauth login') reply=() ;;
        'import') reply=() ;;
        'import mbsync') reply=(@file) ;;
        'import offlineimap') reply=(@file) ;;
        'import msmtp') reply=(@file) ;;
        'mailboxes') reply=() ;;
        'completion') reply=(bash zsh fish) ;;
        'man') reply=() ;;
        *) reply=() ;;
        esac ;;
    esac
}

_syncd() {
    local cmdpath='' word i skip=0
    local -a reply
    for ((i = 2; i < CURRENT; i++)); do
        word="${words[i]}"
        if ((skip)); then
            skip=0
            continue
        fi
        if [[ "$word" == -* ]]; then
            _syncd_table value-options "$cmdpath"
            if [[ "$word" != *=* && ${reply[(Ie)$word]} -gt 0 ]]; then
                skip=1
            fi
        else
            _syncd_table commands "$cmdpath"
            if (( ${reply[(I)${word}:*]} > 0 )); then
                cmdpath="${cmdpath:+$cmdpath }$word"
            fi
        fi
    done
    if ((skip)); then
        _syncd_table values "$cmdpath|${words[CURRENT-1]}"
        if [[ "${reply[1]}" == "@file" ]]; then
            _files
        elif (( ${#reply} )); then
            compadd -a reply
        fi
        return
    fi
    if [[ "${words[CURRENT]}" == -* ]]; then
        _syncd_table options "$cmdpath"
        _describe -t options option reply
        return
    fi
    _syncd_table commands "$cmdpath"
    if (( ${#reply} )); then
        _describe -t commands command reply
        return
    fi
    _syncd_table positionals "$cmdpath"
    if (( ${reply[(Ie)@file]} )); then
        _files
    fi
    reply=(${reply:#@file})
    (( ${#reply} )) && compadd -a reply
}

_syncd "$@"
