#!/usr/bin/env bash
# Start the local stack in the background and wait until each service is healthy; `make up` runs it.
#
#   bash deploy/up.sh                              # kafka redis prometheus triton worker
#   bash deploy/up.sh kafka redis prometheus       # just these (any order; started in stack order)
#   WORKERS=3 bash deploy/up.sh                    # three workers in one consumer group (default 1)
#   bash deploy/up.sh worker-2                     # just worker 2 (e.g. after deploy/down.sh worker-2)
#   KAFKA_BROKERS=3 bash deploy/up.sh              # a three-node Kafka cluster (default one node)
#   KAFKA_BROKERS=3 bash deploy/up.sh kafka-2      # just broker 2; returns once its replicas are in sync
#   UP_TIMEOUT=300 bash deploy/up.sh triton        # longer health wait per service (default 120 s)
#
# Everything binds to 127.0.0.1. Ports and paths come from contract.settings.Settings (RECO_* env).
# Logs: .run/logs/<service>.log, pids: .run/pids/<service>.pid, data: .run/<service>/.
# Idempotent: a service whose pid file points at a live process is left as it is.
# Workers (WORKERS=N, at most RECO_TOPIC_PARTITIONS): worker 1 is the service `worker`, worker i > 1
# is `worker-i`; worker i runs with RECO_WORKER_INSTANCE_ID=worker-i (static group membership),
# metrics on RECO_METRICS_PORT + i - 1 and Faust web on RECO_WORKER_WEB_PORT + i - 1 (9108.. and
# 6066.. by default). Workers already running above N are left running (deploy/down.sh worker
# stops every worker). Prometheus scrapes them through $RUN_DIR/prometheus-config/workers.json,
# rewritten here: workers 1..N plus any other worker running.
# Brokers (KAFKA_BROKERS=N, i.e. RECO_KAFKA_BROKERS): one node is the service `kafka`; with several,
# node i is `kafka-i` with ports RECO_BOOTSTRAP_SERVERS's + 2(i - 1) (deploy/lib.sh, kafka_port),
# every topic has min(3, N) replicas and clients get every broker in RECO_BOOTSTRAP_SERVERS.
# Run `make setup` (deploy/setup.sh) first; deploy/down.sh stops everything.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ALL=(kafka redis prometheus triton worker)
TIMEOUT=${UP_TIMEOUT:-120}

[[ -x $PY ]] || die "no $PY: run \`make setup\` first"
load_settings
mkdir -p "$PID_DIR" "$LOG_DIR"
WORKERS=${WORKERS:-1}
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a whole number >= 1 (got '$WORKERS')"
(( WORKERS <= TOPIC_PARTITIONS )) || die "WORKERS=$WORKERS is more than the $TOPIC_PARTITIONS partitions of \
the events topic (RECO_TOPIC_PARTITIONS): the extra workers would get no partition"
PROM_CONF_DIR=$RUN_DIR/prometheus-config

already() {  # NAME: true (with a note) when the service is up already
    local pid
    if pid=$(running_pid "$1"); then
        log "$1: already running (pid $pid)"
        return 0
    fi
    return 1
}

start_kafka() {
    local i name other
    other=$(other_shape_brokers)
    [[ -z $other ]] || die "kafka: $(echo $other) of another shape than KAFKA_BROKERS=$KAFKA_BROKERS runs:" \
        "\`bash deploy/down.sh kafka\` first (each shape keeps its own data)"
    # Every broker is launched before any is waited for: a node serves clients only once a
    # majority of the controller quorum is up.
    for i in "${broker_ids[@]}"; do already "$(kafka_service "$i")" || launch_broker "$i"; done
    for i in "${broker_ids[@]}"; do
        name=$(kafka_service "$i")
        wait_for_port "$name" "$(kafka_port client "$i")" "$TIMEOUT" || die "$name did not start"
    done
    # Topics are (re)checked on every run: cheap, and a wiped or new topic name gets created. It also
    # waits until every replica is in sync again, so a restarted broker is back when this returns.
    "$PY" deploy/create_topics.py --timeout "$TIMEOUT" \
        || { show_log_tail "$(kafka_service "${broker_ids[0]}")"; die "kafka: creating topics failed"; }
}

launch_broker() {  # INDEX
    local i=$1 libs=$STACK_DIR/kafka/libs name dir port controller_port
    name=$(kafka_service "$i")
    dir=$RUN_DIR/$name
    port=$(kafka_port client "$i")
    controller_port=$(kafka_port controller "$i")
    compgen -G "$libs/kafka_*.jar" >/dev/null || die "kafka: no jars in $libs: run \`make setup\`"
    command -v java >/dev/null || die "kafka: java not found: run \`make setup\`"
    require_free_port "$name" "$port"
    require_free_port "$name-controller" "$controller_port"
    mkdir -p "$dir/data"
    # A data directory formatted before the broker took SASL_SSL has no admin user to log in with.
    if [[ -f $dir/data/meta.properties && $KAFKA_SECURITY == SASL_SSL && ! -f $dir/scram-formatted ]]; then
        die "kafka: $dir/data was formatted without SCRAM users: \`make down WIPE=1\` (deletes the stack's data), then up again"
    fi
    local voters=() j
    for ((j = 1; j <= KAFKA_BROKERS; j++)); do voters+=("$j@127.0.0.1:$(kafka_port controller "$j")"); done
    # The effective config: deploy/kafka/server.properties with ports, log dir, replication and
    # (SASL_SSL) the listeners, TLS files and passwords; it holds secrets, so only this user can read it.
    (umask 077; {
        cat deploy/kafka/server.properties
        echo
        echo "# --- generated by deploy/up.sh ---"
        echo "node.id=$i"
        echo "controller.quorum.voters=$(IFS=,; echo "${voters[*]}")"
        echo "log.dirs=$dir/data"
        echo "message.max.bytes=$MAX_MESSAGE_BYTES"
        # Topics made without an explicit count (Faust's own, Kafka's internal ones) get these too.
        local key
        for key in default offsets.topic transaction.state.log share.coordinator.state.topic; do
            echo "$key.replication.factor=$REPLICATION_FACTOR"
        done
        for key in min.insync.replicas transaction.state.log.min.isr share.coordinator.state.topic.min.isr; do
            echo "$key=$MIN_INSYNC_REPLICAS"
        done
        if [[ $KAFKA_SECURITY == SASL_SSL ]]; then kafka_sasl_properties "$port" "$controller_port"; else
            echo "listeners=PLAINTEXT://$KAFKA_HOST:$port,CONTROLLER://127.0.0.1:$controller_port"
            echo "advertised.listeners=PLAINTEXT://$KAFKA_HOST:$port"
            echo "inter.broker.listener.name=PLAINTEXT"
            echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        fi
    } >"$dir/server.properties")
    local java_opts=(-Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
                     "-Dlog4j2.configurationFile=$ROOT/deploy/kafka/log4j2.properties")
    # First start: format the KRaft metadata log (and the admin's SCRAM credential: one user must
    # exist before anyone can log in to add the others) with the cluster's id: fresh for the first
    # node, read from another node's data when the cluster has one.
    if [[ ! -f $dir/data/meta.properties ]]; then
        local cluster_id scram=() pattern=kafka/data/meta.properties
        (( KAFKA_BROKERS > 1 )) && pattern="kafka-*/data/meta.properties"
        cluster_id=$(sed -n 's/^cluster.id=//p' "$RUN_DIR"/$pattern 2>/dev/null | head -1 || true)
        [[ -n $cluster_id ]] || cluster_id=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
        [[ $KAFKA_SECURITY == SASL_SSL ]] && scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]")
        log "$name: formatting storage in $dir/data (cluster id $cluster_id)"
        java "${java_opts[@]}" -cp "$libs/*" kafka.tools.StorageTool format \
            -t "$cluster_id" -c "$dir/server.properties" "${scram[@]}" >>"$LOG_DIR/kafka-format.log" 2>&1 \
            || { tail -20 "$LOG_DIR/kafka-format.log" >&2; die "$name: storage format failed"; }
        if [[ $KAFKA_SECURITY == SASL_SSL ]]; then touch "$dir/scram-formatted"; fi
    fi
    start_bg "$name" java "${java_opts[@]}" -cp "$libs/*" kafka.Kafka "$dir/server.properties"
}

# Clients: SASL_SSL with SCRAM-SHA-512 (users and ACLs: deploy/create_topics.py). The brokers talk
# to each other as admin over the same listener; the controller listeners take PLAIN with a password
# only the brokers know. Only the two super users bypass ACLs; for everyone else, no ACL means no access.
kafka_sasl_properties() {  # PORT CONTROLLER_PORT
    local tls=$STACK_DIR/tls
    [[ -f $tls/server.pem && -f $tls/ca.pem ]] || die "kafka: no TLS files in $tls: run \`make setup\`"
    [[ -n $KAFKA_ADMIN_PASSWORD && -n $KAFKA_CONTROLLER_PASSWORD ]] \
        || die "kafka: RECO_KAFKA_ADMIN_PASSWORD / RECO_KAFKA_CONTROLLER_PASSWORD not set: run \`make setup\`"
    cat <<EOF
listeners=SASL_SSL://$KAFKA_HOST:$1,CONTROLLER://127.0.0.1:$2
advertised.listeners=SASL_SSL://$KAFKA_HOST:$1
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$KAFKA_CONTROLLER_PASSWORD" user_controller="$KAFKA_CONTROLLER_PASSWORD";
ssl.keystore.type=PEM
ssl.keystore.location=$tls/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:controller
EOF
}

start_redis() {
    already redis && return 0
    command -v redis-server >/dev/null || die "redis: redis-server not found: run \`make setup\`"
    require_free_port redis "$REDIS_PORT"
    mkdir -p "$RUN_DIR/redis"
    local auth=()
    if [[ -n $REDIS_PASSWORD ]]; then
        # One ACL user for Feast and the worker, with the password from secrets.env; the default
        # (unauthenticated) user is off. No admin or dangerous commands (FLUSHALL, CONFIG, KEYS,
        # SHUTDOWN, ...) except INFO, which deploy/capacity.py reads.
        (umask 077; printf 'user default off\nuser %s on >%s ~* &* +@all -@dangerous +info\n' \
            "$REDIS_USER" "$REDIS_PASSWORD" >"$RUN_DIR/redis/users.acl")
        auth=(--aclfile "$RUN_DIR/redis/users.acl")
    fi
    start_bg redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes "${auth[@]}" \
        --save '' --appendonly yes --appendfsync everysec --daemonize no --dir "$RUN_DIR/redis" --loglevel notice
    wait_until redis "$TIMEOUT" "PING -> PONG" redis_ping || die "redis did not start"
}
redis_ping() {
    local as=()
    [[ -n $REDIS_PASSWORD ]] && as=(--user "$REDIS_USER")
    [[ $(REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "${as[@]}" ping 2>/dev/null) == PONG ]]
}

start_prometheus() {
    local pid
    [[ -f deploy/prometheus/prometheus.yml ]] || die "prometheus: deploy/prometheus/prometheus.yml missing"
    # The config is rendered on every run (a changed template or Triton port applies on reload).
    "$PY" deploy/prometheus_config.py --out "$PROM_CONF_DIR" || die "prometheus: rendering the config failed"
    write_worker_targets
    if pid=$(running_pid prometheus); then
        if tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "--config.file=$PROM_CONF_DIR/prometheus.yml"; then
            log "prometheus: already running (pid $pid); reloading its config"
            curl -sf -X POST --max-time 10 "http://127.0.0.1:$PROMETHEUS_PORT/-/reload" >/dev/null \
                || log "prometheus: WARNING: config reload failed; see $LOG_DIR/prometheus.log"
        else
            log "prometheus: WARNING: already running (pid $pid) with another config file, so without the" \
                "worker targets in $PROM_CONF_DIR; restart it: bash deploy/down.sh prometheus && bash deploy/up.sh prometheus"
        fi
        return 0
    fi
    command -v prometheus >/dev/null || die "prometheus: not found: run \`make setup\`"
    require_free_port prometheus "$PROMETHEUS_PORT"
    mkdir -p "$RUN_DIR/prometheus"
    start_bg prometheus prometheus --config.file="$PROM_CONF_DIR/prometheus.yml" \
        --storage.tsdb.path="$RUN_DIR/prometheus" --storage.tsdb.retention.time=2d \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle
    wait_for_http prometheus "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" "$TIMEOUT" || die "prometheus did not start"
}

# The worker targets Prometheus scrapes (file_sd, re-read within seconds): workers 1..WORKERS and
# any other worker running now, each labelled worker=worker-i.
write_worker_targets() {
    local i args=()
    for i in $( { seq "$WORKERS"; running_workers; } | sort -nu); do
        args+=(--worker "worker-$i=127.0.0.1:$(worker_port metrics "$i")")
    done
    "$PY" deploy/prometheus_config.py --out "$PROM_CONF_DIR" "${args[@]}" \
        || die "prometheus: writing the worker targets failed"
}

# True when the model repository holds at least one model with a numeric version folder.
has_model_version() { compgen -G "$MODEL_REPO/*/[0-9]*/model.py" >/dev/null; }

start_triton() {
    already triton && return 0
    [[ -f $STACK_DIR/triton.env ]] || die "triton: $STACK_DIR/triton.env missing: run \`make setup\`"
    source "$STACK_DIR/triton.env"
    [[ -x $TRITONSERVER ]] || die "triton: $TRITONSERVER missing: run \`make setup\`"
    has_model_version || die "triton: no model version in $MODEL_REPO (expected $MODEL_REPO/$MODEL_NAME/<n>/model.py): train and export one first with \`make train\`"
    require_free_port triton-http "$TRITON_HTTP_PORT"
    require_free_port triton-grpc "$TRITON_GRPC_PORT"
    require_free_port triton-metrics "$TRITON_METRICS_PORT"
    # PATH: the python backend stub embeds Python in isolated mode (PYTHONPATH is ignored) and
    # takes its prefix from the first `python3` on PATH -> models run in .stack/model-env
    # (numpy 1.26 + torch from .venv; see deploy/setup.sh step 5).
    # LD_LIBRARY_PATH: the stub links libpython3.11.so.1.0; use the .venv's interpreter's one.
    # Poll mode: new version folders exported into the repository are loaded within 5 s (hot swap).
    start_bg triton env PATH="$TRITON_MODEL_ENV/bin:$PATH" \
        LD_LIBRARY_PATH="$TRITON_PYLIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$TRITONSERVER" --model-repository="$MODEL_REPO" \
        --backend-directory="$TRITON_BACKEND_DIR" --cache-directory="$TRITON_CACHE_DIR" \
        --http-address=127.0.0.1 --http-port="$TRITON_HTTP_PORT" \
        --grpc-address=127.0.0.1 --grpc-port="$TRITON_GRPC_PORT" \
        --metrics-address=127.0.0.1 --metrics-port="$TRITON_METRICS_PORT" \
        --model-control-mode=poll --repository-poll-secs=5 \
        --strict-readiness=false --exit-timeout-secs=10 --log-verbose=0
    local url="http://127.0.0.1:$TRITON_HTTP_PORT/v2/health/ready"
    [[ -d $MODEL_REPO/$MODEL_NAME ]] && url="http://127.0.0.1:$TRITON_HTTP_PORT/v2/models/$MODEL_NAME/ready"
    wait_for_http triton "$url" "$TIMEOUT" || die "triton did not become ready"
}

# No two workers' ports may meet each other or another service's port (worker i: base + i - 1).
check_worker_ports() {  # HIGHEST_INDEX
    local -A taken=([$REDIS_PORT]=redis [$TRITON_HTTP_PORT]=triton-http [$TRITON_GRPC_PORT]=triton-grpc
        [$TRITON_METRICS_PORT]=triton-metrics [$PROMETHEUS_PORT]=prometheus)
    local i kind port name
    for ((i = 1; i <= KAFKA_BROKERS; i++)); do
        for kind in client controller; do taken[$(kafka_port "$kind" "$i")]="$(kafka_service "$i") $kind"; done
    done
    for ((i = 1; i <= $1; i++)); do
        name=$(worker_service "$i")
        for kind in metrics web; do
            port=$(worker_port "$kind" "$i")
            [[ -z ${taken[$port]:-} ]] || die "$name: its $kind port $port is also ${taken[$port]}'s; move" \
                "RECO_METRICS_PORT / RECO_WORKER_WEB_PORT (worker i uses the port + i - 1) or that service's port"
            taken[$port]="$name $kind"
        done
    done
}

# The Faust workers (stream/app.py, each under stream/supervisor.py, which forks it again within
# seconds when it dies; its pid is in $name.process.pid), by index: those not running are started
# together, then each is healthy once its Prometheus endpoint answers.
start_workers() {  # INDEX... (ascending)
    local i name started=()
    check_worker_ports "${*: -1}"
    for i in "$@"; do
        name=$(worker_service "$i")
        already "$name" && continue
        require_free_port "$name-metrics" "$(worker_port metrics "$i")"
        require_free_port "$name-web" "$(worker_port web "$i")"
        start_bg "$name" env RECO_WORKER_INSTANCE_ID="worker-$i" RECO_METRICS_PORT="$(worker_port metrics "$i")" \
            RECO_WORKER_WEB_PORT="$(worker_port web "$i")" "$PY" -m stream.supervisor \
            --pid-file "$(pid_file "$name.process")" worker -l info
        started+=("$i")
    done
    write_worker_targets
    for i in "${started[@]}"; do
        name=$(worker_service "$i")
        wait_for_http "$name" "http://127.0.0.1:$(worker_port metrics "$i")/metrics" "$TIMEOUT" || die "$name did not start"
    done
    for i in $(running_workers); do
        if (( i > WORKERS )) && [[ " $* " != *" $i "* ]]; then
            log "$(worker_service "$i"): left running (WORKERS=$WORKERS); bash deploy/down.sh $(worker_service "$i") stops it"
        fi
    done
}

wanted=()
worker_ids=()
broker_ids=()
for name in "${@}"; do
    if [[ $name == kafka-* ]] && (( KAFKA_BROKERS > 1 )) && is_kafka_service "$name" \
        && (( $(kafka_index "$name") <= KAFKA_BROKERS )); then
        broker_ids+=("$(kafka_index "$name")")
        [[ " ${wanted[*]} " == *" kafka "* ]] || wanted+=(kafka)
        continue
    elif [[ $name == kafka ]]; then
        broker_ids+=($(seq "$KAFKA_BROKERS"))
    fi
    if [[ $name == worker ]]; then
        worker_ids+=($(seq "$WORKERS"))
    elif is_worker_service "$name"; then
        worker_ids+=("$(worker_index "$name")")
    else
        [[ " ${ALL[*]} " == *" $name "* ]] || die "unknown service '$name' (known: ${ALL[*]}, worker-2 ... worker-N;" \
            "worker 1 is \`worker\`; with KAFKA_BROKERS=N, kafka-1 ... kafka-N)"
        wanted+=("$name")
        continue
    fi
    [[ " ${wanted[*]} " == *" worker "* ]] || wanted+=(worker)
done
if (( $# == 0 )); then
    wanted=("${ALL[@]}")
    worker_ids=($(seq "$WORKERS"))
    broker_ids=($(seq "$KAFKA_BROKERS"))
fi
if (( ${#worker_ids[@]} )); then mapfile -t worker_ids < <(printf '%s\n' "${worker_ids[@]}" | sort -nu); fi
if (( ${#broker_ids[@]} )); then mapfile -t broker_ids < <(printf '%s\n' "${broker_ids[@]}" | sort -nu); fi
start_worker() { start_workers "${worker_ids[@]}"; }
t0=$SECONDS
started=()
for name in "${ALL[@]}"; do
    [[ " ${wanted[*]} " == *" $name "* ]] || continue
    "start_$name"
    if [[ $name == worker ]]; then
        for i in "${worker_ids[@]}"; do started+=("$(worker_service "$i")"); done
    elif [[ $name == kafka ]]; then
        for i in "${broker_ids[@]}"; do started+=("$(kafka_service "$i")"); done
    else
        started+=("$name")
    fi
done
log "up: ${started[*]} ready in $((SECONDS - t0))s (logs in $LOG_DIR)"
