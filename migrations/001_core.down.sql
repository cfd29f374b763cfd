DROP TABLE IF EXISTS chorus_nodes;
DROP TABLE IF EXISTS orchestration_callbacks;
DROP TABLE IF EXISTS orchestration_step_runs;
DROP TABLE IF EXISTS orchestration_executions;
DROP TABLE IF EXISTS orchestration_config_snapshots;
DROP TABLE IF EXISTS orchestration_config_versions;
DROP TABLE IF EXISTS orchestration_configs;
