-- The plan's API contract: when an execution's current pause began
-- (NULL unless it is paused); a step answered from the step cache (and
-- from which execution) or held by a rate limit, as the memory store
-- reports them; executions listed by config id (?config_id=).
ALTER TABLE orchestration_executions ADD COLUMN paused_at timestamptz;
ALTER TABLE orchestration_step_runs
    ADD COLUMN cached       boolean NOT NULL DEFAULT false,
    ADD COLUMN cached_from  text,
    ADD COLUMN rate_wait_ms double precision;
CREATE INDEX orchestration_executions_config_id
    ON orchestration_executions (config_id, created_at DESC) WHERE config_id IS NOT NULL;
