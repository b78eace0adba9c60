#!/usr/bin/env bash
# A real one-node SLURM cluster for augbench's SLURM tests (make test-slurm): munge, MariaDB, slurmdbd
# (accounting: submitit reads job states with sacct), slurmctld and slurmd, partition "debug" with
# this host as its only node. Debian 12, as root.
#
#   bash tests/slurm/cluster.sh up       # install what is missing, start, wait for an idle node
#   bash tests/slurm/cluster.sh status   # each daemon, and the node; exit 0 only when all is up
#   bash tests/slurm/cluster.sh down     # cancel leftover jobs, stop every daemon started by `up`
#   bash tests/slurm/cluster.sh env      # prints: export SLURM_CONF=...
#
# Everything lives under one state dir, $SLURM_CI_DIR (default /var/spool/augbench-slurm): configs
# (etc/), munge key and socket, the MariaDB data, SLURM state, pid files (run/) and logs (log/).
# Nothing under /etc is written: SLURM commands find this cluster through SLURM_CONF, which `up`
# prints and `env` exports; jobs inherit it (sbatch exports the environment).
#
# Exit status of `up`: 0 ready (one line on stdout), 3 this machine cannot run the daemons (not root,
# packages unavailable, a daemon does not start): ONE line on stderr says why, and whatever had been
# started is stopped again. CI prints that line and skips the SLURM tests.
set -uo pipefail

S=${SLURM_CI_DIR:-/var/spool/augbench-slurm}
DB_PORT=${SLURM_CI_DB_PORT:-13306}   # MariaDB on 127.0.0.1 only; not 3306, to stay clear of a system server
CTLD_PORT=${SLURM_CI_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_CI_SLURMD_PORT:-6818}
DBD_PORT=${SLURM_CI_DBD_PORT:-6819}
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
DAEMONS=(munged mariadb slurmdbd slurmctld slurmd)
H=$(hostname -s)
export SLURM_CONF=$S/etc/slurm.conf
MUNGE_SOCKET=$S/munge/munge.socket
PROG=cluster.sh

skip() { echo "$PROG: cannot run a SLURM cluster here: $*" >&2; exit 3; }
pid_of() { local f=$S/run/$1.pid; [ -s "$f" ] && cat "$f" 2>/dev/null | head -1 | tr -dc 0-9; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
node_state() { timeout 10 sinfo -h -n "$H" -o %t 2>/dev/null | head -1; }
last_log() { [ -s "$1" ] && grep -v '^\s*$' "$1" | tail -1 | cut -c1-200; }
wait_for() {  # seconds, command...: poll every 0.2 s
    local end=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.2; done
}

all_up() {
    local d; for d in "${DAEMONS[@]}"; do alive "$d" || return 1; done
    case $(node_state) in idle|mix|mixed|alloc|allocated|comp|completing) return 0 ;; *) return 1 ;; esac
}

# --- down ---------------------------------------------------------------------------------------

stop_daemons() {  # names: SIGTERM to all, wait up to 20 s, then SIGKILL; the pid files go either way
    local d p i pids=()
    for d in "$@"; do
        p=$(pid_of "$d")
        [ -n "$p" ] && kill "$p" 2>/dev/null && pids+=("$p")
        rm -f "$S/run/$d.pid"
    done
    for i in $(seq 100); do
        alive_pids "${pids[@]}" || return 0
        sleep 0.2
    done
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    return 0
}

alive_pids() {  # pids...: whether any of them is still running
    local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1
}

cmd_down() {
    if alive slurmctld; then
        # jobs left by a test: cancelled (recorded as CANCELLED in accounting), then given KillWait to go
        timeout 10 scancel --full --user="$(id -un)" >/dev/null 2>&1 || true
        wait_for 15 bash -c '[ -z "$(squeue -h -o %i 2>/dev/null)" ]' || true
    fi
    # in waves: slurmctld reports to slurmdbd, which writes to MariaDB, all through munge
    stop_daemons slurmd slurmctld
    stop_daemons slurmdbd
    stop_daemons mariadb munged
    # a job step that outlived its slurmd (linuxproc tracking) would keep its CPUs busy: end those too
    pkill_steps
    echo "$PROG: down"
}

pkill_steps() {  # slurmstepd processes of this cluster only (their spool dir is ours)
    local p
    for p in $(pgrep -x slurmstepd 2>/dev/null); do
        grep -qs "$S" /proc/"$p"/cmdline /proc/"$p"/environ 2>/dev/null && kill -9 "$p" 2>/dev/null
    done
    return 0
}

# --- status -------------------------------------------------------------------------------------

cmd_status() {
    local d ok=0
    for d in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$d"; then printf '%-10s running (pid %s)\n' "$d" "$(pid_of "$d")"
        else printf '%-10s not running\n' "$d"; ok=1; fi
    done
    if alive slurmctld; then
        printf '%-10s %s\n' node "$H: $(node_state || echo '?')"
        timeout 10 squeue -h -o '%-8i %-10T %-12r %j' 2>/dev/null | sed 's/^/job       /'
    fi
    echo "SLURM_CONF=$SLURM_CONF"
    all_up || ok=1
    return $ok
}

# --- up -----------------------------------------------------------------------------------------

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || skip "packages missing (${missing[*]}) and no apt-get"
    export DEBIAN_FRONTEND=noninteractive
    mkdir -p "$S/log"
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >"$S/log/apt.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || skip "apt-get install ${missing[*]} failed: $(last_log "$S/log/apt.log")"
}

write_configs() {
    local ncpu mem
    ncpu=$(nproc)
    # what the node offers jobs: 85% of RAM, the rest for the daemons and the test process itself
    mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 * 85 / 100 ))
    cat >"$S/etc/slurmdbd.conf" <<CONF
# written by tests/slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$S/run/slurmdbd.pid
LogFile=$S/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=augbench
StorageLoc=slurm_acct_db
CONF
    chmod 600 "$S/etc/slurmdbd.conf"   # slurmdbd refuses a config that others can read
    cat >"$S/etc/slurm.conf" <<CONF
# written by tests/slurm/cluster.sh: one node, partition "debug"
ClusterName=augbench-ci
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# our own munged (socket under the state dir). cred_expire is also how long a requeued job waits
# before it is eligible again (Reason=BeginTime; default 120 s): 10 s lets requeue tests finish fast
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
MailProg=/bin/true
MpiDefault=none
# no cgroups in a container or gVisor sandbox: track processes by parentage
ProctrackType=proctrack/linuxproc
# pin each job to its CPUs; without it all threads of all jobs share every core
TaskPlugin=task/affinity
# CPUs and memory are consumable: two 1-CPU jobs run side by side, a job asking too much is refused
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job that asks no memory gets its share per CPU, not the whole node (the default), which would
# serialise every job behind it
DefMemPerCPU=$(( mem / ncpu ))
# a job that can never run here (more CPUs than the node has) is refused by sbatch at once, as one
# asking too much memory is; the default accepts it and leaves it PENDING (PartitionConfig) forever
EnforcePartLimits=ALL
# a node that was down (the daemons restarted) comes back by itself
ReturnToService=2
# requeue is what submitit does on a time limit (scontrol requeue from its USR1 handler); allowed by
# default, said here because the tests depend on it
JobRequeue=1
# accounting: submitit reads job states through sacct, and sacct needs slurmdbd
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# with auth/munge this names the munge socket for talking to slurmdbd (AuthInfo's is not used there)
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
# the main scheduling pass every 5 s (default 60 s): a requeued job that becomes eligible (above)
# starts within seconds, not at the next minute's pass
SchedulerParameters=sched_interval=5
# SIGTERM -> SIGKILL grace on scancel, requeue and time limit (default 30 s): enough for a run to
# finish the batch it is in and write its metrics.json; shorter would make tests shorter but flaky
KillWait=30
# a time limit is a time limit (the default, said because the time-limit tests count on it)
OverTimeLimit=0
NodeName=$H NodeAddr=127.0.0.1 CPUs=$ncpu RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    install -d -o munge -g munge -m 755 "$S/munge"   # socket dir: munged wants it searchable by all
    if [ ! -s "$S/munge/munge.key" ]; then
        mungekey --create --keyfile="$S/munge/munge.key" >>"$S/log/munged.log" 2>&1 \
            || dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$S/munge/munge.key"; chmod 400 "$S/munge/munge.key"
    touch "$S/log/munged.log"; chown munge:munge "$S/log/munged.log"
    install -o munge -g munge -m 644 /dev/null "$S/run/munged.pid"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" --key-file="$S/munge/munge.key" \
        --pid-file="$S/run/munged.pid" --log-file="$S/log/munged.log" --seed-file="$S/munge/munged.seed" \
        >>"$S/log/munged.log" 2>&1 || fail munged "$S/log/munged.log"
    wait_for 10 bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'" \
        || fail "munged (no credential round trip)" "$S/log/munged.log"
}

mariadb_sql() { mariadb --no-defaults --protocol=socket --socket="$S/mysql/mysqld.sock" -uroot "$@"; }

start_mariadb() {
    install -d -o mysql -g mysql -m 750 "$S/mysql"
    touch "$S/log/mariadb.log"; chown mysql:mysql "$S/log/mariadb.log"
    if [ ! -d "$S/mysql/data/mysql" ]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$S/mysql/data" --skip-test-db \
            --auth-root-authentication-method=socket >>"$S/log/mariadb.log" 2>&1 \
            || fail "mariadb-install-db" "$S/log/mariadb.log"
    fi
    install -o mysql -g mysql -m 644 /dev/null "$S/run/mariadb.pid"
    /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$S/mysql/data" \
        --socket="$S/mysql/mysqld.sock" --pid-file="$S/run/mariadb.pid" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --log-error="$S/log/mariadb.log" \
        --innodb-buffer-pool-size=64M >/dev/null 2>&1 &
    echo $! >"$S/run/mariadb.pid"   # mariadbd rewrites it with the same pid
    wait_for 60 mariadb_sql -e 'select 1' || fail mariadbd "$S/log/mariadb.log"
    mariadb_sql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'augbench';
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'augbench';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" >>"$S/log/mariadb.log" 2>&1 \
        || fail "mariadb (creating the accounting database)" "$S/log/mariadb.log"
}

start_slurm() {
    # slurmdbd finds slurmdbd.conf next to $SLURM_CONF; sacctmgr reads slurm.conf (written first)
    /usr/sbin/slurmdbd >>"$S/log/slurmdbd.log" 2>&1 || fail slurmdbd "$S/log/slurmdbd.log"
    wait_for 60 sacctmgr -n list cluster || fail "slurmdbd (sacctmgr gets no answer)" "$S/log/slurmdbd.log"
    # slurmctld keeps its state (job ids go on rising, so sacct never mixes an old job with a new one)
    /usr/sbin/slurmctld >>"$S/log/slurmctld.log" 2>&1 || fail slurmctld "$S/log/slurmctld.log"
    wait_for 30 scontrol ping || fail "slurmctld (scontrol ping fails)" "$S/log/slurmctld.log"
    /usr/sbin/slurmd -N "$H" >>"$S/log/slurmd.log" 2>&1 || fail slurmd "$S/log/slurmd.log"
    # a node left DOWN/DRAIN by an earlier run is resumed; ReturnToService=2 does the rest
    wait_for 60 bash -c "sinfo -h -n '$H' -o %t | grep -qx idle || { scontrol update nodename='$H' state=resume; false; }" \
        || fail "slurmd (node $H is $(node_state || echo unknown), not idle)" "$S/log/slurmd.log"
}

fail() {  # what, log file: stop what was started, one line, exit 3
    local why=$1 log=${2:-}
    local detail; detail=$( [ -n "$log" ] && last_log "$log" )
    cmd_down >/dev/null 2>&1
    skip "$why did not start${detail:+: $detail}"
}

cmd_up() {
    local t0; t0=$(date +%s.%N)
    [ "$(id -u)" -eq 0 ] || skip "not root (the daemons need root)"
    [ "$(uname -s)" = Linux ] || skip "not Linux"
    mkdir -p "$S" || skip "cannot create $S"
    chmod 755 "$S"   # munged refuses sockets under group/other-writable directories
    if all_up; then
        echo "slurm ready (already up): partition debug, node $H; export SLURM_CONF=$SLURM_CONF"
        return 0
    fi
    install_packages
    cmd_down >/dev/null 2>&1   # a partially started cluster: start again from nothing running
    mkdir -p "$S/etc" "$S/run" "$S/log" "$S/state" "$S/spool"
    write_configs
    start_munge
    start_mariadb
    start_slurm
    printf 'slurm ready in %.1f s: partition debug, node %s (%s CPUs); export SLURM_CONF=%s\n' \
        "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$H" "$(nproc)" "$SLURM_CONF"
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 up|down|status|env   (state dir: \$SLURM_CI_DIR, now $S)" >&2; exit 2 ;;
esac
