-- Steps a strategy starts at run time (ctx:run_step{...}, a map's items)
-- are rows like the declared ones, with their definition, so a node that
-- resumes the execution knows them; a skipped step says why.
ALTER TABLE orchestration_step_runs
    ADD COLUMN definition jsonb,
    ADD COLUMN reason     text;
