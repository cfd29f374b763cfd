UPDATE orchestration_step_runs SET status = 'failed' WHERE status = 'cancelled';
ALTER TABLE orchestration_step_runs DROP CONSTRAINT orchestration_step_runs_status_check;
ALTER TABLE orchestration_step_runs ADD CONSTRAINT orchestration_step_runs_status_check CHECK (status IN
    ('pending', 'running', 'completed', 'failed', 'skipped', 'paused'));
DROP INDEX orchestration_executions_idempotency;
CREATE UNIQUE INDEX orchestration_executions_idempotency
    ON orchestration_executions (coalesce(tenant_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX orchestration_executions_session;
ALTER TABLE orchestration_executions
    DROP COLUMN metadata,
    DROP COLUMN session_id,
    DROP COLUMN callback_url;
