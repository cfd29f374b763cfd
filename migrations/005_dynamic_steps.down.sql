ALTER TABLE orchestration_step_runs
    DROP COLUMN reason,
    DROP COLUMN definition;
