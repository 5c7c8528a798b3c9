-- Run ownership for several replicas on one database: the instance that runs a run renews its
-- lease; a run whose lease ran out (its instance died) is interrupted by whichever instance
-- notices, and resumed (resume_pending) by its owner first, by anyone after a grace period.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS owner text;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS lease_until timestamptz;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS resume_pending boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS runs_running ON runs (lease_until) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS runs_resume ON runs (finished_at) WHERE resume_pending;
