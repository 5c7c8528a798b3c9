-- An import writes one outbox row per batch holding the batch's events (a bulk row, libs/db):
-- megabytes of mostly sealed, incompressible bytes. pglz spent ~9% of PostgreSQL's time on
-- them in a million-row import before giving up; lz4 tries much faster (and still compresses
-- the repeated ids and types). Small event rows are not compressed either way.
ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
