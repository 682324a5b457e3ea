#!/usr/bin/env bash
# `make gpu-check`: Triton on a copy of the served model with its instances on the GPU (KIND_GPU),
# sequences/s with attribution at batch 64..1024 beside the in-process floor, and Triton's scores
# checked against a CPU run of the same model on the same rows. Writes reports/gpu-check-<time>.json;
# exits non-zero when the scores do not match. Its own tritonserver on ports 18000-18002: the stack's
# Triton and model_repo are not touched. Arguments go to deploy/gpu_check.py, e.g.
#
#   bash deploy/gpu_check.sh                          # KIND_GPU, batches 64,128,256,512,1024, 10 s each
#   bash deploy/gpu_check.sh --kind cpu --batches 8,16 --seconds 2
#   GPU_CHECK_TIMEOUT=600 (default): the whole run is stopped after that many seconds
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
load_settings
[[ -f $STACK_DIR/triton.env ]] || die "$STACK_DIR/triton.env missing: run \`make setup\`"
set -a
source "$STACK_DIR/triton.env"
set +a
[[ -x $TRITONSERVER ]] || die "$TRITONSERVER missing: run \`make setup\`"
exec timeout --kill-after=20 "${GPU_CHECK_TIMEOUT:-600}" "$PY" deploy/gpu_check.py --repo "$MODEL_REPO" "$@"
