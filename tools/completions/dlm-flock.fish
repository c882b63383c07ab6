complete -c dlm-flock -l mode -d 'Take the lock in MODE (NL, CR, CW, PR, PW, EX, any case); -s is PR, -x is EX' -r -f -a "NL\t'Null: no access; keeps the resource (and its lock value block) alive'
CR\t'Concurrent read'
CW\t'Concurrent write'
PR\t'Protected read: shared'
PW\t'Protected write: one writer, concurrent readers'
EX\t'Exclusive'"
complete -c dlm-flock -s w -l timeout -l wait -d 'Fail if the lock is not had within SECONDS (fractions allowed; 0 is -n); --wait is the same' -r
complete -c dlm-flock -s E -l conflict-exit-code -d 'Exit status when the lock is not had with -n or -w (0 to 255)' -r
complete -c dlm-flock -s c -l command -d 'Run STRING with `/bin/sh -c` instead of COMMAND' -r
complete -c dlm-flock -l lockspace -d 'The lockspace of the lock; created (device mode 0600) if it does not exist, which needs CAP_SYS_ADMIN' -r -f
complete -c dlm-flock -l generate -d 'Print the man page (man) or a shell completion script (complete-bash, complete-zsh, complete-fish) to standard output, and exit' -r -f -a "man\t'The man page (roff): `man -l` shows it'
complete-bash\t'The bash completion script'
complete-zsh\t'The zsh completion script (a `_NAME` file for `$fpath`)'
complete-fish\t'The fish completion script'"
complete -c dlm-flock -s s -l shared -d 'Take a shared lock (mode PR): other shared holders may hold it at the same time'
complete -c dlm-flock -s x -s e -l exclusive -d 'Take an exclusive lock (mode EX), the default (-e is the same)'
complete -c dlm-flock -s n -l nonblock -l nb -d 'Fail rather than wait if the lock cannot be had at once (exit with the conflict exit code); --nb is the same'
complete -c dlm-flock -s o -l close -d 'Accepted for flock(1) compatibility; does nothing: the command never inherits the lock\'s descriptor'
complete -c dlm-flock -l verbose -d 'Say on standard error how long getting the lock took, and what runs'
complete -c dlm-flock -s u -l unlock -d 'flock(1)\'s -u (unlock a descriptor): refused with the reason'
complete -c dlm-flock -s F -l no-fork -d 'flock(1)\'s -F (no fork): refused with the reason'
complete -c dlm-flock -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dlm-flock -s V -l version -d 'Print version'
