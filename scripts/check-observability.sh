#!/usr/bin/env bash
# Checks the Prometheus side of deploy/: `promtool check config` on the scrape configs,
# `promtool check rules` on the alerts and `promtool test rules` on their unit tests. Installs the
# Debian `prometheus` package (promtool and the server the end-to-end test starts) when missing
# and this runs as root with apt-get; otherwise says how to get it. Idempotent; a second run only
# runs the checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing prometheus (promtool and the server) with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
        # The package enables a system service; the checks and tests start their own servers.
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
            systemctl stop prometheus || true
        fi
    else
        die "promtool and prometheus are needed (Debian/Ubuntu: apt-get install prometheus; or the release tarball from prometheus.io on PATH)"
    fi
fi

P=deploy/prometheus
say "promtool check rules $P/alerts.yml"
promtool check rules "$P/alerts.yml"
say "promtool test rules $P/alerts_test.yml"
promtool test rules "$P/alerts_test.yml"
say "promtool check config $P/prometheus.yml"
promtool check config "$P/prometheus.yml"

say "promtool check config $P/prometheus-kubernetes.yml"
if ! out=$(promtool check config "$P/prometheus-kubernetes.yml" 2>&1); then
    if grep -q 'kubernetes_sd_configs not found' <<<"$out"; then
        # Debian's build leaves the Kubernetes discovery out; upstream builds have it.
        say "skipped: this promtool ($(command -v promtool)) is built without Kubernetes service discovery"
    else
        printf '%s\n' "$out" >&2
        die "$P/prometheus-kubernetes.yml is not a valid Prometheus config"
    fi
else
    printf '%s\n' "$out"
fi
