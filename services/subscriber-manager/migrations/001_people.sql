-- subscriber-manager: admin users and their refresh tokens; subscribers, lists, segments,
-- imports. Subscriber e-mail, name and consent address are stored only encrypted (per-subscriber
-- key, wrapped by the master key); lookups by e-mail go through a keyed blind index.

CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL DEFAULT '',
    role text NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    password_hash text NOT NULL,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Refresh tokens: only their SHA-256 is stored. Each use rotates the token inside its family;
-- presenting a used or revoked token revokes the whole family (reuse detection).
CREATE TABLE refresh_tokens (
    token_hash text PRIMARY KEY,
    family uuid NOT NULL,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

-- The row segments scan: narrow (no ciphertext), so a count over a million subscribers reads
-- ~130 MB rather than ~400 MB.
CREATE TABLE subscribers (
    id uuid PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'blocklisted', 'bounced')),
    attributes jsonb NOT NULL DEFAULT '{}',
    consent_source text,
    consent_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    erased_at timestamptz,              -- tombstone: PII shredded, consent never resurrected
    version bigint NOT NULL DEFAULT 1
);
CREATE INDEX subscribers_status ON subscribers (status);
CREATE INDEX subscribers_created ON subscribers (created_at);

-- The personal data, 1:1 with subscribers. The foreign key is checked at commit, so one
-- statement can insert here first (ON CONFLICT on the blind index) and then the subscriber.
CREATE TABLE subscriber_secrets (
    subscriber_id uuid PRIMARY KEY REFERENCES subscribers (id) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED,
    email_index bytea NOT NULL UNIQUE,  -- HMAC-SHA-256(SUBSCRIBER_INDEX_KEY, normalized email)
    email_enc bytea,                    -- sealed with the subscriber key; NULL once erased
    name_enc bytea,
    consent_ip_enc bytea,
    wrapped_key bytea                   -- the subscriber key under SUBSCRIBER_DATA_KEY; NULL = shredded
);

CREATE TABLE lists (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    visibility text NOT NULL CHECK (visibility IN ('public', 'private')),
    optin text NOT NULL CHECK (optin IN ('single', 'double')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    list_id uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    subscriber_id uuid NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    status text NOT NULL CHECK (status IN ('unconfirmed', 'confirmed', 'unsubscribed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list_id, subscriber_id)
);
CREATE INDEX subscriptions_subscriber ON subscriptions (subscriber_id);

CREATE TABLE segments (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    rules jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE imports (
    id uuid PRIMARY KEY,
    mode text NOT NULL CHECK (mode IN ('upsert', 'skip')),
    status text NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    rows_total bigint NOT NULL DEFAULT 0,
    rows_inserted bigint NOT NULL DEFAULT 0,
    rows_updated bigint NOT NULL DEFAULT 0,
    rows_skipped bigint NOT NULL DEFAULT 0,
    rows_failed bigint NOT NULL DEFAULT 0,
    errors jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
