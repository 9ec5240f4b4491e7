-- gcleaner service schema: tenants and their API tokens, the job queue with its state machine,
-- one row per attempt, stored artifacts and outgoing completion callbacks.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenants_name_key UNIQUE (name)
);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    -- sha256 of the secret, hex; the secret itself is shown once and never stored.
    token_hash   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz,
    CONSTRAINT api_tokens_hash_key UNIQUE (token_hash)
);

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    state             text NOT NULL DEFAULT 'queued',
    phase             text,
    progress_step     integer,
    progress_total    integer,
    priority          smallint NOT NULL DEFAULT 0,
    -- Incremented by every claim: the fencing token that every worker write is checked against.
    attempt           integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL,
    run_at            timestamptz NOT NULL DEFAULT now(),
    lease_owner       text,
    lease_expires_at  timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    config            jsonb NOT NULL DEFAULT '{}'::jsonb,
    error             jsonb,
    idempotency_key   text,
    request_hash      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    CONSTRAINT jobs_state_check
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    CONSTRAINT jobs_phase_check
        CHECK (phase IS NULL OR phase IN ('validating', 'recovery', 'unlearning', 'evaluating')),
    CONSTRAINT jobs_attempts_check
        CHECK (max_attempts >= 1 AND attempt >= 0 AND attempt <= max_attempts),
    -- Terminal states, and only they, carry finished_at.
    CONSTRAINT jobs_finished_check
        CHECK ((state IN ('succeeded', 'failed', 'canceled')) = (finished_at IS NOT NULL)),
    -- A running job, and only it, holds a lease.
    CONSTRAINT jobs_lease_check
        CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT jobs_failed_error_check
        CHECK (state <> 'failed' OR error IS NOT NULL),
    CONSTRAINT jobs_progress_check
        CHECK (progress_step IS NULL OR (progress_step >= 0 AND progress_total >= 0)),
    CONSTRAINT jobs_idempotency_key UNIQUE (tenant_id, idempotency_key)
);

-- The claim query's order: highest priority first, then due time, then id.
CREATE INDEX jobs_fetch_idx ON jobs (state, priority DESC, run_at, id);
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_tenant_created_idx ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_attempts (
    job_id       uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    worker       text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text NOT NULL DEFAULT 'running',
    error        jsonb,
    PRIMARY KEY (job_id, attempt),
    CONSTRAINT job_attempts_outcome_check
        CHECK (outcome IN ('running', 'succeeded', 'failed', 'retrying', 'canceled',
                           'lease_expired', 'released')),
    CONSTRAINT job_attempts_finished_check
        CHECK ((outcome = 'running') = (finished_at IS NULL))
);

CREATE TABLE artifacts (
    job_id       uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    storage_key  text NOT NULL,
    sha256       text NOT NULL,
    size_bytes   bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, kind),
    CONSTRAINT artifacts_kind_check
        CHECK (kind IN ('input_model', 'input_spec', 'input_data', 'input_eval',
                        'output_model', 'report_json', 'report_html')),
    CONSTRAINT artifacts_sha256_check CHECK (sha256 ~ '^[0-9a-f]{64}$')
);

CREATE TABLE callbacks (
    job_id           uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    url              text NOT NULL,
    state            text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz,
    CONSTRAINT callbacks_state_check CHECK (state IN ('pending', 'delivered', 'failed'))
);
CREATE INDEX callbacks_due_idx ON callbacks (next_attempt_at) WHERE state = 'pending';

-- Every visible change of a job is announced on one channel (payload: the job id), so event
-- streams work across processes; a job becoming claimable also wakes idle workers.
CREATE FUNCTION gcleaner_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.state IS DISTINCT FROM OLD.state
       OR NEW.phase IS DISTINCT FROM OLD.phase
       OR NEW.progress_step IS DISTINCT FROM OLD.progress_step
       OR NEW.attempt IS DISTINCT FROM OLD.attempt THEN
        PERFORM pg_notify('gcleaner_job_events', NEW.id::text);
    END IF;
    IF NEW.state = 'queued' AND (TG_OP = 'INSERT' OR OLD.state <> 'queued') THEN
        PERFORM pg_notify('gcleaner_queue', '');
    END IF;
    -- Whoever ends the job (worker, reaper, API cancel), its completion callback is queued.
    IF TG_OP = 'UPDATE' AND NEW.finished_at IS NOT NULL AND OLD.finished_at IS NULL
       AND NEW.config ? 'callback_url' THEN
        INSERT INTO callbacks (job_id, url) VALUES (NEW.id, NEW.config ->> 'callback_url')
        ON CONFLICT (job_id) DO NOTHING;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION gcleaner_jobs_notify();
