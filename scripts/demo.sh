#!/usr/bin/env bash
# The embedded demo: builds the fleet's binaries (release) and runs `fleetctl demo`, which starts
# the scheduler and two workers on SQLite + Redis over replayed PAPER market data for about a
# minute and prints what they did. Arguments go to `fleetctl demo` (see `--help`), e.g.
#
#   scripts/demo.sh --subscriptions 8 --duration 2m
#   scripts/demo.sh --follow --keep      # until Ctrl-C; keep the database and logs
#
# Redis: REDIS_URL (default redis://127.0.0.1:6379) when reachable, else a private redis-server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# `cargo run --bin fleetctl` alone would not build the scheduler and worker it starts.
cargo build --release --quiet -p tradefleet-scheduler -p tradefleet-worker -p tradefleet-migrations --bins
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
exec "$TARGET_DIR/release/fleetctl" demo "$@"
