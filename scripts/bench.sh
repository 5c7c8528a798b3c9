#!/usr/bin/env bash
# `make bench`: every benchmark, each a scripts/bench-<name>.sh that prints its own figures as
# ratios against a reference measured in the same run (or against the issue's goal where there
# is no reference tool). BENCH_ONLY="gateway spine" runs a subset. A failing benchmark does not
# stop the others; the exit status says whether any failed.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

order="bus gateway spine realtime idle-rss subscribers scraper"
only="${BENCH_ONLY:-$order}"
failed=()
for name in $only; do
    script="scripts/bench-$name.sh"
    if [[ ! -x "$script" ]]; then
        warn "no benchmark called $name ($script)"
        failed+=("$name")
        continue
    fi
    log "bench: $name"
    if ! "$script"; then
        failed+=("$name")
    fi
    echo
done
if ((${#failed[@]} > 0)); then
    die "benchmarks that failed: ${failed[*]}"
fi
