# bash completion for syncd; generated from its argparse definitions by
# `syncd completion bash` (do not edit). Install: copy to
# ~/.local/share/bash-completion/completions/syncd

_syncd_table() {
    case "$1" in
    commands)
        case "$2" in
        '') echo 'run sync send sendmail status check init password oauth import mailboxes completion man' ;;
        'run') echo '' ;;
        'sync') echo '' ;;
        'send') echo '' ;;
        'sendmail') echo '' ;;
        'status') echo '' ;;
        'check') echo '' ;;
        'init') echo '' ;;
        'password') echo 'set' ;;
        'password set') echo '' ;;
        'oauth') echo 'login' ;;
        'oauth login') echo '' ;;
        'import') echo 'mbsync offlineimap msmtp' ;;
        'import mbsync') echo '' ;;
        'import offlineimap') echo '' ;;
        'import msmtp') echo '' ;;
        'mailboxes') echo '' ;;
        'completion') echo '' ;;
        'man') echo '' ;;
        esac ;;
    options)
        case "$2" in
        '') echo '-h --help -V --version' ;;
        'run') echo '-h --help -c --config -v --verbose -q --quiet' ;;
        'sync') echo '-h --help -c --config -v --verbose -q --quiet -a --account -f --folder -n --dry-run --force' ;;
        'send') echo '-h --help -c --config -v --verbose -q --quiet -a --account' ;;
        'sendmail') echo '' ;;
        'status') echo '-h --help -c --config -v --verbose -q --quiet --json' ;;
        'check') echo '-h --help -c --config -v --verbose -q --quiet' ;;
        'init') echo '-h --help -c --config -v --verbose -q --quiet -o --output --username --password-command --no-keyring --name --maildir --ca-file --timeout --force --oauth2 --client-id --client-secret' ;;
        'password') echo '-h --help -c --config -v --verbose -q --quiet' ;;
        'password set') echo '-h --help -c --config -v --verbose -q --quiet' ;;
        'oauth') echo '-h --help -c --config -v --verbose -q --quiet' ;;
        'oauth login') echo '-h --help -c --config -v --verbose -q --quiet --device --no-browser --timeout' ;;
        'import') echo '-h --help' ;;
        'import mbsync') echo '-h --help -o --output --force' ;;
        'import offlineimap') echo '-h --help -o --output --force' ;;
        'import msmtp') echo '-h --help -o --output --force --merge' ;;
        'mailboxes') echo '-h --help -c --config -v --verbose -q --quiet -a --account --format' ;;
        'completion') echo '-h --help' ;;
        'man') echo '-h --help' ;;
        esac ;;
    value-options)
        case "$2" in
        '') echo '' ;;
        'run') echo '-c --config' ;;
        'sync') echo '-c --config -a --account -f --folder' ;;
        'send') echo '-c --config -a --account' ;;
        'sendmail') echo '' ;;
        'status') echo '-c --config' ;;
        'check') echo '-c --config' ;;
        'init') echo '-c --config -o --output --username --password-command --name --maildir --ca-file --timeout --oauth2 --client-id --client-secret' ;;
        'password') echo '-c --config' ;;
        'password set') echo '-c --config' ;;
        'oauth') echo '-c --config' ;;
        'oauth login') echo '-c --config --timeout' ;;
        'import') echo '' ;;
        'import mbsync') echo '-o --output' ;;
        'import offlineimap') echo '-o --output' ;;
        'import msmtp') echo '-o --output --merge' ;;
        'mailboxes') echo '-c --config -a --account --format' ;;
        'completion') echo '' ;;
        'man') echo '' ;;
        esac ;;
    values)
        case "$2" in
        'run|-c') echo '@file' ;;
        'run|--config') echo '@file' ;;
        'sync|-c') echo '@file' ;;
        'sync|--config') echo '@file' ;;
        'sync|-a') echo '' ;;
        'sync|--account') echo '' ;;
        'sync|-f') echo '' ;;
        'sync|--folder') echo '' ;;
        'send|-c') echo '@file' ;;
        'send|--config') echo '@file' ;;
        'send|-a') echo '' ;;
        'send|--account') echo '' ;;
        'status|-c') echo '@file' ;;
        'status|--config') echo '@file' ;;
        'check|-c') echo '@file' ;;
        'check|--config') echo '@file' ;;
        'init|-c') echo '@file' ;;
        'init|--config') echo '@file' ;;
        'init|-o') echo '@file' ;;
        'init|--output') echo '@file' ;;
        'init|--username') echo '' ;;
        'init|--password-command') echo '' ;;
        'init|--name') echo '' ;;
        'init|--maildir') echo '' ;;
        'init|--ca-file') echo '@file' ;;
        'init|--timeout') echo '' ;;
        'init|--oauth2') echo 'google microsoft' ;;
        'init|--client-id') echo '' ;;
        'init|--client-secret') echo '' ;;
        'password|-c') echo '@file' ;;
        'password|--config') echo '@file' ;;
        'password set|-c') echo '@file' ;;
        'password set|--config') echo '@file' ;;
        'oauth|-c') echo '@file' ;;
        'oauth|--config') echo '@file' ;;
        'oauth login|-c') echo '@file' ;;
        'oauth login|--config') echo '@file' ;;
        'oauth login|--timeout') echo '' ;;
        'import mbsync|-o') echo '@file' ;;
        'import mbsync|--output') echo '@file' ;;
        'import offlineimap|-o') echo '@file' ;;
        'import offlineimap|--output') echo '@file' ;;
        'import msmtp|-o') echo '@file' ;;
        'import msmtp|--output') echo '@file' ;;
        'import msmtp|--merge') echo '@file' ;;
        'mailboxes|-c') echo '@file' ;;
        'mailboxes|--config') echo '@file' ;;
        'mailboxes|-a') echo '' ;;
        'mailboxes|--account') echo '' ;;
        'mailboxes|--format') echo 'mutt neomutt aerc list' ;;
        esac ;;
    positionals)
        case "$2" in
        '') echo '' ;;
        'run') echo '' ;;
        'sync') echo '' ;;
        'send') echo '' ;;
        'sendmail') echo '' ;;
        'status') echo '' ;;
        'check') echo '' ;;
        'init') echo '' ;;
        'password') echo '' ;;
        'password set') echo 'imap pop3 smtp' ;;
        'oauth') echo '' ;;
        'oauth login') echo '' ;;
        'import') echo '' ;;
        'import mbsync') echo '@file' ;;
        'import offlineimap') echo '@file' ;;
        'import msmtp') echo '@file' ;;
        'mailboxes') echo '' ;;
        'completion') echo 'bash zsh fish' ;;
        'man') echo '' ;;
        esac ;;
    esac
}

_syncd() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmdpath="" word i skip=0 words
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if ((skip)); then
            skip=0
            continue
        fi
        if [[ "$word" == -* ]]; then
            if [[ "$word" != *=* && " $(_syncd_table value-options "$cmdpath") " == *" $word "* ]]; then
                skip=1
            fi
        elif [[ " $(_syncd_table commands "$cmdpath") " == *" $word "* ]]; then
            cmdpath="${cmdpath:+$cmdpath }$word"
        fi
    done
    if ((skip)); then
        prev="${COMP_WORDS[COMP_CWORD-1]}"
        words="$(_syncd_table values "$cmdpath|$prev")"
        if [[ "$words" == "@file" ]]; then
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
        fi
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        words="$(_syncd_table options "$cmdpath")"
        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
        return 0
    fi
    words="$(_syncd_table commands "$cmdpath")"
    if [[ -n "$words" ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
        return 0
    fi
    words="$(_syncd_table positionals "$cmdpath")"
    if [[ " $words " == *" @file "* ]]; then
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
    words="${words//@file/}"
    if [[ -n "${words// /}" ]]; then
        mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -W "$words" -- "$cur")
    fi
    return 0
}

complete -F _syncd syncd
