#!/usr/bin/env bash
# Tear down the cluster scripts/slurm/up.sh started: cancel its jobs, stop its daemons
# (by the pids up.sh recorded, nothing else), remove its directory. Safe to run twice.
# The packages stay installed, so the next up.sh starts in seconds.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

STARTED=$(date +%s)
if [ ! -d "$SLURM_DIR" ]; then
    log "nothing to tear down ($SLURM_DIR does not exist)"
    exit 0
fi
export SLURM_CONF=$ETC/slurm.conf

if pid_of slurmctld >/dev/null; then
    jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null
        for _ in $(seq 40); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
fi

stop() {
    # TERM, then KILL after 20 s, one daemon of ours by its recorded pid
    local name=$1 pid
    pid=$(pid_of "$name") || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 40); do
        kill -0 "$pid" 2>/dev/null || { log "stopped $name ($pid)"; return 0; }
        sleep 0.5
    done
    log "$name ($pid) ignored TERM for 20 s: killing it"
    kill -KILL "$pid" 2>/dev/null
}

for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop "${DAEMONS[i]}"
done

# job step daemons (slurmstepd) outlive slurmd by design; ours are the ones whose
# command line names a job of this cluster's spool directory
for p in /proc/[0-9]*; do
    [ -r "$p/cmdline" ] || continue
    case "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" in
    slurmstepd:*)
        if grep -qs "$SLURM_DIR" "$p/environ" 2>/dev/null; then
            log "killing leftover $(tr '\0' ' ' <"$p/cmdline") (${p#/proc/})"
            kill -KILL "${p#/proc/}" 2>/dev/null
        fi
        ;;
    esac
done

rm -rf "$SLURM_DIR"
log "down in $(( $(date +%s) - STARTED )) s"
