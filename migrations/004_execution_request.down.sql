DROP INDEX orchestration_executions_idempotency;
CREATE UNIQUE INDEX orchestration_executions_idempotency
    ON orchestration_executions (coalesce(tenant_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX orchestration_executions_session;
ALTER TABLE orchestration_executions
    DROP COLUMN metadata,
    DROP COLUMN session_id,
    DROP COLUMN callback_url;
