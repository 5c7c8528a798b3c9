-- content-manager: content items (briefs and their generated drafts).
CREATE TABLE IF NOT EXISTS items (
    id             uuid PRIMARY KEY,
    title          text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('article', 'newsletter', 'social')),
    topic          text        NOT NULL DEFAULT '',
    instructions   text        NOT NULL DEFAULT '',
    sources        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    status         text        NOT NULL CHECK (status IN ('draft', 'generating', 'generated',
                                                          'approved', 'failed', 'archived')),
    body           text        NOT NULL DEFAULT '',
    failure_reason text,
    job_id         uuid,
    stage          text,
    percent        integer,
    version        bigint      NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS items_status_id ON items (status, id DESC);
CREATE INDEX IF NOT EXISTS items_kind_id ON items (kind, id DESC);
