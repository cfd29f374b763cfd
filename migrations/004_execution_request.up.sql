-- What an execute request may carry besides its input: a webhook of its
-- own (delivered with the config's settings.callback_url, if any), the
-- client's session and free metadata (the plan's API); and an
-- Idempotency-Key scoped to the user who sent it, not to the tenant.
ALTER TABLE orchestration_executions
    ADD COLUMN callback_url text,
    ADD COLUMN session_id   text,
    ADD COLUMN metadata     jsonb NOT NULL DEFAULT '{}';
CREATE INDEX orchestration_executions_session
    ON orchestration_executions (session_id, created_at DESC) WHERE session_id IS NOT NULL;
DROP INDEX orchestration_executions_idempotency;
CREATE UNIQUE INDEX orchestration_executions_idempotency
    ON orchestration_executions (coalesce(tenant_id, ''), coalesce(user_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- A step stopped by its execution (cancel, a sibling's abort, the
-- execution's deadline) is recorded "cancelled", not "failed".
ALTER TABLE orchestration_step_runs DROP CONSTRAINT orchestration_step_runs_status_check;
ALTER TABLE orchestration_step_runs ADD CONSTRAINT orchestration_step_runs_status_check CHECK (status IN
    ('pending', 'running', 'completed', 'failed', 'skipped', 'paused', 'cancelled'));
