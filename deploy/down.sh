#!/usr/bin/env bash
# Stop the services started by deploy/up.sh (by pid file: TERM, then KILL after a timeout);
# `make down` runs it. Idempotent.
#
#   bash deploy/down.sh                 # stop everything (every worker, whatever WORKERS was)
#   bash deploy/down.sh triton worker   # stop just these; `worker` means every worker (worker, worker-2, ...)
#   bash deploy/down.sh worker-2        # stop just worker 2 (the others get its partitions after RECO_SESSION_TIMEOUT_S)
#   bash deploy/down.sh kafka-2         # stop just broker 2 of a KAFKA_BROKERS=3 cluster (`kafka`: every broker)
#   bash deploy/down.sh --wipe          # stop everything and delete .run (Kafka/Redis/Prometheus data, logs)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# Reverse start order: the worker first (it commits offsets), Kafka last.
ALL=(worker triton prometheus redis kafka)
wipe=0
wanted=()
some_workers=()
some_brokers=()
for arg in "$@"; do
    case $arg in
        --wipe) wipe=1 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        worker-*) is_worker_service "$arg" || die "unknown service '$arg' (workers: worker, worker-2, worker-3, ...)"
           some_workers+=("$arg") ;;
        kafka-*) is_kafka_service "$arg" || die "unknown service '$arg' (brokers: kafka-1, kafka-2, kafka-3, ...)"
           some_brokers+=("$arg") ;;
        *) [[ " ${ALL[*]} " == *" $arg "* ]] || die "unknown service '$arg' (known: ${ALL[*]}, worker-2 ... worker-N)"
           wanted+=("$arg") ;;
    esac
done
(( ${#wanted[@]} + ${#some_workers[@]} + ${#some_brokers[@]} )) || wanted=("${ALL[@]}")
(( wipe )) && (( ${#wanted[@]} < ${#ALL[@]} )) && die "--wipe stops everything; don't name services with it"

# The named services stopped together: workers (each commits on the way out), or brokers.
stop_together() {  # TIMEOUT_S NAME...
    local timeout=$1 name pids=()
    shift
    for name in "$@"; do
        stop_service "$name" "$timeout" &
        pids+=($!)
    done
    for name in "${pids[@]}"; do wait "$name"; done
}

load_settings
stopped=()
for name in "${ALL[@]}"; do
    if [[ $name == worker ]]; then
        if [[ " ${wanted[*]} " == *" worker "* ]]; then
            mapfile -t some_workers < <(running_workers | while read -r i; do worker_service "$i"; done)
            (( ${#some_workers[@]} )) || some_workers=(worker)  # none running: still "worker stopped"
        fi
        if (( ${#some_workers[@]} )); then stop_together 20 "${some_workers[@]}"; fi
        stopped+=("${some_workers[@]}")
    elif [[ $name == kafka ]]; then
        if [[ " ${wanted[*]} " == *" kafka "* ]]; then
            mapfile -t some_brokers < <(running_brokers)
            (( ${#some_brokers[@]} )) || some_brokers=(kafka)
        fi
        # Controlled shutdown takes a few seconds (each broker hands its leaderships on first).
        if (( ${#some_brokers[@]} )); then stop_together 40 "${some_brokers[@]}"; fi
        stopped+=("${some_brokers[@]}")
    elif [[ " ${wanted[*]} " == *" $name "* ]]; then
        stop_service "$name" 20
        stopped+=("$name")
    fi
done
if (( wipe )); then
    log "wiping $RUN_DIR"
    rm -rf "$RUN_DIR"
fi
log "down: ${stopped[*]} stopped"
