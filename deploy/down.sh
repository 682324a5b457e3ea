#!/usr/bin/env bash
# Stop the services started by deploy/up.sh (by pid file: TERM, then KILL after a timeout);
# `make down` runs it. Idempotent.
#
#   bash deploy/down.sh                 # stop everything
#   bash deploy/down.sh triton worker   # stop just these
#   bash deploy/down.sh --wipe          # stop everything and delete .run (Kafka/Redis/Prometheus data, logs)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# Reverse start order: the worker first (it commits offsets), Kafka last.
ALL=(worker triton prometheus redis kafka)
wipe=0
wanted=()
for arg in "$@"; do
    case $arg in
        --wipe) wipe=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) [[ " ${ALL[*]} " == *" $arg "* ]] || die "unknown service '$arg' (known: ${ALL[*]})"
           wanted+=("$arg") ;;
    esac
done
(( ${#wanted[@]} )) || wanted=("${ALL[@]}")
(( wipe )) && (( ${#wanted[@]} < ${#ALL[@]} )) && die "--wipe stops everything; don't name services with it"

load_settings
for name in "${ALL[@]}"; do
    if [[ " ${wanted[*]} " == *" $name "* ]]; then
        case $name in
            kafka) stop_service kafka 40 ;;     # controlled shutdown takes a few seconds
            *) stop_service "$name" 20 ;;
        esac
    fi
done
if (( wipe )); then
    log "wiping $RUN_DIR"
    rm -rf "$RUN_DIR"
fi
log "down: ${wanted[*]} stopped"
