-- API processes cache job rows for status polls and drop them on these notifications, so every
-- field a status read shows, bar updated_at, must announce its change.
CREATE OR REPLACE FUNCTION gcleaner_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.state IS DISTINCT FROM OLD.state
       OR NEW.phase IS DISTINCT FROM OLD.phase
       OR NEW.progress_step IS DISTINCT FROM OLD.progress_step
       OR NEW.progress_total IS DISTINCT FROM OLD.progress_total
       OR NEW.attempt IS DISTINCT FROM OLD.attempt
       OR NEW.cancel_requested IS DISTINCT FROM OLD.cancel_requested
       OR NEW.error IS DISTINCT FROM OLD.error THEN
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
