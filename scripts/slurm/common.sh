# Shared by up.sh and down.sh (sourced): where the throw-away cluster lives.
#
# Everything the cluster writes (config, munge key and socket, MariaDB data,
# state, spool, logs, pid files) is under one directory, so tearing it down is
# "stop the daemons, remove the directory"; nothing goes to /etc or /var.

SLURM_DIR=${LIPSPEECH_SLURM_DIR:-/tmp/lipspeech-slurm}
ETC=$SLURM_DIR/etc
RUN=$SLURM_DIR/run
LOG=$SLURM_DIR/log
# the daemons in start order; down.sh stops them in reverse
DAEMONS=(mariadbd munged slurmdbd slurmctld slurmd)

log() { echo "slurm-local: $*" >&2; }

die() {
    log "ERROR: $*"
    exit 1
}

pid_of() {
    # pid of one of our daemons from its pid file, if that process is alive
    local f=$RUN/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(head -n1 "$f" | tr -dc 0-9)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

tail_logs() {
    # the end of every daemon log, for a failure message
    local f
    for f in "$LOG"/*.log; do
        [ -s "$f" ] || continue
        echo "----- $f (last 25 lines)" >&2
        tail -n 25 "$f" >&2
    done
}
