# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_dlm_lock_global_optspecs
    string join \n l/lockspace= m/mode= n/try w/timeout= p/persistent expedite lvb-read lvb-write= notify on-blocking= adopt convert= wait-file= hold= until-signal hold-until-file= orphan purge= t/timestamps json generate= h/help V/version
end

function __fish_dlm_lock_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_dlm_lock_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_dlm_lock_using_subcommand
    set -l cmd (__fish_dlm_lock_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -s l -l lockspace -d 'The lockspace; created (device mode 0600) if it does not exist, which needs CAP_SYS_ADMIN' -r -f
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -s m -l mode -d 'The mode, as an option (the same as MODE)' -r -f -a "NL\t'Null: no access; keeps the resource (and its lock value block) alive'
CR\t'Concurrent read'
CW\t'Concurrent write'
PR\t'Protected read: shared'
PW\t'Protected write: one writer, concurrent readers'
EX\t'Exclusive'"
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -s w -l timeout -d 'Give up on the request, and on each conversion, if not granted within SECONDS (it is cancelled). Also arms a watchdog: a DLM call still running SECONDS + 15 s after it began (the kernel can block a cancel for ever while the lockspace is stopped) prints `error: stuck: ...` and ends the program (status 8)' -r
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l lvb-write -d 'Write VALUE into the lock value block once the lock is held in PW or EX, published by the next conversion down or the release: text, or bytes in hex after 0x; at most 32 bytes (implies --lvb-read)' -r
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l on-blocking -d 'On a blocking notification while holding: ignore (only print it, the default), release (unlock and end), downconvert:MODE (convert down to MODE). Implies --notify' -r -f -a "ignore\t''
release\t''
downconvert:NL\t''
downconvert:CR\t''
downconvert:CW\t''
downconvert:PR\t''
downconvert:PW\t''
downconvert:EX\t''"
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l convert -d 'After the grant, convert to MODE (a step; steps run in the order given)' -r -f -a "NL\t'Null: no access; keeps the resource (and its lock value block) alive'
CR\t'Concurrent read'
CW\t'Concurrent write'
PR\t'Protected read: shared'
PW\t'Protected write: one writer, concurrent readers'
EX\t'Exclusive'"
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l wait-file -d 'After the grant, wait until PATH exists, answering blocking notifications (a step)' -r -F
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l hold -d 'Hold the lock SECONDS before releasing it' -r
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l hold-until-file -d 'Hold the lock until PATH exists (with --hold or --until-signal: whichever comes first)' -r -F
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l purge -d 'Purge the orphans of node NODEID (0: this node) and owner PID (0 or none: every owner), then exit. The owner the kernel records is the thread that made the request; dlm-lock makes its requests from its main thread, so the owner of its orphans is the pid it printed (`orphaned PID`)' -r
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l generate -d 'Print the man page (man) or a shell completion script (complete-bash, complete-zsh, complete-fish) to standard output, and exit' -r -f -a "man\t'The man page (roff): `man -l` shows it'
complete-bash\t'The bash completion script'
complete-zsh\t'The zsh completion script (a `_NAME` file for `$fpath`)'
complete-fish\t'The fish completion script'"
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -s n -l try -d 'Fail at once instead of waiting (LKF_NOQUEUE), for the request and each conversion'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -s p -l persistent -d 'A persistent lock (LKF_PERSISTENT): it survives this process as an orphan if not released'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l expedite -d 'Grant a new NL request at once (LKF_EXPEDITE)'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l lvb-read -l lvb -d 'Read the lock value block (LKF_VALBLK) and print it at the grant and at each conversion that reads it; --lvb is the same'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l notify -d 'Ask for blocking notifications and print `blocking` for each'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l adopt -d 'Adopt an orphan held in MODE (LKF_ORPHAN) instead of requesting the lock'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l until-signal -d 'Hold the lock until SIGINT, SIGTERM or SIGHUP, then release it and exit 0'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l orphan -d 'At the end leave the lock as an orphan instead of releasing it (needs --persistent or --adopt)'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -s t -l timestamps -d 'Start each line with the wall-clock time: seconds since the epoch, with microseconds'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -l json -d 'Print each event as one JSON object on a line'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -s V -l version -d 'Print version'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -a "versions" -d 'Print the DLM device protocol versions of the running kernel and of libdlm'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -a "ls" -d 'List this node\'s lockspaces, their members and each node\'s state, as dlm_controld reports them (like dlm_tool ls)'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -a "watch" -d 'Watch dlm_controld\'s view change (polling): one line per change of quorum, of a node\'s state in the cluster, of a lockspace, or of a member\'s state in a lockspace; first a line "watching" (with --json, {"event": "watching", ...})'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -a "status" -d 'Show this node\'s view of the cluster: quorum, each node, failures and fencing (like dlm_tool status)'
complete -c dlm-lock -n "__fish_dlm_lock_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand versions" -l json -d 'One JSON object on one line instead of text'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand versions" -s h -l help -d 'Print help'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand ls" -l json -d 'One JSON array on one line instead of text'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand ls" -s n -l nodes -d 'Also list every node the daemon knows in each lockspace, former members included (like dlm_tool ls -n)'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand ls" -s h -l help -d 'Print help'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand watch" -l interval -d 'Milliseconds between polls' -r
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand watch" -l for -d 'Stop after this many seconds (default: never)' -r
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand watch" -l json -d 'One JSON object per line instead of text'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand watch" -s h -l help -d 'Print help'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand status" -l json -d 'One JSON object on one line instead of dlm_tool\'s text'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand status" -s h -l help -d 'Print help'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand help; and not __fish_seen_subcommand_from versions ls watch status help" -f -a "versions" -d 'Print the DLM device protocol versions of the running kernel and of libdlm'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand help; and not __fish_seen_subcommand_from versions ls watch status help" -f -a "ls" -d 'List this node\'s lockspaces, their members and each node\'s state, as dlm_controld reports them (like dlm_tool ls)'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand help; and not __fish_seen_subcommand_from versions ls watch status help" -f -a "watch" -d 'Watch dlm_controld\'s view change (polling): one line per change of quorum, of a node\'s state in the cluster, of a lockspace, or of a member\'s state in a lockspace; first a line "watching" (with --json, {"event": "watching", ...})'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand help; and not __fish_seen_subcommand_from versions ls watch status help" -f -a "status" -d 'Show this node\'s view of the cluster: quorum, each node, failures and fencing (like dlm_tool status)'
complete -c dlm-lock -n "__fish_dlm_lock_using_subcommand help; and not __fish_seen_subcommand_from versions ls watch status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
