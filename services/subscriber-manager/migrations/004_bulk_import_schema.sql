-- What a million-row import pays for, per row, and what it buys (binary COPY of a real import's
-- rows, scripts/pg-ingest-ceiling.sh): the deferred foreign key from subscriber_secrets to
-- subscribers was the largest cost (a trigger queued per row, then one lookup each at commit),
-- then the two b-tree indexes below, which no query needs.
--
-- * The foreign key goes: both rows are written by the same statements of the same
--   transaction, and a subscriber is never deleted (erase keeps the row as a tombstone).
--   Joins use LEFT JOIN, so a secrets row without its subscriber would be invisible anyway.
-- * subscribers_status: five values over a million rows; searches by status walk the primary
--   key newest first (ids are UUIDv7) and stop at the page size, and segment counts scan.
-- * subscribers_created: nothing orders or seeks by created_at (ids are time-ordered).
-- * The GIN index on attributes stays: it halves the segment count of attribute equality.
ALTER TABLE subscriber_secrets DROP CONSTRAINT IF EXISTS subscriber_secrets_subscriber_id_fkey;
DROP INDEX IF EXISTS subscribers_status;
DROP INDEX IF EXISTS subscribers_created;

-- The blind index: the first 128 bits of the HMAC (collisions need ~2^64 addresses), in a uuid
-- column. uuid is PostgreSQL's fixed 16-byte type, compared by one memcmp; a 32-byte bytea is a
-- varlena compared through a function call. The unique index took half the CPU of writing the
-- secrets rows, and half of that goes (binary COPY of a million rows: 3.5 s over the heap's
-- 1.9 s as bytea, 1.7 s as uuid).
ALTER TABLE subscriber_secrets ALTER COLUMN email_index TYPE uuid
    USING encode(substring(email_index FROM 1 FOR 16), 'hex')::uuid;

-- An import's bad rows, one row each (row number, reason), instead of a jsonb array in the
-- imports row that every batch rewrote whole: appending to it was quadratic in the error count.
CREATE TABLE import_errors (
    import_id uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_number bigint NOT NULL,
    error text NOT NULL,
    PRIMARY KEY (import_id, row_number)
);
INSERT INTO import_errors (import_id, row_number, error)
SELECT i.id, (e ->> 'row')::bigint, e ->> 'error'
FROM imports i, jsonb_array_elements(i.errors) AS e
ON CONFLICT DO NOTHING;
ALTER TABLE imports DROP COLUMN errors;
