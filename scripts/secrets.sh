#!/usr/bin/env bash
# Local secrets for `make up` and tests: generates whatever is missing under var/secrets (mode
# 600, directory 700) and never prints a secret. Idempotent: existing files are kept.
#   scripts/secrets.sh          create what is missing, list the file names
#   scripts/secrets.sh env SVC  print "export NAME=\"$(cat file)\"" lines for a service to eval
#                               (the values are read from files at eval time, never echoed)
#
# Files (all base64 unless noted):
#   auth-signing-key      Ed25519 seed (32 bytes): AUTH_SIGNING_KEY of subscriber-manager
#   auth-public-key       its public key (32 bytes): AUTH_PUBLIC_KEY of the gateway and verifiers
#   subscriber-data-key   32 bytes: SUBSCRIBER_DATA_KEY (wraps per-subscriber keys)
#   subscriber-index-key  32 bytes: SUBSCRIBER_INDEX_KEY (blind index of e-mail addresses)
#   token-signing-key     32 bytes: TOKEN_SIGNING_KEY (confirm / unsubscribe / preference links)
#   admin-email           text: ADMIN_EMAIL of the first admin user
#   admin-password        text: ADMIN_PASSWORD of the first admin user
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# write_new NAME: stdin to $SECRETS/NAME unless it exists (atomically, mode 600).
write_new() {
    local f="$SECRETS/$1"
    if [[ -s "$f" ]]; then
        chmod 600 "$f"
        cat >/dev/null
        return 0
    fi
    (umask 077 && cat >"$f.tmp" && mv "$f.tmp" "$f")
    chmod 600 "$f"
}

key32() { openssl rand -base64 32; }

ed25519_pair() {
    local sk="$SECRETS/auth-signing-key" pk="$SECRETS/auth-public-key" pem
    if [[ -s "$sk" && -s "$pk" ]]; then
        chmod 600 "$sk" "$pk"
        return 0
    fi
    pem="$(umask 077 && mktemp "$SECRETS/.ed25519.XXXXXX")"
    openssl genpkey -algorithm ed25519 -out "$pem" 2>/dev/null
    # DER encodings end with the raw 32-byte seed / public key.
    openssl pkey -in "$pem" -outform DER 2>/dev/null | tail -c 32 | base64 | (umask 077 && cat >"$sk.tmp")
    openssl pkey -in "$pem" -pubout -outform DER 2>/dev/null | tail -c 32 | base64 | (umask 077 && cat >"$pk.tmp")
    rm -f "$pem"
    mv "$sk.tmp" "$sk"
    mv "$pk.tmp" "$pk"
    chmod 600 "$sk" "$pk"
}

generate() {
    ed25519_pair
    key32 | write_new subscriber-data-key
    key32 | write_new subscriber-index-key
    key32 | write_new token-signing-key
    printf 'admin@contentengine.local\n' | write_new admin-email
    openssl rand -base64 18 | tr -d '/+=\n' | write_new admin-password
}

# env SVC: the variables SVC needs, as shell code that reads the files when evaluated.
print_env() {
    local svc="$1" pairs=()
    case "$svc" in
    subscriber-manager)
        pairs=(AUTH_SIGNING_KEY:auth-signing-key SUBSCRIBER_DATA_KEY:subscriber-data-key
            SUBSCRIBER_INDEX_KEY:subscriber-index-key TOKEN_SIGNING_KEY:token-signing-key
            ADMIN_EMAIL:admin-email ADMIN_PASSWORD:admin-password)
        ;;
    gateway | realtime) pairs=(AUTH_PUBLIC_KEY:auth-public-key) ;;
    *) return 0 ;;
    esac
    local p
    for p in "${pairs[@]}"; do
        # shellcheck disable=SC2016 # the $(...) is for the caller's eval, not for us
        printf 'export %s="$(tr -d %s < %q)"\n' "${p%%:*}" "'\\n'" "$SECRETS/${p#*:}"
    done
}

case "${1:-generate}" in
generate)
    generate
    note "secrets in ${SECRETS#"$ROOT"/}: auth-signing-key auth-public-key subscriber-data-key subscriber-index-key token-signing-key admin-email admin-password"
    ;;
env)
    generate
    print_env "${2:?usage: scripts/secrets.sh env SERVICE}"
    ;;
*)
    die "usage: scripts/secrets.sh [generate | env SERVICE]"
    ;;
esac
