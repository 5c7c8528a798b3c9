-- scraper: sources an editor registers, their runs, the items they produced, and per-URL
-- fetch state (validators for conditional GET, which item a URL resolved to).
CREATE TABLE IF NOT EXISTS sources (
    id               uuid PRIMARY KEY,
    name             text        NOT NULL DEFAULT '',
    url              text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('page', 'feed', 'sitemap')),
    interval_ms      bigint      NOT NULL CHECK (interval_ms >= 1000),
    include_patterns jsonb       NOT NULL DEFAULT '[]'::jsonb,
    exclude_patterns jsonb       NOT NULL DEFAULT '[]'::jsonb,
    max_items        integer     NOT NULL CHECK (max_items > 0),
    status           text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    next_run_at      timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sources_due ON sources (next_run_at) WHERE status = 'active';

CREATE TABLE IF NOT EXISTS runs (
    id            uuid PRIMARY KEY,
    source_id     uuid        NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    state         text        NOT NULL CHECK (state IN ('running', 'finished', 'failed',
                                                        'interrupted')),
    trigger       text        NOT NULL DEFAULT 'schedule',
    resumed_from  uuid,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    fetched       bigint      NOT NULL DEFAULT 0,
    new_items     bigint      NOT NULL DEFAULT 0,
    unchanged     bigint      NOT NULL DEFAULT 0,
    failed        bigint      NOT NULL DEFAULT 0,
    error_summary text        NOT NULL DEFAULT ''
);
-- At most one run of a source at a time, whatever the number of replicas.
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_running ON runs (source_id) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS runs_source ON runs (source_id, started_at DESC);

CREATE TABLE IF NOT EXISTS items (
    id            uuid PRIMARY KEY,
    source_id     uuid        NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    url           text        NOT NULL,
    url_fp        text        NOT NULL,
    canonical_url text,
    title         text        NOT NULL DEFAULT '',
    author        text,
    published_at  timestamptz,
    lang          text,
    description   text,
    image_url     text,
    body          text        NOT NULL,
    content_hash  text        NOT NULL,
    simhash       bigint      NOT NULL,
    -- the SimHash in four 16-bit bands: two texts within 3 bits share at least one band
    sh0           integer     NOT NULL,
    sh1           integer     NOT NULL,
    sh2           integer     NOT NULL,
    sh3           integer     NOT NULL,
    version       integer     NOT NULL DEFAULT 1,
    run_id        uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Stored once: per source, one item per normalised URL and one per exact text.
CREATE UNIQUE INDEX IF NOT EXISTS items_source_url ON items (source_id, url_fp);
CREATE UNIQUE INDEX IF NOT EXISTS items_source_content ON items (source_id, content_hash);
CREATE INDEX IF NOT EXISTS items_sh0 ON items (source_id, sh0);
CREATE INDEX IF NOT EXISTS items_sh1 ON items (source_id, sh1);
CREATE INDEX IF NOT EXISTS items_sh2 ON items (source_id, sh2);
CREATE INDEX IF NOT EXISTS items_sh3 ON items (source_id, sh3);
CREATE INDEX IF NOT EXISTS items_source_id ON items (source_id, id DESC);

CREATE TABLE IF NOT EXISTS pages (
    source_id     uuid        NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    url_fp        text        NOT NULL,
    url           text        NOT NULL,
    etag          text,
    last_modified text,
    item_id       uuid,
    duplicate_of  uuid,
    fetched_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, url_fp)
);
