-- One row per generation job. job_id is the key, so a request delivered twice (or sent twice
-- under new event ids) is one job. The request itself is kept (request, the GenerationRequest
-- bytes) so that a job acknowledged on Kafka but not finished when the process died is re-run
-- from here at the next start.
CREATE TABLE jobs (
    job_id        text PRIMARY KEY,
    item_id       text NOT NULL,
    kind          text NOT NULL,
    provider      text NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'failed')),
    stage         text NOT NULL DEFAULT 'queued',
    attempts      integer NOT NULL DEFAULT 0,
    queued_at     timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    input_bytes   bigint NOT NULL DEFAULT 0,
    output_bytes  bigint NOT NULL DEFAULT 0,
    input_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    tokens_estimated boolean NOT NULL DEFAULT true,
    error         text,
    trace_id      text NOT NULL DEFAULT '',
    request       bytea NOT NULL
);

-- The start-up scan for unfinished jobs.
CREATE INDEX jobs_unfinished ON jobs (queued_at) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_item ON jobs (item_id);
