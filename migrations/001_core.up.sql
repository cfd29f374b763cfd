-- 001_core: the seed's four tables, done properly, plus config versions.
--
-- Fixes to the seed's schema:
--  * step runs are unique per (execution, step_id) and per (execution,
--    step_index) where step_index is the step's position in the config,
--    not a counter taken when it starts (parallel steps starting together
--    collided on the seed's counter);
--  * indexes match the queries actually made (newest first per config,
--    per user, per status; the claim query's partial index);
--  * names are unique per tenant among live configs only (a soft-deleted
--    name can be reused), enforced by a partial unique index;
--  * statuses are CHECKed, timestamps are timestamptz.

CREATE TABLE orchestration_configs (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text,
    strategy    text NOT NULL,
    steps       jsonb NOT NULL,             -- {"steps": [...], "settings": {...}}
    metadata    jsonb NOT NULL DEFAULT '{}',
    tenant_id   text,                       -- NULL: global, visible to all tenants
    owner_id    text,
    is_active   boolean NOT NULL DEFAULT true,
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text,
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX orchestration_configs_live_name
    ON orchestration_configs (coalesce(tenant_id, ''), name) WHERE deleted_at IS NULL;
CREATE INDEX orchestration_configs_tenant_strategy
    ON orchestration_configs (tenant_id, strategy) WHERE deleted_at IS NULL;

-- Every version a config ever had; executions point at the one they ran.
CREATE TABLE orchestration_config_versions (
    config_id   uuid NOT NULL REFERENCES orchestration_configs (id) ON DELETE CASCADE,
    version     integer NOT NULL,
    name        text NOT NULL,
    description text,
    strategy    text NOT NULL,
    steps       jsonb NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text,
    PRIMARY KEY (config_id, version)
);

-- Normalized configs executions ran with, stored once per distinct
-- content (hash = sha256 of the canonical JSON).
CREATE TABLE orchestration_config_snapshots (
    hash        text PRIMARY KEY,
    snapshot    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orchestration_executions (
    id              uuid PRIMARY KEY,
    trace_id        uuid NOT NULL UNIQUE,
    config_id       uuid REFERENCES orchestration_configs (id),  -- NULL: inline config
    config_version  integer,
    config_name     text NOT NULL,
    config_hash     text NOT NULL REFERENCES orchestration_config_snapshots (hash),
    script_versions jsonb NOT NULL DEFAULT '{}',  -- strategy/agent content hashes
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN
                    ('pending', 'running', 'paused', 'compensation',
                     'completed', 'failed', 'cancelled')),
    -- not yet ended. Indexes use this, not status, so the updates between
    -- pending and the end change no indexed column and stay HOT (no index
    -- writes): an execution's row is written at every transition.
    active          boolean NOT NULL DEFAULT true,
    input           jsonb NOT NULL DEFAULT '{}',
    output          jsonb,
    error           text,
    answered_by     text,
    consensus       jsonb,
    user_id         text,
    tenant_id       text,
    idempotency_key text,
    priority        integer NOT NULL DEFAULT 0,
    -- controls asked for through the API, applied by the node running it
    paused_by_user  boolean NOT NULL DEFAULT false,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- work claiming: the node holding the lease runs it; claim_token fences
    -- a node that lost its lease out of every later write
    node_id         text,
    claim_token     uuid,
    lease_expires_at timestamptz,
    claims          integer NOT NULL DEFAULT 0,
    seq             bigint NOT NULL DEFAULT 0,  -- last applied update (ordering)
    tokens          bigint NOT NULL DEFAULT 0,
    cost            double precision NOT NULL DEFAULT 0,
    latency_ms      double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX orchestration_executions_idempotency
    ON orchestration_executions (coalesce(tenant_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The claim query: active executions whose lease is free or expired.
CREATE INDEX orchestration_executions_claimable
    ON orchestration_executions (priority DESC, created_at) WHERE active;
CREATE INDEX orchestration_executions_config ON orchestration_executions (config_name, created_at DESC);
CREATE INDEX orchestration_executions_user ON orchestration_executions (user_id, created_at DESC);
CREATE INDEX orchestration_executions_tenant ON orchestration_executions (tenant_id, created_at DESC);
CREATE INDEX orchestration_executions_node ON orchestration_executions (node_id) WHERE active;
-- Room on each page for HOT updates.
ALTER TABLE orchestration_executions SET (fillfactor = 80);

CREATE TABLE orchestration_step_runs (
    execution_id   uuid NOT NULL REFERENCES orchestration_executions (id) ON DELETE CASCADE,
    step_id        text NOT NULL,
    step_index     integer NOT NULL CHECK (step_index >= 0),  -- position in the config
    name           text,
    agent          text NOT NULL,
    agent_version  text,
    status         text NOT NULL CHECK (status IN
                   ('pending', 'running', 'completed', 'failed', 'skipped', 'paused')),
    attempts       integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    input          jsonb,
    output         jsonb,
    output_truncated boolean NOT NULL DEFAULT false,
    error          text,
    latency_ms     double precision,
    tokens         bigint NOT NULL DEFAULT 0,
    cost           double precision NOT NULL DEFAULT 0,
    answered_by    text,
    approval       jsonb,
    compensation   jsonb,
    seq            bigint NOT NULL DEFAULT 0,  -- last applied write (ordering, fencing)
    started_at     timestamptz,
    finished_at    timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, step_id),
    UNIQUE (execution_id, step_index)
);
-- A step's row is written two or three times (status is not indexed):
-- room on each page keeps those updates HOT.
ALTER TABLE orchestration_step_runs SET (fillfactor = 70);

-- Webhook outbox: written in the same transaction as the terminal status.
CREATE TABLE orchestration_callbacks (
    id             bigserial PRIMARY KEY,
    execution_id   uuid NOT NULL REFERENCES orchestration_executions (id) ON DELETE CASCADE,
    url            text NOT NULL,
    payload        jsonb NOT NULL,
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error     text,
    last_status_code integer,
    created_at     timestamptz NOT NULL DEFAULT now(),
    delivered_at   timestamptz,
    UNIQUE (execution_id, url)
);
CREATE INDEX orchestration_callbacks_due ON orchestration_callbacks (next_attempt_at)
    WHERE status = 'pending';

-- Nodes (chorus worker / chorus serve processes) and their heartbeats.
CREATE TABLE chorus_nodes (
    node_id       text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);
