# Shared shell helpers for deploy/setup.sh, deploy/up.sh and deploy/down.sh. Source, don't run.
#
# Layout (paths from contract.settings.Settings, overridable with RECO_RUN_DIR / RECO_STACK_DIR):
#   .stack/          installed tools: kafka/libs (Maven), triton (pytriton wheel), model-env (numpy<2)
#   .run/pids/*.pid  one per background service
#   .run/logs/*.log  stdout+stderr of each service
#   .run/<service>/  each service's data
#   .run/prometheus-config/  the rendered Prometheus config and its worker targets (workers.json)
#
# Workers: `WORKERS=N deploy/up.sh` runs N Faust workers in one consumer group. Worker 1 is the
# service `worker` (worker.pid, worker.log), worker i > 1 is `worker-i` (worker-i.pid, worker-i.log);
# worker i has group instance id worker-i and ports RECO_METRICS_PORT + i - 1 (metrics) and
# RECO_WORKER_WEB_PORT + i - 1 (Faust web).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python

UV=$VENV/bin/uv   # the venv's own: deploy/setup.sh pip-installs it first, from its hashed block of requirements.lock

# The block of one package in a hashed lock file: its `name==version \` line and its --hash lines.
locked() {  # NAME FILE
    awk -v name="$1" 'BEGIN {IGNORECASE = 1}
        /^[^ #]/ {inblock = (index($0, name "==") == 1)} inblock && !/^ *#/' "$2" | sed '$ s/ *\\$//' | grep . \
        || { echo "no '$1' in $2" >&2; return 1; }
}
locked_version() { locked "$1" "$2" | head -1 | sed -E 's/^[^=]+==([^ ]+).*/\1/'; }  # NAME FILE

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Ports and paths come from the one Settings object (contract/settings.py), so RECO_* env vars apply
# here exactly as in the Python code. KAFKA_BROKERS (`make up KAFKA_BROKERS=3`) is RECO_KAFKA_BROKERS;
# with several brokers RECO_BOOTSTRAP_SERVERS is exported listing them all, for every client started
# from here (services, create_topics.py, the tests under deploy/test.sh).
load_settings() {
    local out
    [[ -x $PY ]] || die "no $PY: run \`make setup\` first (settings come from contract/settings.py)"
    if [[ -n ${KAFKA_BROKERS:-} ]]; then export RECO_KAFKA_BROKERS=$KAFKA_BROKERS; fi
    out=$(cd "$ROOT" && "$PY" - <<'EOF'
from contract.settings import get_settings
s = get_settings()
host, _, port = s.bootstrap_servers.split(",")[0].rpartition(":")
vals = dict(RUN_DIR=s.run_dir, STACK_DIR=s.stack_dir, MODEL_REPO=s.model_repo, MODEL_NAME=s.model_name,
            KAFKA_HOST=host or "127.0.0.1", KAFKA_PORT=port, KAFKA_BROKERS=s.kafka_brokers, REDIS_PORT=s.redis_port,
            TRITON_HTTP_PORT=s.triton_http_port, TRITON_GRPC_PORT=s.triton_grpc_port,
            TRITON_METRICS_PORT=s.triton_metrics_port, PROMETHEUS_PORT=s.prometheus_port,
            WORKER_METRICS_PORT=s.metrics_port, WORKER_WEB_PORT=s.worker_web_port,
            MAX_MESSAGE_BYTES=s.max_message_bytes, TOPIC_PARTITIONS=s.topic_partitions,
            KAFKA_SECURITY=s.kafka_security_protocol, REDIS_USER=s.redis_user,
            REPLICATION_FACTOR=s.replication_factor, MIN_INSYNC_REPLICAS=s.min_insync_replicas)
# Secrets go to the services that need them (the broker's config, Redis's ACL file), never to argv.
secrets = dict(KAFKA_ADMIN_PASSWORD=s.kafka_admin_password, KAFKA_CONTROLLER_PASSWORD=s.kafka_controller_password,
               REDIS_PASSWORD=s.redis_password)
vals.update({k: v.get_secret_value() for k, v in secrets.items()})
for k, v in vals.items():
    print(f"{k}='{v}'")
EOF
    ) || die "could not read the settings (contract/settings.py); see the error above"
    eval "$out"
    KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
    PID_DIR=$RUN_DIR/pids
    LOG_DIR=$RUN_DIR/logs
    export RECO_KAFKA_BROKERS=$KAFKA_BROKERS
    if (( KAFKA_BROKERS > 1 )); then
        local i servers=()
        for ((i = 1; i <= KAFKA_BROKERS; i++)); do servers+=("$KAFKA_HOST:$(kafka_port client "$i")"); done
        RECO_BOOTSTRAP_SERVERS=$(IFS=,; echo "${servers[*]}")
        export RECO_BOOTSTRAP_SERVERS
    fi
}

# Kafka broker i (1-based): with one broker the service `kafka` (data in $RUN_DIR/kafka, as ever),
# with several `kafka-i` (data in $RUN_DIR/kafka-i); `kafka` in up.sh and down.sh means them all.
# Broker i listens for clients (and the other brokers) on the first bootstrap port + 2(i - 1) and
# for its controller on the controller port + 2(i - 1): 9092/9093, 9094/9095, 9096/9097 by default.
kafka_service() { if (( KAFKA_BROKERS == 1 )); then echo kafka; else echo "kafka-$1"; fi; }
kafka_index() { if [[ $1 == kafka ]]; then echo 1; else echo "${1#kafka-}"; fi; }
is_kafka_service() { [[ $1 == kafka || $1 =~ ^kafka-[1-9][0-9]*$ ]]; }
kafka_port() {  # client|controller INDEX
    case $1 in
        client) echo $((KAFKA_PORT + 2 * ($2 - 1))) ;;
        controller) echo $((KAFKA_CONTROLLER_PORT + 2 * ($2 - 1))) ;;
    esac
}

# The brokers running now that are not of this shape (KAFKA_BROKERS): `kafka` with several, `kafka-i` with one.
other_shape_brokers() {
    local name
    for name in $(running_brokers); do
        [[ $(kafka_service "$(kafka_index "$name")") == "$name" ]] || echo "$name"
    done
}

# The Kafka brokers running now (kafka, kafka-2, ...; by pid file, whatever KAFKA_BROKERS says).
running_brokers() {
    local f name
    for f in "$PID_DIR"/kafka.pid "$PID_DIR"/kafka-*.pid; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .pid)
        if is_kafka_service "$name" && running_pid "$name" >/dev/null; then echo "$name"; fi
    done
}

pid_file() { echo "$PID_DIR/$1.pid"; }

# Worker i (1-based) is the service `worker` for i = 1 and `worker-i` otherwise.
worker_service() { if (( $1 == 1 )); then echo worker; else echo "worker-$1"; fi; }
worker_index() { if [[ $1 == worker ]]; then echo 1; else echo "${1#worker-}"; fi; }
is_worker_service() { [[ $1 == worker || $1 =~ ^worker-([2-9]|[1-9][0-9]+)$ ]]; }
worker_port() {  # metrics|web INDEX
    case $1 in
        metrics) echo $((WORKER_METRICS_PORT + $2 - 1)) ;;
        web) echo $((WORKER_WEB_PORT + $2 - 1)) ;;
    esac
}

# The indices of the workers running now (by pid file; stale files are removed), ascending.
running_workers() {
    local f name
    for f in "$PID_DIR"/worker.pid "$PID_DIR"/worker-*.pid; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .pid)
        if is_worker_service "$name" && running_pid "$name" >/dev/null; then worker_index "$name"; fi
    done | sort -n
}

# Prints the pid of a running service, or fails when it is not running (a stale pid file is removed).
running_pid() {
    local f pid
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    # start_bg makes each service a session leader, so a live pid that leads its own session is
    # ours; anything else is a stale file whose pid was reused.
    # A killed service stays a zombie until reaped, and kill -0 still succeeds on it: not running.
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && [[ $(ps -o sid= -p "$pid" | tr -d ' ') == "$pid" ]] \
        && [[ $(ps -o stat= -p "$pid") != Z* ]]; then
        echo "$pid"
        return 0
    fi
    rm -f "$f"
    return 1
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_free_port() {  # NAME PORT
    if port_in_use "$2"; then
        local who
        who=$(ss -Hltnp "sport = :$2" 2>/dev/null | grep -o 'users:(([^)]*' | head -1)
        die "$1: port $2 is already in use${who:+ by ${who#users:((}} (not a service started by deploy/up.sh); stop it or change the port (RECO_* settings)"
    fi
}

# start_bg NAME COMMAND... : runs COMMAND in its own session (so stop_service can signal the whole
# process group, e.g. Triton's python stubs), stdout+stderr appended to $LOG_DIR/NAME.log.
start_bg() {
    local name=$1; shift
    local logf="$LOG_DIR/$name.log" pidf
    pidf=$(pid_file "$name")
    mkdir -p "$PID_DIR" "$LOG_DIR"
    printf '\n===== %s starting %s: %s\n' "$(date '+%F %T')" "$name" "$*" >>"$logf"
    rm -f "$pidf"
    # The inner bash writes its own pid and then execs the service, so the pid file holds the service.
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pidf" "$@" >>"$logf" 2>&1 </dev/null &
    local i
    for i in $(seq 50); do [[ -s $pidf ]] && break; sleep 0.1; done
    [[ -s $pidf ]] || die "$name: failed to start (no pid file); see $logf"
}

show_log_tail() {  # NAME [LINES]
    local logf="$LOG_DIR/$1.log" run errors
    [[ -f $logf ]] || return 0
    # Only this run's part of the log (start_bg writes a "===== ... starting" marker).
    run=$(awk '/^===== .* starting /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$logf")
    errors=$(grep -E '^E[0-9]{4} |ERROR|Error:|Exception|Traceback' <<<"$run" | grep -v CudaDriverHelper | tail -n 15 || true)
    if [[ -n $errors ]]; then
        log "error lines from $logf:"
        cut -c1-400 <<<"$errors" | sed 's/^/    /' >&2
    fi
    log "last ${2:-30} lines of $logf:"
    tail -n "${2:-30}" <<<"$run" | cut -c1-400 | sed 's/^/    /' >&2
}

# wait_until NAME TIMEOUT_S DESCRIPTION COMMAND... : polls COMMAND every 0.5 s while the service is
# alive; on timeout or death prints the log tail and fails.
wait_until() {
    local name=$1 timeout=$2 what=$3; shift 3
    local start=$SECONDS
    while ! "$@" >/dev/null 2>&1; do
        if ! running_pid "$name" >/dev/null; then
            log "ERROR: $name exited while waiting for $what"
            show_log_tail "$name"
            return 1
        fi
        if (( SECONDS - start >= timeout )); then
            log "ERROR: $name: $what not reached after ${timeout}s"
            show_log_tail "$name"
            return 1
        fi
        sleep 0.5
    done
    log "$name: $what ($((SECONDS - start))s)"
}

wait_for_port() { wait_until "$1" "$3" "port $2 open" port_in_use "$2"; }                  # NAME PORT TIMEOUT
wait_for_http() { wait_until "$1" "$3" "$2 -> 200" curl -sf -o /dev/null --max-time 2 "$2"; }  # NAME URL TIMEOUT

# stop_service NAME [TIMEOUT_S]: TERM the service's process group, KILL after the timeout.
stop_service() {
    local name=$1 timeout=${2:-20} pid
    # $name.process.pid: the process a supervisor forks (a worker's); it goes with its supervisor.
    if ! pid=$(running_pid "$name"); then
        rm -f "$(pid_file "$name")" "$(pid_file "$name.process")"
        return 0
    fi
    log "$name: stopping (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local start=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        if (( SECONDS - start >= timeout )); then
            log "$name: still running after ${timeout}s, sending KILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.3
    done
    # Leftover children in the group (e.g. Triton python stubs) go too.
    if pgrep -g "$pid" >/dev/null 2>&1; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    rm -f "$(pid_file "$name")" "$(pid_file "$name.process")"
    log "$name: stopped"
}
