#!/usr/bin/env bash
# Bring up a throw-away single-node SLURM cluster on this machine, with accounting
# (slurmdbd + MariaDB, so `sacct` works, as Snakemake's slurm executor needs).
#
#   scripts/slurm/up.sh            install what is missing (apt-get), start the daemons
#   . /tmp/lipspeech-slurm/env.sh  point sbatch/sacct/... at it (SLURM_CONF)
#   scripts/slurm/down.sh          stop it and remove its directory
#
# No systemd: the daemons are started directly, as root, each with its files
# under $LIPSPEECH_SLURM_DIR (default /tmp/lipspeech-slurm), on free ports found
# from $LIPSPEECH_SLURM_PORT (default 16817) upward, so a real SLURM or MariaDB
# on this machine is left alone. The node is this machine (`hostname -s`) with
# CPUs=$(nproc) and RealMemory = MemTotal less a margin; one partition "debug";
# one account "lipspeech" with the calling user in it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

STARTED=$(date +%s)
TIMEOUT=${LIPSPEECH_SLURM_TIMEOUT:-60}   # seconds each daemon gets to become ready

# --- 1. packages -------------------------------------------------------------------
need=()
command -v munged >/dev/null 2>&1 || need+=(munge)
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || need+=(slurmd)
command -v slurmdbd >/dev/null 2>&1 || need+=(slurmdbd)
command -v sbatch >/dev/null 2>&1 && command -v sacctmgr >/dev/null 2>&1 || need+=(slurm-client)
command -v mariadbd >/dev/null 2>&1 && command -v mariadb-install-db >/dev/null 2>&1 || need+=(mariadb-server)
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing: ${need[*]} (no apt-get here: install SLURM, munge and MariaDB by hand)"
    if [ "$(id -u)" -ne 0 ]; then
        die "missing packages; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need[*]}"
    fi
    log "installing: ${need[*]}"
    t0=$(date +%s)
    # Debian's maintainer scripts start each daemon with its system-wide config (MariaDB on
    # 3306, munged with /etc/munge); a policy-rc.d that says "no" keeps them stopped.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } || rc=$?
    [ "$made_policy" = 1 ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get install failed (exit $rc)"
    log "installed in $(( $(date +%s) - t0 )) s"
fi
[ "$(id -u)" -eq 0 ] || die "the daemons must run as root (slurmd starts jobs as their users); run: sudo $0"

# --- 2. a fresh directory -------------------------------------------------------------
for d in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$d"); then
        die "$d is already running from $SLURM_DIR (pid $pid): run scripts/slurm/down.sh first"
    fi
done
rm -rf "$SLURM_DIR"
mkdir -p "$ETC" "$RUN" "$LOG" "$SLURM_DIR/state" "$SLURM_DIR/spool" "$SLURM_DIR/munge" "$SLURM_DIR/mysql"
chmod 700 "$SLURM_DIR/munge"

# --- 3. node facts and free ports -------------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
# leave the OS, the daemons and Snakemake itself room: 10%, at least 512 MB
MARGIN=$(( MEM_MB / 10 > 512 ? MEM_MB / 10 : 512 ))
REAL_MB=$(( MEM_MB - MARGIN ))
[ "$REAL_MB" -gt 256 ] || die "only $MEM_MB MB of memory"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=" "
next_free_port() {
    local p=$1
    while port_busy "$p" || [[ "$taken" == *" $p "* ]]; do
        p=$((p + 1))
        [ "$p" -lt 65000 ] || die "no free port found from $1 upward"
    done
    taken="$taken$p "
    echo "$p"
}
BASE=${LIPSPEECH_SLURM_PORT:-16817}
CTLD_PORT=$(next_free_port "$BASE")
SLURMD_PORT=$(next_free_port "$((CTLD_PORT + 1))")
DBD_PORT=$(next_free_port "$((SLURMD_PORT + 1))")
DB_PORT=$(next_free_port "$((DBD_PORT + 1))")
log "node $NODE: $CPUS CPUs, RealMemory $REAL_MB MB; ports slurmctld $CTLD_PORT slurmd $SLURMD_PORT slurmdbd $DBD_PORT mariadb $DB_PORT"

# --- helpers -------------------------------------------------------------------------
fail() {
    log "ERROR: $*"
    tail_logs
    if [ -n "${LIPSPEECH_SLURM_KEEP:-}" ]; then
        log "left running for inspection (LIPSPEECH_SLURM_KEEP): $SLURM_DIR; scripts/slurm/down.sh stops it"
    else
        log "stopping what was started"
        "$HERE/down.sh" >/dev/null 2>&1 || true
    fi
    exit 1
}

start() {
    # start one daemon in the foreground mode of its own, detached, logging to $LOG/<name>.out
    local name=$1
    shift
    setsid "$@" >"$LOG/$name.out" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
}

wait_for() {
    # wait_for NAME DESCRIPTION COMMAND...: poll COMMAND (5 s each try) until it succeeds,
    # while NAME stays alive, for at most $TIMEOUT seconds
    local name=$1 what=$2 deadline=$(( $(date +%s) + TIMEOUT ))
    shift 2
    until timeout 5 "$@" >/dev/null 2>&1; do
        pid_of "$name" >/dev/null || fail "$name exited before $what"
        [ "$(date +%s)" -lt "$deadline" ] || fail "$name: $what did not happen within $TIMEOUT s"
        sleep 0.5
    done
}

export SLURM_CONF=$ETC/slurm.conf
MUNGE_SOCKET=$SLURM_DIR/munge/munge.socket

# --- 4. MariaDB (accounting database) ----------------------------------------------------
DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
mariadb-install-db --no-defaults --datadir="$SLURM_DIR/mysql" --user=root --auth-root-authentication-method=socket \
    --skip-test-db >"$LOG/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed (see $LOG/mariadb-install.log)"
start mariadbd mariadbd --no-defaults --user=root --datadir="$SLURM_DIR/mysql" --socket="$RUN/mysqld.sock" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$RUN/mysqld.pid" \
    --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900
wait_for mariadbd "MariaDB answering" mariadb-admin --no-defaults --socket="$RUN/mysqld.sock" -u root ping
mariadb --no-defaults --socket="$RUN/mysqld.sock" -u root <<SQL || fail "creating the accounting database failed"
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- 5. munge (authentication) -----------------------------------------------------------
# munged insists that its key be private to the user it runs as: root here
dd if=/dev/urandom of="$SLURM_DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$SLURM_DIR/munge/munge.key"
start munged munged --foreground --force --key-file="$SLURM_DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$RUN/munged.pid.own" --log-file="$LOG/munged.log" --seed-file="$SLURM_DIR/munge/munged.seed"
wait_for munged "munge answering" sh -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"

# --- 6. configuration ----------------------------------------------------------------------
cat >"$ETC/slurm.conf" <<EOF
# generated by scripts/slurm/up.sh for a throw-away single-node cluster
ClusterName=lipspeech
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid.own
SlurmdPidFile=$RUN/slurmd.pid.own
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups (containers, no systemd): track job processes through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=10
MinJobAge=300
# accounting through slurmdbd, so that sacct knows every job (Snakemake polls it); keep the comments
# Snakemake gives each job (rule and wildcards)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# the munge socket for talking to slurmdbd (AuthInfo covers the rest)
AccountingStoragePass=$MUNGE_SOCKET
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$ETC/slurmdbd.conf" <<EOF
# generated by scripts/slurm/up.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdAddr=127.0.0.1
DbdHost=$NODE
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid.own
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$ETC/slurmdbd.conf"   # slurmdbd refuses a readable password file
# Client commands find the cluster through SLURM_CONF. Snakemake's slurm-jobstep plugin
# drops every SLURM_* variable before it calls srun inside a job (a real cluster's
# config is in /etc/slurm), so the commands are also wrapped to carry it: env.sh puts
# the wrappers first on PATH, and sbatch --export=ALL hands that PATH to the jobs.
mkdir -p "$SLURM_DIR/bin"
for cmd in srun sbatch salloc squeue sacct sacctmgr scontrol sinfo scancel sstat sshare; do
    real=$(command -v "$cmd") || continue
    case "$real" in "$SLURM_DIR"/*) die "$cmd resolves to $real: remove $SLURM_DIR/bin from PATH" ;; esac
    printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$ETC/slurm.conf" "$real" >"$SLURM_DIR/bin/$cmd"
    chmod 755 "$SLURM_DIR/bin/$cmd"
done
cat >"$SLURM_DIR/env.sh" <<EOF
# source me: SLURM commands (sbatch, squeue, sacct, ...) then use the local cluster
export SLURM_CONF=$ETC/slurm.conf
case ":\$PATH:" in *":$SLURM_DIR/bin:"*) ;; *) export PATH=$SLURM_DIR/bin:\$PATH ;; esac
EOF

# --- 7. slurmdbd, the cluster's accounts, slurmctld, slurmd -----------------------------------
# slurmdbd reads slurmdbd.conf from the directory of \$SLURM_CONF
start slurmdbd slurmdbd -D
wait_for slurmdbd "slurmdbd answering" sacctmgr -n show cluster
USER_NAME=${SUDO_USER:-$(id -un)}
sacctmgr -i add cluster lipspeech >/dev/null || fail "sacctmgr add cluster failed"
sacctmgr -i add account lipspeech Description=lipspeech Organization=lipspeech >/dev/null || fail "sacctmgr add account failed"
sacctmgr -i add user "$USER_NAME" Account=lipspeech DefaultAccount=lipspeech >/dev/null || fail "sacctmgr add user failed"
[ "$USER_NAME" = root ] || sacctmgr -i add user root Account=lipspeech DefaultAccount=lipspeech >/dev/null || true

start slurmctld slurmctld -D -f "$SLURM_CONF"
wait_for slurmctld "slurmctld answering" scontrol ping
start slurmd slurmd -D -f "$SLURM_CONF" -N "$NODE"
wait_for slurmd "node $NODE idle" bash -c "[ \"\$(sinfo -h -n $NODE -o %T)\" = idle ]"

# --- 8. a job through the whole chain (sbatch -> slurmd -> accounting) ------------------------
probe=$(sbatch --parsable -A lipspeech -t 1 -n 1 -c 1 --mem 64 -o "$LOG/probe.out" --wrap "srun -n1 hostname") \
    || fail "sbatch of the probe job failed"
wait_for slurmctld "probe job $probe COMPLETED in sacct" \
    bash -c "sacct -n -X -P -j $probe -o State | grep -qx COMPLETED"
grep -qx "$NODE" "$LOG/probe.out" || fail "probe job output: $(cat "$LOG/probe.out" 2>/dev/null)"

log "up in $(( $(date +%s) - STARTED )) s: $CPUS CPUs, $REAL_MB MB on node $NODE, partition debug, account lipspeech"
log "use it with: . $SLURM_DIR/env.sh"
