#!/usr/bin/env bash
# Idempotent setup of everything the local stack needs; `make setup` runs it. Each step leaves a
# stamp under .stack/stamps/ keyed on its inputs, so a second run is a fast no-op.
#
#   1. apt: redis-server, prometheus at pinned Debian 12 versions (+ Java 17 and Maven when missing)
#   2. .venv: uv (pinned and hashed in the lock), then requirements.lock with --no-deps
#      --require-hashes, then `-e .` (redone when pyproject.toml or requirements.lock changes;
#      `make lock` refreshes the lock). Every other Python install reads a hashed file in deploy/locks/.
#   3. Kafka jars from deploy/kafka/pom.xml into .stack/kafka/libs   (redone when the pom changes)
#   4. Triton: the tritonserver binary from the nvidia-pytriton wheel into .stack/triton
#   5. .stack/model-env: the Python env Triton's python backend runs models in (numpy<2 + torch)
#   6. .stack/secrets.env: generated passwords and keys (never committed)
#   7. .stack/tls: the stack's CA and the broker's certificate
#
# Force a step again by deleting its stamp (or all of .stack/stamps).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

PYTHON=${PYTHON:-python3.11}
# Both pinned with hashes in deploy/locks/ (`make lock`).
PYTRITON_VERSION=$(locked_version nvidia-pytriton deploy/locks/triton.txt)  # tritonserver 2.51, python backend, per-Python stubs
MODEL_NUMPY=$(locked_version numpy deploy/locks/model-env.txt)              # see step 5
STACK_DIR=${RECO_STACK_DIR:-$ROOT/.stack}
STAMPS=$STACK_DIR/stamps
mkdir -p "$STAMPS"

stamp_ok() { [[ -f $STAMPS/$1 && $(<"$STAMPS/$1") == "$2" ]]; }  # NAME KEY
stamp_set() { echo "$2" >"$STAMPS/$1"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
t0=$SECONDS

# 1. System packages ---------------------------------------------------------------------------
# Exact Debian 12 (bookworm) versions, from `apt-cache policy redis-server prometheus`. Debian keeps
# only the newest security update in its archive, so a pin can disappear: then the current
# candidate is installed with a warning, and the pin here should be moved to it.
declare -A APT_PIN=(
    [redis-server]=5:7.0.15-1~deb12u10
    [redis-tools]=5:7.0.15-1~deb12u10    # redis-server depends on exactly its own version
    [prometheus]=2.42.0+ds-5+deb12u1
)
missing=()
command -v redis-server >/dev/null || missing+=(redis-server redis-tools)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
if (( ${#missing[@]} )); then
    SUDO=; (( EUID == 0 )) || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    apt_updated=
    apt_update() { [[ -n $apt_updated ]] || { $SUDO apt-get update -qq; apt_updated=1; }; }
    # Whether the archives in apt's lists offer PKG at exactly VERSION (`apt-cache show pkg=v`
    # succeeds even for a version it does not know).
    apt_has() { apt-cache madison "$1" 2>/dev/null | awk -F' *[|] *' -v v="$2" '$2 == v {ok = 1} END {exit !ok}'; }
    # specs: pkg=version for each missing package whose pinned version apt knows, else pkg (warned).
    apt_specs() {
        local p candidate
        specs=()
        for p in "${missing[@]}"; do
            if [[ -z ${APT_PIN[$p]:-} ]]; then
                specs+=("$p")
            elif apt_has "$p" "${APT_PIN[$p]}"; then
                specs+=("$p=${APT_PIN[$p]}")
            elif [[ -z $apt_updated ]]; then
                apt_update  # the lists may just be older than the pin
                apt_specs
                return
            else
                candidate=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
                log "apt: WARNING: $p=${APT_PIN[$p]} is no longer available; installing the current" \
                    "candidate ${candidate:-(none)} instead (move APT_PIN in deploy/setup.sh to it)"
                specs+=("$p")
            fi
        done
    }
    # apt-get update only when the package lists are absent or too old to know a pin or a package.
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt_update
    apt_specs
    log "apt: installing ${specs[*]}"
    # apt's own output goes to a log (shown when it fails): the step's progress line is enough.
    apt_log=$STACK_DIR/apt.log
    apt_install() { $SUDO apt-get install -y -q --no-install-recommends "${specs[@]}" >"$apt_log" 2>&1; }
    if ! apt_install; then
        [[ -z $apt_updated ]] || { tail -n 30 "$apt_log" >&2; die "apt: installing ${specs[*]} failed (log: $apt_log)"; }
        apt_update
        apt_specs
        apt_install || { tail -n 30 "$apt_log" >&2; die "apt: installing ${specs[*]} failed (log: $apt_log)"; }
    fi
    # The Debian packages start system services where an init system runs; our stack runs its
    # own instances on the same ports, so stop those (harmless when there is no init system).
    for svc in redis-server prometheus; do
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
    done
fi

# 2. Project virtualenv --------------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
    log "venv: creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
venv_site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')  # compiled below; the model env reads it
# Exactly the locked set, whatever the index holds today: the installer is uv at the version and
# hashes pinned in requirements.lock (bootstrapped by the venv's own pip, hash-checked, no deps), and
# the lock is installed with --no-deps --require-hashes, so no resolver ever looks at a newer upstream
# release (pip 23.2.1 took feast's `uvicorn[standard]` as an unpinned requirement and fetched the
# newest uvicorn). `pip check` then catches a lock that misses a dependency.
# Then every module is compiled once: uv, unlike pip, writes no .pyc, and with PYTHONDONTWRITEBYTECODE
# set (as on this project's machines) every start would compile torch and Feast from source again: a
# killed worker took 18.5 s to come back instead of about 8. (compileall writes them regardless; it
# exits 1 for the few files in the lock's packages that are not Python 3.11 source, e.g. templates.)
key="$(hash_of pyproject.toml requirements.lock)-bytecode"
if ! stamp_ok venv "$key"; then
    log "venv: uv from requirements.lock (hashed), then the lock with --no-deps --require-hashes, then -e ."
    "$PY" -m pip install -q --no-deps --require-hashes -r <(locked uv requirements.lock)
    "$UV" pip install -q --python "$PY" --no-deps --require-hashes -r requirements.lock
    "$UV" pip install -q --python "$PY" --no-deps -e .
    "$PY" -m pip check >&2 || die "venv: requirements.lock does not satisfy pyproject.toml; run 'make lock'"
    "$PY" -m compileall -q -j 0 "$venv_site" >/dev/null || true
    stamp_set venv "$key"
fi

# 3. Kafka (jars resolved by Maven; run with plain `java -cp`) -----------------------------------
key=$(hash_of deploy/kafka/pom.xml)
if ! stamp_ok kafka "$key" || [[ ! -d $STACK_DIR/kafka/libs ]]; then
    log "kafka: resolving jars with Maven (deploy/kafka/pom.xml)"
    rm -rf "$STACK_DIR/kafka/libs.new"
    mkdir -p "$STACK_DIR/kafka"
    mvn -B -Dstyle.color=never -f deploy/kafka/pom.xml dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$STACK_DIR/kafka/libs.new" >"$STACK_DIR/kafka/mvn.log" 2>&1 \
        || { tail -n 40 "$STACK_DIR/kafka/mvn.log" >&2; die "kafka: Maven failed (log: $STACK_DIR/kafka/mvn.log)"; }
    rm -rf "$STACK_DIR/kafka/libs"
    mv "$STACK_DIR/kafka/libs.new" "$STACK_DIR/kafka/libs"
    stamp_set kafka "$key"
fi

# 4. Triton Inference Server ---------------------------------------------------------------------
# The nvidia-pytriton wheel carries a complete tritonserver (bin/, backends/python, caches/) with
# its shared libraries in nvidia_pytriton.libs (found through RPATH). The python backend launches
# backends/python/triton_python_backend_stub, which the wheel ships once per Python version.
TRITON_DIR=$STACK_DIR/triton
TS=$TRITON_DIR/pytriton/tritonserver
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
key="pytriton-$PYTRITON_VERSION-py$pyver"
if ! stamp_ok triton "$key" || [[ ! -x $TS/bin/tritonserver ]]; then
    log "triton: installing nvidia-pytriton==$PYTRITON_VERSION into $TRITON_DIR"
    rm -rf "$TRITON_DIR"
    "$UV" pip install -q --python "$PY" --no-deps --require-hashes --target "$TRITON_DIR" -r deploy/locks/triton.txt
    cp "$TS/python_backend_stubs/$pyver/triton_python_backend_stub" "$TS/backends/python/"
    stamp_set triton "$key"
fi

# 5. Model environment for Triton's python backend ------------------------------------------------
# Finding: with tritonserver 2.51's python backend, a model whose environment has numpy 2 answers
# with EMPTY output tensors (the client sees size-0 arrays); numpy 1.26 works. The worker needs
# numpy 2 (Feast), so models run in their own env. The stub embeds Python in isolated mode
# (PYTHONPATH and PYTHONHOME are ignored) and finds its prefix by looking `python3` up on PATH, so
# up.sh puts .stack/model-env/bin first on Triton's PATH: the stub then runs as this venv.
# To avoid a second multi-GB torch install, the venv holds numpy 1.26 only and a .pth appends the
# repo root (for serving.*) and .venv's site-packages (torch & co) after it; numpy 1.26 shadows 2.x.
MODEL_ENV=$STACK_DIR/model-env
key="numpy-$MODEL_NUMPY-$venv_site"
if ! stamp_ok model-env "$key" || [[ ! -x $MODEL_ENV/bin/python ]]; then
    log "model-env: numpy==$MODEL_NUMPY + torch from .venv in $MODEL_ENV"
    base_python=$("$PY" -c 'import sys, os; print(os.path.join(sys.base_prefix, "bin", "python3"))')
    rm -rf "$MODEL_ENV"
    "$base_python" -m venv --without-pip "$MODEL_ENV"
    "$UV" pip install -q --python "$MODEL_ENV/bin/python" --no-deps --require-hashes --compile-bytecode \
        -r deploy/locks/model-env.txt  # .pyc written: the stub never writes any (dont_write_bytecode below)
    fresh_model_env=1
fi
# The .pth that completes the model env (rewritten when its content changes; no reinstall needed).
# dont_write_bytecode: the stub would otherwise write <version>/__pycache__/model.*.pyc into the
# model repository while loading, and Triton's repository poller takes that as a modified version
# and loads every new version a second time.
model_site=$("$MODEL_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pth=$(printf '%s\nimport site; site.addsitedir(%s)\nimport sys; sys.dont_write_bytecode = True\n' "$ROOT" "'$venv_site'")
if [[ ! -f $model_site/zz_streamreco.pth || $(<"$model_site/zz_streamreco.pth") != "$pth" ]]; then
    log "model-env: writing $model_site/zz_streamreco.pth"
    printf '%s\n' "$pth" >"$model_site/zz_streamreco.pth"
fi
if [[ -n ${fresh_model_env:-} ]]; then
    "$MODEL_ENV/bin/python" - <<EOF || die "model-env: numpy $MODEL_NUMPY + torch do not import together"
import numpy, torch, serving
assert numpy.__version__ == "$MODEL_NUMPY", numpy.__version__
assert torch.from_numpy(numpy.arange(3.0)).sum().item() == 3.0
print("model-env ok: numpy", numpy.__version__, "torch", torch.__version__)
EOF
    stamp_set model-env "$key"
fi

# What up.sh needs to run tritonserver (LD_LIBRARY_PATH: the stub links libpython3.11.so.1.0,
# which must be the same interpreter the .venv was built with, not Debian's /usr/lib one).
pylibdir=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
cat >"$STACK_DIR/triton.env" <<EOF
TRITONSERVER=$TS/bin/tritonserver
TRITON_BACKEND_DIR=$TS/backends
TRITON_CACHE_DIR=$TS/caches
TRITON_MODEL_ENV=$MODEL_ENV
TRITON_PYLIBDIR=$pylibdir
EOF

# 6. Secrets, made here and never committed: the pseudonym key (features/privacy.py), a password for
# each Kafka user (contract.settings.KafkaRole), the broker's controller listener, Redis's Feast
# user and (docker-compose.yml) Grafana's admin. Each is kept once written (a new pseudonym key starts new pseudonyms; a new Kafka
# admin password needs `make down WIPE=1`, the broker stores it at format); missing ones are added.
# RECO_* already in the environment win over the file.
SECRETS=$STACK_DIR/secrets.env
# Letters and digits only, starting with a letter: Feast's Redis connection string splits on ',' and
# '=' and reads a value that parses as JSON (all digits) as a number.
new_password() { printf 'k%s' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"; }
(umask 077; touch "$SECRETS")
grep -q '^RECO_PSEUDONYM_KEY=' "$SECRETS" \
    || printf 'RECO_PSEUDONYM_KEY=%s\n' "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >>"$SECRETS"
for name in KAFKA_ADMIN KAFKA_WORKER KAFKA_PRODUCER KAFKA_READER KAFKA_CONTROLLER REDIS GRAFANA; do
    grep -q "^RECO_${name}_PASSWORD=" "$SECRETS" || printf 'RECO_%s_PASSWORD=%s\n' "$name" "$(new_password)" >>"$SECRETS"
done

# 7. TLS for the broker's SASL_SSL listener: a CA of this stack only (clients trust it and nothing
# else: Settings.kafka_ssl_context) and a server certificate for 127.0.0.1 and localhost, PEM, which
# Kafka reads directly (ssl.keystore.type=PEM). Remade when missing or within 30 days of expiry.
TLS=$STACK_DIR/tls
if ! openssl x509 -checkend $((30 * 86400)) -noout -in "$TLS/server.pem" >/dev/null 2>&1; then
    log "tls: making a CA and the broker's certificate in $TLS"
    rm -rf "$TLS" && mkdir -p "$TLS"
    (
        umask 077; cd "$TLS"
        openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=streamreco local CA" \
            -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
            -extfile server.ext -out server.crt 2>/dev/null
        # Kafka's PEM keystore: the unencrypted PKCS#8 key, then the certificate.
        openssl pkcs8 -topk8 -nocrypt -in server.key -out server.pk8
        cat server.pk8 server.crt >server.pem
        rm -f server.csr server.ext server.key server.pk8 ca.srl
        chmod 644 ca.pem
    )
fi

log "setup: done in $((SECONDS - t0))s"
