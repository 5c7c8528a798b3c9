#!/usr/bin/env bash
# Installs the Debian packages the project builds and runs with, only those that are missing.
# A no-op in well under 2 s when everything is there (one dpkg-query, no apt-get update).
set -euo pipefail

PACKAGES=(
    # C toolchain and the libraries every service links
    build-essential pkg-config libuv1-dev libh2o-dev libwslay-dev librdkafka-dev libpq-dev
    libcurl4-openssl-dev libsodium-dev libjansson-dev protobuf-c-compiler libprotobuf-c-dev
    libcmocka-dev libssl-dev zlib1g-dev clang-format shellcheck
    # the scraper: gumbo parses HTML, expat reads feeds and sitemaps; nginx serves its test site
    # and benchmark
    libgumbo-dev libexpat1-dev libjemalloc-dev nginx-light
    # local stack: Kafka runs on the JRE (fetched by Maven), PostgreSQL 15 from Debian
    kcat postgresql-15 postgresql-client-15 openjdk-17-jre-headless maven
    # what the scripts themselves call
    curl procps iproute2 python3
    # benchmarks: the HTTP load generator (make bench)
    wrk
    # the dashboard's browser tests: playwright-core drives Debian's Chromium (no browser
    # download); node (>= 20.19) and npm build the dashboard where the machine has them
    chromium
)

# dpkg-query prints nothing for, and exits 1 on, packages it has never seen: hence `|| true` and
# the comparison against the full list below.
installed="$({ dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true; } |
    awk '$2 == "installed" { print $1 }')"
missing=()
for p in "${PACKAGES[@]}"; do
    grep -qxF "$p" <<<"$installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    echo "==> all ${#PACKAGES[@]} Debian packages present"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || {
    echo "error: missing packages (${missing[*]}) and not root: run this script as root" >&2
    exit 1
}
echo "==> installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages such as nginx and postgresql start a system service from their install scripts (nginx
# on port 80, a default cluster on 5432). We run our own instances from var/, so tell
# invoke-rc.d not to start anything while we install (policy-rc.d exit 101 = "action forbidden"),
# unless the machine already has its own policy.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "==> installed ${#missing[@]} package(s)"
