# fish completion for syncd; generated from its argparse definitions by
# `syncd completion fish` (do not edit). Install: copy to
# ~/.config/fish/completions/syncd.fish

function __syncd_commands
    switch $argv[1]
        case ''
            printf '%s\n' 'run' 'sync' 'send' 'sendmail' 'status' 'check' 'init' 'password' 'oauth' 'import' 'mailboxes' 'completion' 'man'
        case 'password'
            printf '%s\n' 'set'
        case 'oauth'
            printf '%s\n' 'login'
        case 'import'
            printf '%s\n' 'mbsync' 'offlineimap' 'msmtp'
    end
end

function __syncd_value_options
    switch $argv[1]
        case 'run'
            printf '%s\n' '-c' '--config'
        case 'sync'
            printf '%s\n' '-c' '--config' '-a' '--account' '-f' '--folder'
        case 'send'
            printf '%s\n' '-c' '--config' '-a' '--account'
        case 'status'
            printf '%s\n' '-c' '--config'
        case 'check'
            printf '%s\n' '-c' '--config'
        case 'init'
            printf '%s\n' '-c' '--config' '-o' '--output' '--username' '--password-command' '--name' '--maildir' '--ca-file' '--timeout' '--oauth2' '--client-id' '--client-secret'
        case 'password'
            printf '%s\n' '-c' '--config'
        case 'password set'
            printf '%s\n' '-c' '--config'
        case 'oauth'
            printf '%s\n' '-c' '--config'
        case 'oauth login'
            printf '%s\n' '-c' '--config' '--timeout'
        case 'import mbsync'
            printf '%s\n' '-o' '--output'
        case 'import offlineimap'
            printf '%s\n' '-o' '--output'
        case 'import msmtp'
            printf '%s\n' '-o' '--output' '--merge'
        case 'mailboxes'
            printf '%s\n' '-c' '--config' '-a' '--account' '--format'
    end
end

function __syncd_path
    set -l words (commandline -opc)
    set -e words[1]
    set -l cmdpath ''
    set -l skip 0
    for word in $words
        if test $skip -eq 1
            set skip 0
            continue
        end
        if string match -q -- '-*' $word
            if not string match -q -- '*=*' $word; and contains -- $word (__syncd_value_options "$cmdpath")
                set skip 1
            end
        else if contains -- $word (__syncd_commands "$cmdpath")
            set cmdpath (string trim -- "$cmdpath $word")
        end
    end
    echo "$cmdpath"
end

function __syncd_at
    set -l cmdpath (__syncd_path)
    test "$cmdpath" = "$argv[1]"
end

complete -c syncd -f
complete -c syncd -n '__syncd_at \'\'' -a 'run' -d 'the long-running daemon (systemd runs it as Type=notify)'
complete -c syncd -n '__syncd_at \'\'' -a 'sync' -d 'sync every (or one) account once, then exit'
complete -c syncd -n '__syncd_at \'\'' -a 'send' -d 'send what is queued in the outbox now'
complete -c syncd -n '__syncd_at \'\'' -a 'sendmail' -d 'queue one message from stdin in the outbox (sendmail-compatible; works offline)'
complete -c syncd -n '__syncd_at \'\'' -a 'status' -d 'what was synced when, and errors'
complete -c syncd -n '__syncd_at \'\'' -a 'check' -d 'validate the config and try every login'
complete -c syncd -n '__syncd_at \'\'' -a 'init' -d 'find an address\'s mail servers, try the login and write a config'
complete -c syncd -n '__syncd_at \'\'' -a 'password' -d 'manage secrets in the system keyring'
complete -c syncd -n '__syncd_at \'\'' -a 'oauth' -d 'OAuth2 sign-in (Gmail, Microsoft 365)'
complete -c syncd -n '__syncd_at \'\'' -a 'import' -d 'turn an mbsync, OfflineIMAP or msmtp config into a syncd config'
complete -c syncd -n '__syncd_at \'\'' -a 'mailboxes' -d 'print the local folders for mutt, neomutt or aerc'
complete -c syncd -n '__syncd_at \'\'' -a 'completion' -d 'print the shell completion script'
complete -c syncd -n '__syncd_at \'\'' -a 'man' -d 'print the man page (view it with: syncd man | man -l -)'
complete -c syncd -n '__syncd_at \'\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'\'' -s 'V' -l 'version' -d 'show program\'s version number and exit'
complete -c syncd -n '__syncd_at \'run\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'run\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'run\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'run\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'sync\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'sync\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'sync\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'sync\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'sync\'' -s 'a' -l 'account' -x -d 'only this account'
complete -c syncd -n '__syncd_at \'sync\'' -s 'f' -l 'folder' -x -d 'only this folder (needs --account if several)'
complete -c syncd -n '__syncd_at \'sync\'' -s 'n' -l 'dry-run' -d 'show what would change; change nothing'
complete -c syncd -n '__syncd_at \'sync\'' -l 'force' -d 'lift the mass-deletion guard for this run'
complete -c syncd -n '__syncd_at \'send\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'send\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'send\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'send\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'send\'' -s 'a' -l 'account' -x -d 'only this account'
complete -c syncd -n '__syncd_at \'status\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'status\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'status\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'status\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'status\'' -l 'json' -d 'machine-readable output'
complete -c syncd -n '__syncd_at \'check\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'check\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'check\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'check\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'init\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'init\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'init\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'init\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'init\'' -s 'o' -l 'output' -r -F -d 'where to write the config (default: -c, $SYNCD_CONFIG or the XDG path)'
complete -c syncd -n '__syncd_at \'init\'' -l 'username' -x -d 'the login name (default: the address)'
complete -c syncd -n '__syncd_at \'init\'' -l 'password-command' -x -d 'a command that prints the password; goes into the config instead of the keyring'
complete -c syncd -n '__syncd_at \'init\'' -l 'no-keyring' -d 'do not store the password in the keyring'
complete -c syncd -n '__syncd_at \'init\'' -l 'name' -x -d 'account name (default: the domain\'s first part)'
complete -c syncd -n '__syncd_at \'init\'' -l 'maildir' -x -d 'default: ~/Mail/ACCOUNT'
complete -c syncd -n '__syncd_at \'init\'' -l 'ca-file' -r -F -d 'trust this CA (a private CA)'
complete -c syncd -n '__syncd_at \'init\'' -l 'timeout' -x -d 'per DNS query and per connection attempt (default: 10)'
complete -c syncd -n '__syncd_at \'init\'' -l 'force' -d 'replace an existing config file'
complete -c syncd -n '__syncd_at \'init\'' -l 'oauth2' -x -a 'google microsoft' -d 'sign in with OAuth2 at this provider (found by itself for its own domains)'
complete -c syncd -n '__syncd_at \'init\'' -l 'client-id' -x -d 'the OAuth2 client ID (README: OAuth2)'
complete -c syncd -n '__syncd_at \'init\'' -l 'client-secret' -x -d 'the OAuth2 client secret, if it has one'
complete -c syncd -n '__syncd_at \'password\'' -a 'set' -d 'store a password in the keyring'
complete -c syncd -n '__syncd_at \'password\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'password\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'password\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'password\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'password set\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'password set\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'password set\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'password set\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'password set\'' -a 'imap pop3 smtp'
complete -c syncd -n '__syncd_at \'oauth\'' -a 'login' -d 'sign in once in a browser; the refresh token goes into the keyring'
complete -c syncd -n '__syncd_at \'oauth\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'oauth\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'oauth\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'oauth\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'oauth login\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'oauth login\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'oauth login\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'oauth login\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'oauth login\'' -l 'device' -d 'show a code to enter on any device instead (no browser on this machine)'
complete -c syncd -n '__syncd_at \'oauth login\'' -l 'no-browser' -d 'print the URL only; do not open a browser'
complete -c syncd -n '__syncd_at \'oauth login\'' -l 'timeout' -x -d 'how long to wait for the browser to come back (default: 300)'
complete -c syncd -n '__syncd_at \'import\'' -a 'mbsync' -d 'import an mbsync (isync) config; the original is never changed'
complete -c syncd -n '__syncd_at \'import\'' -a 'offlineimap' -d 'import an OfflineIMAP config; the original is never changed'
complete -c syncd -n '__syncd_at \'import\'' -a 'msmtp' -d 'import the SMTP accounts of an msmtp config; the original is never changed'
complete -c syncd -n '__syncd_at \'import\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'import mbsync\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'import mbsync\'' -s 'o' -l 'output' -r -F -d 'write the syncd config to FILE (mode 0600) instead of standard output'
complete -c syncd -n '__syncd_at \'import mbsync\'' -l 'force' -d 'replace an existing output file'
complete -c syncd -n '__syncd_at \'import mbsync\'' -F
complete -c syncd -n '__syncd_at \'import offlineimap\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'import offlineimap\'' -s 'o' -l 'output' -r -F -d 'write the syncd config to FILE (mode 0600) instead of standard output'
complete -c syncd -n '__syncd_at \'import offlineimap\'' -l 'force' -d 'replace an existing output file'
complete -c syncd -n '__syncd_at \'import offlineimap\'' -F
complete -c syncd -n '__syncd_at \'import msmtp\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'import msmtp\'' -s 'o' -l 'output' -r -F -d 'write the syncd config to FILE (mode 0600) instead of standard output'
complete -c syncd -n '__syncd_at \'import msmtp\'' -l 'force' -d 'replace an existing output file'
complete -c syncd -n '__syncd_at \'import msmtp\'' -l 'merge' -r -F -d 'add each smtp: section to the account of this syncd config that sends as its from address; the result goes to -o (CONFIG is not changed)'
complete -c syncd -n '__syncd_at \'import msmtp\'' -F
complete -c syncd -n '__syncd_at \'mailboxes\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'mailboxes\'' -s 'c' -l 'config' -r -F -d 'config file (default: $SYNCD_CONFIG or $XDG_CONFIG_HOME/syncd/config.yaml)'
complete -c syncd -n '__syncd_at \'mailboxes\'' -s 'v' -l 'verbose' -d 'more detail'
complete -c syncd -n '__syncd_at \'mailboxes\'' -s 'q' -l 'quiet' -d 'only warnings and errors'
complete -c syncd -n '__syncd_at \'mailboxes\'' -s 'a' -l 'account' -x -d 'only this account'
complete -c syncd -n '__syncd_at \'mailboxes\'' -l 'format' -x -a 'mutt neomutt aerc list' -d 'the reader\'s syntax; list: one directory per line (default: mutt)'
complete -c syncd -n '__syncd_at \'completion\'' -s 'h' -l 'help' -d 'show this help message and exit'
complete -c syncd -n '__syncd_at \'completion\'' -a 'bash zsh fish'
complete -c syncd -n '__syncd_at \'man\'' -s 'h' -l 'help' -d 'show this help message and exit'
