-- content-manager: each item's history (GET /api/content/items/{id}/history). A trigger writes
-- it in the transaction of every change of an item, so it holds exactly what was committed,
-- whichever code path made the change: created, every status change (with the failure reason),
-- body edits, and the generation stages of the current job.
CREATE TABLE IF NOT EXISTS item_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id     uuid        NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    what        text        NOT NULL CHECK (what IN ('created', 'status', 'edited', 'progress')),
    status      text        NOT NULL,
    from_status text,
    version     bigint      NOT NULL,
    stage       text,
    percent     integer,
    detail      text
);

CREATE INDEX IF NOT EXISTS item_events_item_id ON item_events (item_id, id);

CREATE OR REPLACE FUNCTION item_events_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO item_events (item_id, what, status, version)
        VALUES (NEW.id, 'created', NEW.status, NEW.version);
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO item_events (item_id, what, status, from_status, version, detail)
        VALUES (NEW.id, 'status', NEW.status, OLD.status, NEW.version,
                CASE WHEN NEW.status = 'failed' THEN NEW.failure_reason END);
    ELSIF NEW.version IS DISTINCT FROM OLD.version THEN
        INSERT INTO item_events (item_id, what, status, version)
        VALUES (NEW.id, 'edited', NEW.status, NEW.version);
    ELSIF NEW.stage IS DISTINCT FROM OLD.stage OR NEW.percent IS DISTINCT FROM OLD.percent THEN
        INSERT INTO item_events (item_id, what, status, version, stage, percent)
        VALUES (NEW.id, 'progress', NEW.status, NEW.version, NEW.stage, NEW.percent);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER item_events_record AFTER INSERT OR UPDATE ON items
    FOR EACH ROW EXECUTE FUNCTION item_events_record();
