#!/usr/bin/env bash
# The one test command: makes sure PostgreSQL and Redis are reachable (starting or installing
# them when it can), then runs rustfmt, clippy, the promtool checks of deploy/prometheus
# (scripts/check-observability.sh, which installs prometheus when missing: the observability
# test starts a real one) and every test of the workspace.
#
#   TEST_DATABASE_ADMIN_URL  PostgreSQL URL of a user that may CREATE DATABASE
#                            (default postgres://postgres@127.0.0.1:5432/postgres)
#   TEST_REDIS_URL           Redis URL (default redis://127.0.0.1:6379)
#   CI=true                  CARGO_TARGET_DIR defaults to $HOME/.cache/tradefleet/target
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PG_URL="${TEST_DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL_FOR_TESTS="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# host_port URL DEFAULT_PORT -> "host port"
host_port() {
    local rest=${1#*://}
    rest=${rest%%/*}
    rest=${rest%%\?*}
    rest=${rest##*@}
    local host=${rest%%:*} port=${rest##*:}
    [[ "$port" == "$rest" || -z "$port" ]] && port=$2
    [[ -z "$host" ]] && host=127.0.0.1
    printf '%s %s\n' "$host" "$port"
}

reachable() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_for() {
    local host=$1 port=$2
    for _ in $(seq 1 60); do
        reachable "$host" "$port" && return 0
        sleep 0.5
    done
    return 1
}

is_default_local() { [[ ( "$1" == 127.0.0.1 || "$1" == localhost ) && "$2" == "$3" ]]; }

can_install() { [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
    say "installing $* with apt-get"
    if [[ -z "${APT_UPDATED:-}" ]]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
    local installed_now=""
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        can_install || return 1
        apt_install postgresql || return 1
        installed_now=1
    fi
    local version
    version=$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" { print $1; exit }')
    if [[ -z "$version" ]]; then
        version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
        [[ -n "$version" ]] || return 1
        say "creating PostgreSQL $version cluster main"
        pg_createcluster "$version" main >/dev/null || return 1
        installed_now=1
    fi
    if [[ -n "$installed_now" ]]; then
        # A cluster this script just made: let the local test user in without a password.
        local hba="/etc/postgresql/$version/main/pg_hba.conf"
        if [[ -w "$hba" ]] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
            sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        fi
    fi
    say "starting PostgreSQL $version main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
}

start_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        can_install || return 1
        apt_install redis-server || return 1
    fi
    say "starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
}

ensure_service() {
    local name=$1 url=$2 default_port=$3 starter=$4 hint=$5 env_name=$6
    local host port
    read -r host port < <(host_port "$url" "$default_port")
    if reachable "$host" "$port"; then
        return 0
    fi
    if is_default_local "$host" "$port" "$default_port"; then
        say "$name is not reachable at $host:$port; trying to start it"
        if "$starter" && wait_for "$host" "$port"; then
            return 0
        fi
        die "$name is not reachable at $host:$port and could not be started. Install it ($hint), start it, or set $env_name to a reachable server."
    fi
    die "$name is not reachable at $host:$port (from $env_name). Start it there or unset $env_name to use a local one."
}

ensure_service PostgreSQL "$PG_URL" 5432 start_postgres \
    "Debian/Ubuntu: apt-get install postgresql" TEST_DATABASE_ADMIN_URL
ensure_service Redis "$REDIS_URL_FOR_TESTS" 6379 start_redis \
    "Debian/Ubuntu: apt-get install redis-server" TEST_REDIS_URL

if command -v psql >/dev/null 2>&1 && ! psql "$PG_URL" -Atqc 'select 1' >/dev/null 2>&1; then
    die "PostgreSQL is reachable but $(printf '%s' "$PG_URL" | sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#') cannot log in; the tests need a user that may CREATE DATABASE (set TEST_DATABASE_ADMIN_URL)."
fi

if [[ "${CI:-}" == "true" && -z "${CARGO_TARGET_DIR:-}" ]]; then
    export CARGO_TARGET_DIR="$HOME/.cache/tradefleet/target"
    mkdir -p "$CARGO_TARGET_DIR"
fi
export TEST_DATABASE_ADMIN_URL="$PG_URL" TEST_REDIS_URL="$REDIS_URL_FOR_TESTS"

say "cargo fmt --all --check"
cargo fmt --all --check
say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
say "checking the Prometheus config and alert rules (installs prometheus when missing)"
scripts/check-observability.sh
say "building the binaries the process tests run"
# Exactly the command the test harness runs (tests/src/lib.rs `workspace_bin`), so its own build
# finds everything fresh: a different package selection resolves features differently and would
# rebuild the library inside the first process test.
cargo build --quiet -p tradefleet-scheduler -p tradefleet-worker -p tradefleet-migrations --bins
if cargo nextest --version >/dev/null 2>&1; then
    say "cargo nextest run --workspace"
    exec cargo nextest run --workspace
fi
say "cargo test --workspace"
exec cargo test --workspace
