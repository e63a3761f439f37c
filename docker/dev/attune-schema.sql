-- Development/test mirror of the Attune tables attune-agent touches (contract §3.3, §5.10, §5.12).
--
-- Attune's own migrations own the real schema; this file mirrors, column for column, only what the
-- agent reads or writes, plus the FKs, enums, CHECKs and triggers that shape its behaviour. The agent
-- itself never creates or alters tables.
--
-- Idempotent: safe to apply again (the demo does). Apply with psql or any driver that accepts several
-- statements in one simple query.
--
-- Schema name: the two statements below are the ONLY place it appears; everything else is
-- unqualified and lands in the first search_path entry. test/helpers/pg.ts rewrites these two lines
-- to install the schema under another name (e.g. to test ATTUNE__DATABASE__SCHEMA).
CREATE SCHEMA IF NOT EXISTS attune;
SET search_path TO attune, public;
SET client_min_messages = warning; -- re-applying prints no "already exists, skipping" notices

-- ============================================================================
-- ENUMS (values from Attune's models and initial migration)
-- ============================================================================
DO $$ BEGIN
    CREATE TYPE worker_type_enum AS ENUM ('local', 'remote', 'container');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE worker_role_enum AS ENUM ('action', 'sensor');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE worker_status_enum AS ENUM ('active', 'inactive', 'busy', 'error');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE execution_status_enum AS ENUM (
        'requested', 'scheduling', 'scheduled', 'running', 'completed',
        'failed', 'canceling', 'cancelled', 'timeout', 'abandoned');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE enforcement_status_enum AS ENUM ('created', 'processed', 'disabled');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE enforcement_condition_enum AS ENUM ('any', 'all');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE artifact_retention_enum AS ENUM ('versions', 'days', 'hours', 'minutes');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE owner_type_enum AS ENUM ('system', 'identity', 'pack', 'action', 'sensor');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE artifact_type_enum AS ENUM (
        'file_binary', 'file_datatable', 'file_image', 'file_text', 'other', 'progress', 'url');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE artifact_visibility_enum AS ENUM ('public', 'private');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE artifact_classification_enum AS ENUM ('general', 'runtime_log');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE artifact_body_state_enum AS ENUM ('pending', 'ready', 'deleting', 'cleanup_claimed');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- Attune's `updated` maintenance, attached BEFORE UPDATE to every table with an `updated` column.
CREATE OR REPLACE FUNCTION update_updated_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- ============================================================================
-- IDENTITY (minimal: target of worker.cordoned_by and execution.executor)
-- ============================================================================
CREATE TABLE IF NOT EXISTS identity (
    id BIGSERIAL PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    display_name TEXT,
    attributes JSONB NOT NULL DEFAULT '{}'::jsonb,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- ============================================================================
-- PACK / PACK_RELEASE
-- ============================================================================
CREATE TABLE IF NOT EXISTS pack (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL,
    label TEXT NOT NULL,
    description TEXT,
    version TEXT NOT NULL,
    conf_schema JSONB NOT NULL DEFAULT '{}'::jsonb,
    config JSONB NOT NULL DEFAULT '{}'::jsonb,
    meta JSONB NOT NULL DEFAULT '{}'::jsonb,
    tags TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    runtime_deps TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    dependencies TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    is_standard BOOLEAN NOT NULL DEFAULT FALSE,
    installers JSONB NOT NULL DEFAULT '{}'::jsonb,
    worker_selector JSONB NOT NULL DEFAULT '{}'::jsonb,
    worker_tolerations JSONB NOT NULL DEFAULT '[]'::jsonb,
    worker_affinity JSONB NOT NULL DEFAULT '{}'::jsonb,
    source_type TEXT,
    source_url TEXT,
    source_ref TEXT,
    checksum TEXT,
    checksum_verified BOOLEAN,
    installed_at TIMESTAMPTZ,
    installed_by BIGINT REFERENCES identity(id) ON DELETE SET NULL,
    installation_method TEXT,
    storage_path TEXT,
    install_status TEXT NOT NULL DEFAULT 'installed',
    active_release BIGINT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS pack_release (
    id BIGSERIAL PRIMARY KEY,
    pack BIGINT NOT NULL REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    object_key TEXT,
    provider_version TEXT,
    archive_path TEXT NOT NULL DEFAULT '',
    content_path TEXT NOT NULL,
    archive_size BIGINT NOT NULL DEFAULT 0 CHECK (archive_size >= 0),
    manifest JSONB NOT NULL DEFAULT '{}'::jsonb,
    inactive_since TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT pack_release_pack_version_unique UNIQUE (pack, version),
    CONSTRAINT pack_release_pack_id_unique UNIQUE (pack, id),
    CONSTRAINT pack_release_digest_sha256 CHECK (digest ~ '^[0-9a-f]{64}$'),
    CONSTRAINT pack_release_manifest_object CHECK (jsonb_typeof(manifest) = 'object')
);
CREATE INDEX IF NOT EXISTS idx_pack_release_digest ON pack_release(digest);

DO $$ BEGIN
    ALTER TABLE pack
        ADD CONSTRAINT pack_active_release_same_pack
        FOREIGN KEY (id, active_release) REFERENCES pack_release(pack, id)
        DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- ============================================================================
-- RUNTIME / RUNTIME_VERSION (contract §5.12 column lists)
-- ============================================================================
CREATE TABLE IF NOT EXISTS runtime (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL,
    pack BIGINT REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT,
    description TEXT,
    name TEXT NOT NULL,
    aliases TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    distributions JSONB NOT NULL DEFAULT '{}'::jsonb,
    installation JSONB,
    installers JSONB NOT NULL DEFAULT '{}'::jsonb,
    execution_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    auto_detected BOOLEAN NOT NULL DEFAULT FALSE,
    detection_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    retired_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT runtime_ref_lowercase CHECK (ref = LOWER(ref))
);
CREATE INDEX IF NOT EXISTS idx_runtime_pack ON runtime(pack);
CREATE INDEX IF NOT EXISTS idx_runtime_aliases ON runtime USING GIN (aliases);

CREATE TABLE IF NOT EXISTS runtime_version (
    id BIGSERIAL PRIMARY KEY,
    runtime BIGINT NOT NULL REFERENCES runtime(id) ON DELETE CASCADE,
    runtime_ref TEXT NOT NULL,
    version TEXT NOT NULL,
    version_major INTEGER,
    version_minor INTEGER,
    version_patch INTEGER,
    execution_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    distributions JSONB NOT NULL DEFAULT '{}'::jsonb,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    available BOOLEAN NOT NULL DEFAULT TRUE,
    verified_at TIMESTAMPTZ,
    meta JSONB NOT NULL DEFAULT '{}'::jsonb,
    retired_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT runtime_version_unique UNIQUE (runtime, version)
);
CREATE INDEX IF NOT EXISTS idx_runtime_version_runtime ON runtime_version(runtime);

-- ============================================================================
-- ACTION (contract §5.5, §5.12)
-- ============================================================================
CREATE TABLE IF NOT EXISTS action (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL,
    pack BIGINT REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    description TEXT,
    entrypoint TEXT NOT NULL,
    runtime BIGINT REFERENCES runtime(id) ON DELETE SET NULL,
    runtime_version_constraint TEXT,
    param_schema JSONB,
    out_schema JSONB,
    is_adhoc BOOLEAN NOT NULL DEFAULT FALSE,
    parameter_delivery TEXT NOT NULL DEFAULT 'stdin',
    parameter_format TEXT NOT NULL DEFAULT 'json',
    output_format TEXT NOT NULL DEFAULT 'text',
    timeout_seconds INTEGER,
    log_retention_policy artifact_retention_enum,
    log_retention_limit INTEGER,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT action_parameter_delivery_check CHECK (parameter_delivery IN ('stdin', 'file')),
    CONSTRAINT action_parameter_format_check CHECK (parameter_format IN ('dotenv', 'json', 'yaml')),
    CONSTRAINT action_output_format_check CHECK (output_format IN ('text', 'json', 'yaml', 'jsonl')),
    CONSTRAINT action_timeout_seconds_positive CHECK (timeout_seconds IS NULL OR timeout_seconds > 0),
    CONSTRAINT action_log_retention_limit_positive CHECK (log_retention_limit IS NULL OR log_retention_limit > 0)
);
CREATE INDEX IF NOT EXISTS idx_action_pack ON action(pack);
CREATE INDEX IF NOT EXISTS idx_action_runtime ON action(runtime);

-- ============================================================================
-- ENFORCEMENT (the agent reads rule_ref / trigger_ref for ATTUNE_RULE / ATTUNE_TRIGGER)
-- ============================================================================
CREATE TABLE IF NOT EXISTS enforcement (
    id BIGSERIAL PRIMARY KEY,
    rule BIGINT,
    rule_ref TEXT NOT NULL,
    trigger_ref TEXT NOT NULL,
    config JSONB,
    event BIGINT,
    status enforcement_status_enum NOT NULL DEFAULT 'created',
    payload JSONB NOT NULL DEFAULT '{}'::jsonb,
    condition enforcement_condition_enum NOT NULL DEFAULT 'all',
    conditions JSONB NOT NULL DEFAULT '[]'::jsonb,
    pack_release BIGINT REFERENCES pack_release(id) ON DELETE SET NULL,
    pack_release_digest TEXT,
    executable_snapshot JSONB,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- ============================================================================
-- WORKER (contract §3.3, exactly)
-- ============================================================================
CREATE TABLE IF NOT EXISTS worker (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    worker_type worker_type_enum NOT NULL,
    worker_role worker_role_enum NOT NULL,
    runtime BIGINT REFERENCES runtime(id) ON DELETE SET NULL,
    host TEXT,
    port INTEGER,
    status worker_status_enum NOT NULL DEFAULT 'active',
    capabilities JSONB,
    meta JSONB,
    last_heartbeat TIMESTAMPTZ,
    cordoned BOOLEAN NOT NULL DEFAULT FALSE,
    cordon_reason TEXT,
    cordoned_by BIGINT REFERENCES identity(id) ON DELETE SET NULL,
    cordoned_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_worker_status ON worker(status);
CREATE INDEX IF NOT EXISTS idx_worker_last_heartbeat ON worker(last_heartbeat DESC) WHERE last_heartbeat IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_worker_capabilities_gin ON worker USING GIN (capabilities);

CREATE OR REPLACE VIEW healthy_workers AS
SELECT
    w.id, w.name, w.worker_type, w.worker_role, w.runtime, w.status, w.capabilities, w.last_heartbeat,
    (w.capabilities -> 'health' ->> 'status')::TEXT AS health_status,
    (w.capabilities -> 'health' ->> 'queue_depth')::INTEGER AS queue_depth,
    (w.capabilities -> 'health' ->> 'consecutive_failures')::INTEGER AS consecutive_failures
FROM worker w
WHERE w.status = 'active'
  AND w.last_heartbeat > NOW() - INTERVAL '30 seconds'
  AND (w.capabilities -> 'health' IS NULL
       OR w.capabilities -> 'health' ->> 'status' IN ('healthy', 'degraded'));

-- ============================================================================
-- EXECUTION (contract §5.12, incl. the DB-only workflow_def)
-- ============================================================================
CREATE TABLE IF NOT EXISTS execution (
    id BIGSERIAL PRIMARY KEY,
    action BIGINT REFERENCES action(id) ON DELETE SET NULL,
    action_ref TEXT NOT NULL,
    config JSONB,
    env_vars JSONB,
    parent BIGINT REFERENCES execution(id) ON DELETE SET NULL,
    enforcement BIGINT REFERENCES enforcement(id) ON DELETE SET NULL,
    executor BIGINT REFERENCES identity(id) ON DELETE SET NULL,
    permission_set_refs TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    artifact_retention_policy artifact_retention_enum,
    artifact_retention_limit INTEGER,
    worker_selector JSONB,
    worker_tolerations JSONB,
    worker_affinity JSONB,
    worker BIGINT REFERENCES worker(id) ON DELETE SET NULL,
    status execution_status_enum NOT NULL DEFAULT 'requested',
    result JSONB,
    started_at TIMESTAMPTZ,
    timeout_seconds INTEGER,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    workflow_def BIGINT,
    workflow_task JSONB,
    retry_count INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER,
    retry_reason TEXT,
    original_execution BIGINT REFERENCES execution(id) ON DELETE SET NULL,
    trace_tag TEXT,
    pack_release BIGINT REFERENCES pack_release(id) ON DELETE SET NULL,
    pack_release_digest TEXT,
    executable_snapshot JSONB,
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT execution_artifact_retention_limit_positive CHECK (artifact_retention_limit IS NULL OR artifact_retention_limit > 0),
    CONSTRAINT execution_timeout_seconds_positive CHECK (timeout_seconds IS NULL OR timeout_seconds > 0),
    CONSTRAINT execution_release_pin_complete CHECK (
        (pack_release IS NULL AND pack_release_digest IS NULL AND executable_snapshot IS NULL)
        OR (pack_release_digest IS NOT NULL AND executable_snapshot IS NOT NULL)),
    CONSTRAINT execution_release_digest_sha256 CHECK (
        pack_release_digest IS NULL OR pack_release_digest ~ '^[0-9a-f]{64}$')
);
CREATE INDEX IF NOT EXISTS idx_execution_worker ON execution(worker);
CREATE INDEX IF NOT EXISTS idx_execution_status ON execution(status);
CREATE INDEX IF NOT EXISTS idx_execution_action ON execution(action);

-- Real-time path of Attune's notifier (payload shape as in Attune's migration).
CREATE OR REPLACE FUNCTION notify_execution_created()
RETURNS TRIGGER AS $$
DECLARE
    payload JSON;
    enforcement_rule_ref TEXT;
    enforcement_trigger_ref TEXT;
BEGIN
    IF NEW.enforcement IS NOT NULL THEN
        SELECT rule_ref, trigger_ref INTO enforcement_rule_ref, enforcement_trigger_ref
        FROM enforcement WHERE id = NEW.enforcement;
    END IF;
    payload := json_build_object(
        'entity_type', 'execution', 'entity_id', NEW.id, 'id', NEW.id,
        'action_id', NEW.action, 'action_ref', NEW.action_ref, 'status', NEW.status,
        'enforcement', NEW.enforcement, 'rule_ref', enforcement_rule_ref,
        'trigger_ref', enforcement_trigger_ref, 'parent', NEW.parent,
        'started_at', NEW.started_at, 'workflow_task', NEW.workflow_task,
        'created', NEW.created, 'updated', NEW.updated);
    PERFORM pg_notify('execution_created', payload::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION notify_execution_status_changed()
RETURNS TRIGGER AS $$
DECLARE
    payload JSON;
    enforcement_rule_ref TEXT;
    enforcement_trigger_ref TEXT;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS DISTINCT FROM NEW.status THEN
        IF NEW.enforcement IS NOT NULL THEN
            SELECT rule_ref, trigger_ref INTO enforcement_rule_ref, enforcement_trigger_ref
            FROM enforcement WHERE id = NEW.enforcement;
        END IF;
        payload := json_build_object(
            'entity_type', 'execution', 'entity_id', NEW.id, 'id', NEW.id,
            'action_id', NEW.action, 'action_ref', NEW.action_ref,
            'status', NEW.status, 'old_status', OLD.status,
            'enforcement', NEW.enforcement, 'rule_ref', enforcement_rule_ref,
            'trigger_ref', enforcement_trigger_ref, 'parent', NEW.parent,
            'started_at', NEW.started_at, 'workflow_task', NEW.workflow_task,
            'created', NEW.created, 'updated', NEW.updated);
        PERFORM pg_notify('execution_status_changed', payload::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS execution_created_notify ON execution;
CREATE TRIGGER execution_created_notify
    AFTER INSERT ON execution FOR EACH ROW EXECUTE FUNCTION notify_execution_created();
DROP TRIGGER IF EXISTS execution_status_changed_notify ON execution;
CREATE TRIGGER execution_status_changed_notify
    AFTER UPDATE ON execution FOR EACH ROW EXECUTE FUNCTION notify_execution_status_changed();

-- ============================================================================
-- SECRET VALUES (contract §5.5, §5.9): encrypted values behind the redaction markers of
-- execution.config / execution.result
-- ============================================================================
CREATE TABLE IF NOT EXISTS execution_secret_value (
    id BIGSERIAL PRIMARY KEY,
    entity_type TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    json_path TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    source_ref TEXT,
    encrypted_value JSONB NOT NULL,
    encryption_key_hash TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (entity_type, entity_id, json_path)
);
CREATE INDEX IF NOT EXISTS idx_execution_secret_value_entity ON execution_secret_value (entity_type, entity_id);

-- ============================================================================
-- LOG ARTIFACTS (contract §5.10)
-- ============================================================================
CREATE TABLE IF NOT EXISTS artifact (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL,
    scope owner_type_enum NOT NULL DEFAULT 'system',
    owner TEXT NOT NULL DEFAULT '',
    type artifact_type_enum NOT NULL,
    visibility artifact_visibility_enum NOT NULL DEFAULT 'private',
    classification artifact_classification_enum NOT NULL DEFAULT 'general',
    retention_policy artifact_retention_enum NOT NULL DEFAULT 'versions',
    retention_limit INTEGER NOT NULL DEFAULT 1,
    name TEXT,
    description TEXT,
    content_type TEXT,
    size_bytes BIGINT,
    execution BIGINT REFERENCES execution(id) ON DELETE SET NULL,
    data JSONB,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS artifact_version (
    id BIGSERIAL PRIMARY KEY,
    artifact BIGINT NOT NULL REFERENCES artifact(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    execution BIGINT REFERENCES execution(id) ON DELETE SET NULL,
    content_type TEXT,
    size_bytes BIGINT,
    content BYTEA,
    content_json JSONB,
    file_path TEXT,
    meta JSONB,
    created_by TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- object storage and shared-file log streams (Attune migrations 20260909000003/6, 20260912000001)
    body_state artifact_body_state_enum,
    object_key TEXT,
    provider_version TEXT,
    sha256 TEXT,
    body_updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT artifact_version_unique UNIQUE (artifact, version),
    -- pending bodies have no size/digest yet; ready ones have both, and a shared-file body a file_path
    CONSTRAINT ck_artifact_version_object_metadata CHECK (
        (body_state IS NULL AND object_key IS NULL AND provider_version IS NULL AND sha256 IS NULL)
        OR (body_state = 'pending' AND provider_version IS NULL AND sha256 IS NULL AND size_bytes IS NULL)
        OR (body_state = 'cleanup_claimed')
        OR (body_state IN ('ready', 'deleting') AND size_bytes IS NOT NULL AND size_bytes >= 0
            AND sha256 ~ '^[0-9a-f]{64}$'
            AND ((object_key IS NOT NULL AND provider_version IS NOT NULL)
                 OR (object_key IS NULL AND provider_version IS NULL AND file_path IS NOT NULL)))
    )
);
CREATE INDEX IF NOT EXISTS idx_artifact_version_execution ON artifact_version(execution);

DO $$ BEGIN
    CREATE TYPE log_stream_backend_enum AS ENUM ('object_segments', 'shared_file');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE TABLE IF NOT EXISTS log_stream (
    id BIGSERIAL PRIMARY KEY,
    artifact_version BIGINT NOT NULL UNIQUE REFERENCES artifact_version(id) ON DELETE CASCADE,
    max_unflushed_bytes BIGINT NOT NULL CHECK (max_unflushed_bytes > 0),
    max_unflushed_milliseconds BIGINT NOT NULL CHECK (max_unflushed_milliseconds > 0),
    next_sequence BIGINT NOT NULL DEFAULT 0 CHECK (next_sequence >= 0),
    total_bytes BIGINT NOT NULL DEFAULT 0 CHECK (total_bytes >= 0),
    truncated BOOLEAN NOT NULL DEFAULT FALSE,
    sealed BOOLEAN NOT NULL DEFAULT FALSE,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    sealed_at TIMESTAMPTZ,
    backend log_stream_backend_enum NOT NULL DEFAULT 'object_segments'
);

-- ============================================================================
-- `updated` triggers (one per table with an `updated` column)
-- ============================================================================
DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['identity', 'pack', 'runtime', 'runtime_version', 'action', 'enforcement',
                             'worker', 'execution', 'artifact'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', 'update_' || t || '_updated', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION update_updated_column()',
                       'update_' || t || '_updated', t);
    END LOOP;
END $$;
