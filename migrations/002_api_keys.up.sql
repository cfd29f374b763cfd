-- 002_api_keys: bearer API keys. Only the sha256 of a key is stored; the
-- prefix (first 12 characters) identifies it in lists and revocations.
CREATE TABLE chorus_api_keys (
    id         uuid PRIMARY KEY,
    prefix     text NOT NULL UNIQUE,
    hash       text NOT NULL UNIQUE,
    tenant_id  text,
    user_id    text,
    role       text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
