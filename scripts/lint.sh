#!/usr/bin/env bash
# `make lint`: the C code follows .clang-format, and nobody calls a banned function.
# Banned, after curl's list: functions with no bound on what they write (sprintf, strcpy, strcat,
# gets), hidden state (strtok), and silent conversion failures (atoi, atol, atof).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

status=0
mapfile -t files < <( { git ls-files '*.c' '*.h'; git ls-files --others --exclude-standard '*.c' '*.h'; } | sort -u)
[ "${#files[@]}" -gt 0 ] || { echo "lint: no C files"; exit 0; }

if ! clang-format --dry-run --Werror "${files[@]}" 2>/tmp/lint-format.$$; then
    echo "lint: these files are not formatted (run 'make fmt'):"
    grep -oE '^[^:]+\.(c|h)' /tmp/lint-format.$$ | sort -u | sed 's/^/  /'
    status=1
fi
rm -f /tmp/lint-format.$$

banned='\b(sprintf|vsprintf|strcpy|stpcpy|strcat|strncat|strtok|gets|atoi|atol|atoll|atof|tmpnam|mktemp)[[:space:]]*\('
if hits=$(grep -nE "$banned" "${files[@]}" | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|//|/\*)'); then
    echo "lint: banned functions (use snprintf, memcpy with a known length, strtol with checks):"
    printf '%s\n' "$hits" | sed 's/^/  /'
    status=1
fi

if command -v shellcheck >/dev/null 2>&1; then
    shellcheck -x scripts/*.sh .ci/run || status=1
fi

[ "$status" -eq 0 ] && echo "lint: ok (${#files[@]} files)"
exit "$status"
