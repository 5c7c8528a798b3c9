-- content-manager: its own copy of the scraper's items (from scraper.items), so that a brief can
-- name a scraped item as a source without reading the scraper's schema. Upserted by item id:
-- a changed page replaces its text; replays change nothing.
CREATE TABLE IF NOT EXISTS scraped_items (
    id          uuid PRIMARY KEY,
    source_id   text        NOT NULL,
    url         text        NOT NULL DEFAULT '',
    title       text        NOT NULL DEFAULT '',
    text        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
