DROP INDEX orchestration_executions_config_id;
ALTER TABLE orchestration_step_runs DROP COLUMN cached, DROP COLUMN cached_from, DROP COLUMN rate_wait_ms;
ALTER TABLE orchestration_executions DROP COLUMN paused_at;
