-- Development/test copy of the Attune tables attune-agent touches (docs/attune-compat.md §3.3, §5.10, §5.12),
-- in their final state after ALL of Attune's migrations (`migrations/` of attune-system/attune,
-- applied in order, every later ALTER followed). docs/attune-schema-notes.md names, per table, the
-- migrations that shape it and the few places where this file deliberately differs.
--
-- Faithful, not approximate: same columns, types, NULLability, defaults, uniqueness (constraints,
-- unique and partial indexes), CHECKs, FKs and triggers as Attune on every table the agent reads or
-- writes, so a statement that relies on something Attune does not have fails here too. Notably
-- `artifact.ref` is NOT unique (plain index; several rows may share a ref). Written in this
-- project's own words; the agent itself never creates or alters tables.
--
-- Out of scope (never touched by the agent, directly or through a trigger): Attune's other tables.
-- Tables that are only FK targets or trigger targets here (rule, workflow_definition, event,
-- execution_history, worker_history, audit_event, object_maintenance_ledger) carry their real
-- columns but not their own links to out-of-scope tables. Attune partitions event,
-- execution_history and audit_event natively (RANGE with a DEFAULT partition); they are plain
-- tables here with the same columns.
--
-- Idempotent: safe to apply again (the demo does) on a database built from THIS file. Apply with
-- psql or any driver that accepts several statements in one simple query.
--
-- Schema name: the two statements below are the ONLY place it appears; everything else is
-- unqualified and lands in the first search_path entry. test/helpers/pg.ts rewrites these two lines
-- to install the schema under another name (e.g. to test ATTUNE__DATABASE__SCHEMA).
CREATE SCHEMA IF NOT EXISTS attune;
SET search_path TO attune, public;
SET client_min_messages = warning; -- re-applying prints no "already exists, skipping" notices

-- Attune's initial migration enables both; gen_random_bytes/gen_random_uuid come from pgcrypto.
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" SCHEMA public;
CREATE EXTENSION IF NOT EXISTS "pgcrypto" SCHEMA public;

-- ============================================================================
-- ENUMS (final value lists, including later ALTER TYPE ... ADD VALUE)
-- ============================================================================
DO $$ BEGIN CREATE TYPE worker_type_enum AS ENUM ('local', 'remote', 'container');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE worker_role_enum AS ENUM ('action', 'sensor');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE worker_status_enum AS ENUM ('active', 'inactive', 'busy', 'error');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE enforcement_status_enum AS ENUM ('created', 'processed', 'disabled');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE enforcement_condition_enum AS ENUM ('any', 'all');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE execution_status_enum AS ENUM (
    'requested', 'scheduling', 'scheduled', 'running', 'completed',
    'failed', 'canceling', 'cancelled', 'timeout', 'abandoned');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE owner_type_enum AS ENUM ('system', 'identity', 'pack', 'action', 'sensor');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE artifact_type_enum AS ENUM (
    'file_binary', 'file_datatable', 'file_image', 'file_text', 'other', 'progress', 'url');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE artifact_retention_enum AS ENUM ('versions', 'days', 'hours', 'minutes');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE artifact_visibility_enum AS ENUM ('public', 'private');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE artifact_classification_enum AS ENUM ('general', 'runtime_log');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
-- 'cleanup_claimed' is appended by 20260912000002 (ALTER TYPE ... ADD VALUE): same final order.
DO $$ BEGIN CREATE TYPE artifact_body_state_enum AS ENUM ('pending', 'ready', 'deleting', 'cleanup_claimed');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE log_stream_backend_enum AS ENUM ('object_segments', 'shared_file');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE action_reference_visibility_enum AS ENUM ('public', 'private', 'restricted');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE management_origin AS ENUM ('platform', 'pack', 'ad_hoc');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE absent_metadata_policy AS ENUM ('remove', 'disable', 'retain');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE audit_category_enum AS ENUM ('api', 'auth', 'rbac', 'secret', 'admin', 'execution', 'pack');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE TYPE audit_outcome_enum AS ENUM ('success', 'failure', 'denied');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- ============================================================================
-- SHARED FUNCTIONS
-- ============================================================================
-- `updated` maintenance, attached BEFORE UPDATE to the tables that have the column.
CREATE OR REPLACE FUNCTION update_updated_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- NOTIFY carries the full payload when it fits PostgreSQL's limit with headroom, else a compact one.
CREATE OR REPLACE FUNCTION _notify_payload_guard(channel TEXT, full_payload TEXT, compact_payload TEXT)
RETURNS VOID AS $$
BEGIN
    IF octet_length(full_payload) <= 7000 THEN
        PERFORM pg_notify(channel, full_payload);
    ELSE
        PERFORM pg_notify(channel, compact_payload);
    END IF;
END;
$$ LANGUAGE plpgsql;

-- {digest, size, type} of a possibly large JSONB value, for history rows.
CREATE OR REPLACE FUNCTION _jsonb_digest_summary(val JSONB)
RETURNS JSONB AS $$
BEGIN
    IF val IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('digest', 'md5:' || md5(val::text), 'size', octet_length(val::text), 'type', jsonb_typeof(val));
END;
$$ LANGUAGE plpgsql IMMUTABLE;

-- Metadata-cache invalidation (action, runtime, runtime_version here): one compact NOTIFY per row change.
CREATE OR REPLACE FUNCTION notify_metadata_changed()
RETURNS TRIGGER AS $$
DECLARE
    cur JSONB;
    prev JSONB;
    payload JSONB;
BEGIN
    cur := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    prev := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) ELSE '{}'::jsonb END;
    payload := jsonb_build_object(
        'entity', TG_TABLE_NAME, 'operation', TG_OP,
        'id', (cur ->> 'id')::BIGINT, 'ref', cur ->> 'ref',
        'pack', CASE WHEN cur ? 'pack' THEN (cur ->> 'pack')::BIGINT END,
        'enabled', CASE WHEN cur ? 'enabled' THEN (cur ->> 'enabled')::BOOLEAN END,
        'action', CASE WHEN cur ? 'action' THEN (cur ->> 'action')::BIGINT END,
        'trigger', CASE WHEN cur ? 'trigger' THEN (cur ->> 'trigger')::BIGINT END,
        'sensor', CASE WHEN cur ? 'sensor' THEN (cur ->> 'sensor')::BIGINT END,
        'runtime', CASE WHEN cur ? 'runtime' THEN (cur ->> 'runtime')::BIGINT END,
        'runtime_ref', CASE WHEN cur ? 'runtime_ref' THEN cur ->> 'runtime_ref' END,
        'version', CASE WHEN cur ? 'version' THEN cur ->> 'version' END,
        'workflow_def', CASE WHEN cur ? 'workflow_def' THEN (cur ->> 'workflow_def')::BIGINT END,
        'webhook_key', CASE WHEN cur ? 'webhook_key' THEN cur ->> 'webhook_key' END,
        'name', CASE WHEN cur ? 'name' THEN cur ->> 'name' END,
        'aliases', CASE WHEN cur ? 'aliases' THEN cur -> 'aliases' END,
        'available', CASE WHEN cur ? 'available' THEN (cur ->> 'available')::BOOLEAN END,
        'accepting_new_items', CASE WHEN cur ? 'accepting_new_items' THEN (cur ->> 'accepting_new_items')::BOOLEAN END,
        'old_ref', CASE WHEN prev ? 'ref' THEN prev ->> 'ref' END,
        'old_pack', CASE WHEN prev ? 'pack' THEN (prev ->> 'pack')::BIGINT END,
        'old_enabled', CASE WHEN prev ? 'enabled' THEN (prev ->> 'enabled')::BOOLEAN END,
        'old_action', CASE WHEN prev ? 'action' THEN (prev ->> 'action')::BIGINT END,
        'old_trigger', CASE WHEN prev ? 'trigger' THEN (prev ->> 'trigger')::BIGINT END,
        'old_sensor', CASE WHEN prev ? 'sensor' THEN (prev ->> 'sensor')::BIGINT END,
        'old_runtime', CASE WHEN prev ? 'runtime' THEN (prev ->> 'runtime')::BIGINT END,
        'old_runtime_ref', CASE WHEN prev ? 'runtime_ref' THEN prev ->> 'runtime_ref' END,
        'old_version', CASE WHEN prev ? 'version' THEN prev ->> 'version' END,
        'old_workflow_def', CASE WHEN prev ? 'workflow_def' THEN (prev ->> 'workflow_def')::BIGINT END,
        'old_webhook_key', CASE WHEN prev ? 'webhook_key' THEN prev ->> 'webhook_key' END,
        'old_name', CASE WHEN prev ? 'name' THEN prev ->> 'name' END,
        'old_aliases', CASE WHEN prev ? 'aliases' THEN prev -> 'aliases' END,
        'old_available', CASE WHEN prev ? 'available' THEN (prev ->> 'available')::BOOLEAN END,
        'old_accepting_new_items', CASE WHEN prev ? 'accepting_new_items' THEN (prev ->> 'accepting_new_items')::BOOLEAN END);
    PERFORM pg_notify('metadata_changed', payload::TEXT);
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$ LANGUAGE plpgsql;

-- Platform catalog (20260916000001/2): a pack-owned component records the pack's active release;
-- platform-owned, ad-hoc and pack-less rows record none.
CREATE OR REPLACE FUNCTION set_component_managed_release() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE owner_id BIGINT;
BEGIN
    owner_id := (to_jsonb(NEW) ->> TG_ARGV[0])::BIGINT;
    IF NEW.catalog_revision IS NOT NULL OR owner_id IS NULL OR
       COALESCE((to_jsonb(NEW) ->> 'is_adhoc')::BOOLEAN, FALSE) THEN
        NEW.managed_release := NULL;
    ELSIF TG_OP = 'INSERT' OR (to_jsonb(NEW) -> TG_ARGV[0]) IS DISTINCT FROM (to_jsonb(OLD) -> TG_ARGV[0]) THEN
        SELECT active_release INTO NEW.managed_release FROM pack WHERE id = owner_id FOR SHARE;
    END IF;
    RETURN NEW;
END $$;

-- Platform-owned rows change only inside catalog reconciliation (attune.catalog_write = on).
CREATE OR REPLACE FUNCTION guard_platform_component() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.catalog_revision IS NOT NULL THEN
            RAISE EXCEPTION 'platform-owned % cannot be deleted', TG_TABLE_NAME;
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.catalog_revision IS NOT NULL OR (TG_OP = 'UPDATE' AND OLD.catalog_revision IS NOT NULL) THEN
        IF current_setting('attune.catalog_write', true) IS DISTINCT FROM 'on' THEN
            RAISE EXCEPTION 'platform-owned % may only be changed by catalog reconciliation', TG_TABLE_NAME;
        END IF;
        IF TG_OP = 'UPDATE' AND OLD.catalog_revision IS NOT NULL AND
           (NEW.catalog_revision IS NULL OR NEW.catalog_revision < OLD.catalog_revision OR
            (to_jsonb(NEW) -> 'ref') IS DISTINCT FROM (to_jsonb(OLD) -> 'ref')) THEN
            RAISE EXCEPTION 'platform ownership and revision cannot be downgraded';
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- ============================================================================
-- IDENTITY (20250101000003)
-- ============================================================================
CREATE TABLE IF NOT EXISTS identity (
    id BIGSERIAL PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    display_name TEXT,
    password_hash TEXT,
    attributes JSONB NOT NULL DEFAULT '{}'::jsonb,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    frozen BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS idx_identity_login ON identity(login);
CREATE INDEX IF NOT EXISTS idx_identity_created ON identity(created DESC);
CREATE INDEX IF NOT EXISTS idx_identity_password_hash ON identity(password_hash) WHERE password_hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_identity_attributes_gin ON identity USING GIN (attributes);
CREATE INDEX IF NOT EXISTS idx_identity_frozen ON identity(frozen);
CREATE UNIQUE INDEX IF NOT EXISTS uq_identity_oidc_issuer_sub
    ON identity ((attributes -> 'oidc' ->> 'issuer'), (attributes -> 'oidc' ->> 'sub'))
    WHERE attributes ? 'oidc';

-- ============================================================================
-- PACK (20250101000002, 000003 FK, 20260818000002, 20260821000001, 20260909000001)
-- ============================================================================
CREATE TABLE IF NOT EXISTS pack (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
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
    installers JSONB DEFAULT '[]'::jsonb,
    source_type TEXT,
    source_url TEXT,
    source_ref TEXT,
    checksum TEXT,
    checksum_verified BOOLEAN DEFAULT FALSE,
    installed_at TIMESTAMPTZ,
    installed_by BIGINT,
    installation_method TEXT,
    storage_path TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    install_status TEXT NOT NULL DEFAULT 'installed'
        CONSTRAINT valid_pack_install_status CHECK (install_status IN ('pending', 'installed', 'install_failed')),
    worker_selector JSONB NOT NULL DEFAULT '{}'::jsonb,
    worker_tolerations JSONB NOT NULL DEFAULT '[]'::jsonb,
    worker_affinity JSONB NOT NULL DEFAULT '{}'::jsonb,
    active_release BIGINT,
    CONSTRAINT pack_ref_lowercase CHECK (ref = LOWER(ref)),
    CONSTRAINT pack_ref_format CHECK (ref ~ '^[a-z][a-z0-9_-]+$'),
    CONSTRAINT pack_version_semver CHECK (
        version ~ '^\d+\.\d+\.\d+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$'),
    CONSTRAINT fk_pack_installed_by FOREIGN KEY (installed_by) REFERENCES identity(id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS idx_pack_ref ON pack(ref);
CREATE INDEX IF NOT EXISTS idx_pack_created ON pack(created DESC);
CREATE INDEX IF NOT EXISTS idx_pack_is_standard ON pack(is_standard) WHERE is_standard = TRUE;
CREATE INDEX IF NOT EXISTS idx_pack_is_standard_created ON pack(is_standard, created DESC);
CREATE INDEX IF NOT EXISTS idx_pack_version_created ON pack(version, created DESC);
CREATE INDEX IF NOT EXISTS idx_pack_config_gin ON pack USING GIN (config);
CREATE INDEX IF NOT EXISTS idx_pack_meta_gin ON pack USING GIN (meta);
CREATE INDEX IF NOT EXISTS idx_pack_tags_gin ON pack USING GIN (tags);
CREATE INDEX IF NOT EXISTS idx_pack_runtime_deps_gin ON pack USING GIN (runtime_deps);
CREATE INDEX IF NOT EXISTS idx_pack_dependencies_gin ON pack USING GIN (dependencies);
CREATE INDEX IF NOT EXISTS idx_pack_installed_at ON pack(installed_at DESC) WHERE installed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_pack_installed_by ON pack(installed_by) WHERE installed_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_pack_source_type ON pack(source_type) WHERE source_type IS NOT NULL;

-- ============================================================================
-- OBJECT MAINTENANCE LEDGER (20260909000007; target of the BEFORE DELETE triggers below)
-- ============================================================================
CREATE TABLE IF NOT EXISTS object_maintenance_ledger (
    id BIGSERIAL PRIMARY KEY,
    object_key TEXT NOT NULL UNIQUE,
    provider_version TEXT,
    object_kind TEXT NOT NULL CHECK (object_kind IN ('pack', 'artifact', 'log')),
    size_bytes BIGINT CHECK (size_bytes IS NULL OR size_bytes >= 0),
    state TEXT NOT NULL DEFAULT 'uploading' CHECK (state IN ('uploading', 'ready', 'deletion_pending', 'deleting')),
    eligible_at TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CHECK ((state = 'uploading' AND provider_version IS NULL) OR (state <> 'uploading' AND provider_version IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS idx_object_maintenance_collect ON object_maintenance_ledger(state, eligible_at, updated, id);

-- ============================================================================
-- PACK_RELEASE (20260909000001, 000005, 000006, 000007)
-- ============================================================================
CREATE TABLE IF NOT EXISTS pack_release (
    id BIGSERIAL PRIMARY KEY,
    pack BIGINT NOT NULL REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    archive_path TEXT,
    content_path TEXT NOT NULL,
    archive_size BIGINT NOT NULL CHECK (archive_size >= 0),
    manifest JSONB NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    object_key TEXT,
    provider_version TEXT,
    legacy_snapshot_expires_at TIMESTAMPTZ,
    inactive_since TIMESTAMPTZ,
    CONSTRAINT pack_release_pack_version_unique UNIQUE (pack, version),
    CONSTRAINT pack_release_pack_id_unique UNIQUE (pack, id),
    CONSTRAINT pack_release_digest_sha256 CHECK (digest ~ '^[0-9a-f]{64}$'),
    CONSTRAINT pack_release_manifest_object CHECK (jsonb_typeof(manifest) = 'object'),
    CONSTRAINT pack_release_object_pointer_complete CHECK (
        (object_key IS NULL AND provider_version IS NULL) OR (object_key IS NOT NULL AND provider_version IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS idx_pack_release_pack_created ON pack_release(pack, created DESC);
CREATE INDEX IF NOT EXISTS idx_pack_release_digest ON pack_release(digest);
CREATE INDEX IF NOT EXISTS idx_pack_release_inactive_retention
    ON pack_release(pack, inactive_since DESC, id DESC) WHERE inactive_since IS NOT NULL;

DO $$ BEGIN
    ALTER TABLE pack ADD CONSTRAINT pack_active_release_same_pack
        FOREIGN KEY (id, active_release) REFERENCES pack_release(pack, id) DEFERRABLE INITIALLY DEFERRED;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- ============================================================================
-- RUNTIME (20250101000002, 20250101000007 installer data, 20260916000001, 20260916000003)
-- ============================================================================
CREATE TABLE IF NOT EXISTS runtime (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    pack BIGINT REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT,
    description TEXT,
    name TEXT NOT NULL,
    aliases TEXT[] NOT NULL DEFAULT '{}'::text[],
    distributions JSONB NOT NULL,
    installation JSONB,
    installers JSONB DEFAULT '[]'::jsonb,
    execution_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    auto_detected BOOLEAN NOT NULL DEFAULT FALSE,
    detection_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- platform catalog: a platform-owned row has catalog_revision and no pack
    catalog_revision INTEGER CHECK (catalog_revision > 0),
    managed_release BIGINT,
    management_origin management_origin GENERATED ALWAYS AS (
        CASE WHEN catalog_revision IS NOT NULL THEN 'platform'::management_origin
             WHEN pack IS NULL THEN 'ad_hoc'::management_origin
             ELSE 'pack'::management_origin END) STORED,
    retired_at TIMESTAMPTZ,
    CONSTRAINT runtime_ref_lowercase CHECK (ref = LOWER(ref)),
    CONSTRAINT runtime_platform_owner CHECK (catalog_revision IS NULL OR (pack IS NULL AND NOT (FALSE))),
    CONSTRAINT runtime_managed_release_owner FOREIGN KEY (pack, managed_release)
        REFERENCES pack_release(pack, id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT runtime_managed_release_origin CHECK (management_origin = 'pack' OR managed_release IS NULL)
);
CREATE INDEX IF NOT EXISTS idx_runtime_ref ON runtime(ref);
CREATE INDEX IF NOT EXISTS idx_runtime_pack ON runtime(pack);
CREATE INDEX IF NOT EXISTS idx_runtime_created ON runtime(created DESC);
CREATE INDEX IF NOT EXISTS idx_runtime_name ON runtime(name);
CREATE INDEX IF NOT EXISTS idx_runtime_verification ON runtime USING GIN ((distributions -> 'verification'));
CREATE INDEX IF NOT EXISTS idx_runtime_execution_config ON runtime USING GIN (execution_config);
CREATE INDEX IF NOT EXISTS idx_runtime_auto_detected ON runtime(auto_detected);
CREATE INDEX IF NOT EXISTS idx_runtime_detection_config ON runtime USING GIN (detection_config);
CREATE INDEX IF NOT EXISTS idx_runtime_aliases ON runtime USING GIN (aliases);
CREATE INDEX IF NOT EXISTS idx_runtime_active ON runtime (retired_at) WHERE retired_at IS NULL;

-- ============================================================================
-- RUNTIME_VERSION (20250101000002, 20260903000001 data, 20260916000001/3, 20260919000002)
-- ============================================================================
CREATE TABLE IF NOT EXISTS runtime_version (
    id BIGSERIAL PRIMARY KEY,
    runtime BIGINT NOT NULL REFERENCES runtime(id) ON DELETE CASCADE,
    runtime_ref TEXT NOT NULL,
    version TEXT NOT NULL,
    version_major INT,
    version_minor INT,
    version_patch INT,
    execution_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    distributions JSONB NOT NULL DEFAULT '{}'::jsonb,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    available BOOLEAN NOT NULL DEFAULT TRUE,
    verified_at TIMESTAMPTZ,
    meta JSONB NOT NULL DEFAULT '{}'::jsonb,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    retired_at TIMESTAMPTZ,
    managed_release BIGINT REFERENCES pack_release(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT runtime_version_unique UNIQUE (runtime, version)
);
CREATE INDEX IF NOT EXISTS idx_runtime_version_runtime ON runtime_version(runtime);
CREATE INDEX IF NOT EXISTS idx_runtime_version_runtime_ref ON runtime_version(runtime_ref);
CREATE INDEX IF NOT EXISTS idx_runtime_version_version ON runtime_version(version);
CREATE INDEX IF NOT EXISTS idx_runtime_version_available ON runtime_version(available) WHERE available = TRUE;
CREATE INDEX IF NOT EXISTS idx_runtime_version_is_default ON runtime_version(is_default) WHERE is_default = TRUE;
CREATE INDEX IF NOT EXISTS idx_runtime_version_components ON runtime_version(runtime, version_major, version_minor, version_patch);
CREATE INDEX IF NOT EXISTS idx_runtime_version_created ON runtime_version(created DESC);
CREATE INDEX IF NOT EXISTS idx_runtime_version_execution_config ON runtime_version USING GIN (execution_config);
CREATE INDEX IF NOT EXISTS idx_runtime_version_meta ON runtime_version USING GIN (meta);
CREATE INDEX IF NOT EXISTS idx_runtime_version_active ON runtime_version (runtime, version) WHERE retired_at IS NULL;

-- A platform runtime's versions change only in catalog reconciliation, except host verification
-- (available, verified_at).
CREATE OR REPLACE FUNCTION guard_platform_runtime_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE parent_id BIGINT;
BEGIN
    parent_id := CASE WHEN TG_OP = 'DELETE' THEN OLD.runtime ELSE NEW.runtime END;
    IF EXISTS (SELECT 1 FROM runtime WHERE id = parent_id AND catalog_revision IS NOT NULL)
       OR (TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM runtime WHERE id = OLD.runtime AND catalog_revision IS NOT NULL)) THEN
        IF TG_OP = 'UPDATE' AND
           (to_jsonb(NEW) - ARRAY['available', 'verified_at', 'updated']) = (to_jsonb(OLD) - ARRAY['available', 'verified_at', 'updated']) THEN
            RETURN NEW;
        END IF;
        IF current_setting('attune.catalog_write', true) IS DISTINCT FROM 'on' THEN
            RAISE EXCEPTION 'platform runtime versions may only be changed by catalog reconciliation';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$;

-- A version cannot be live under a retired runtime.
CREATE OR REPLACE FUNCTION guard_runtime_version_lifecycle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.retired_at IS NULL AND EXISTS (SELECT 1 FROM runtime WHERE id = NEW.runtime AND retired_at IS NOT NULL) THEN
        RAISE EXCEPTION 'active runtime version requires an active parent runtime';
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION guard_runtime_version_managed_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.managed_release IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM runtime r JOIN pack_release pr ON pr.id = NEW.managed_release AND pr.pack = r.pack
         WHERE r.id = NEW.runtime AND r.management_origin = 'pack') THEN
        RAISE EXCEPTION 'runtime version managed release must belong to its runtime pack';
    END IF;
    RETURN NEW;
END $$;

-- ============================================================================
-- WORKFLOW_DEFINITION (20250101000006, 20260916000001/3): FK target of action and execution only
-- ============================================================================
CREATE TABLE IF NOT EXISTS workflow_definition (
    id BIGSERIAL PRIMARY KEY,
    ref VARCHAR(255) NOT NULL UNIQUE,
    pack BIGINT NOT NULL REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref VARCHAR(255) NOT NULL,
    label VARCHAR(255) NOT NULL,
    description TEXT,
    version VARCHAR(50) NOT NULL,
    param_schema JSONB,
    out_schema JSONB,
    definition JSONB NOT NULL,
    tags TEXT[] DEFAULT '{}',
    created TIMESTAMPTZ DEFAULT NOW() NOT NULL,
    updated TIMESTAMPTZ DEFAULT NOW() NOT NULL,
    catalog_revision INTEGER CHECK (catalog_revision > 0),
    managed_release BIGINT,
    management_origin management_origin GENERATED ALWAYS AS (
        CASE WHEN catalog_revision IS NOT NULL THEN 'platform'::management_origin
             WHEN pack IS NULL THEN 'ad_hoc'::management_origin
             ELSE 'pack'::management_origin END) STORED,
    retired_at TIMESTAMPTZ,
    CONSTRAINT workflow_definition_platform_owner CHECK (catalog_revision IS NULL OR (pack IS NULL AND NOT (FALSE))),
    CONSTRAINT workflow_definition_managed_release_owner FOREIGN KEY (pack, managed_release)
        REFERENCES pack_release(pack, id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT workflow_definition_managed_release_origin CHECK (management_origin = 'pack' OR managed_release IS NULL)
);

-- ============================================================================
-- ACTION (20250101000004, 000006, 000015, 20260916000001/3, 20260919000002)
-- ============================================================================
CREATE TABLE IF NOT EXISTS action (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    pack BIGINT NOT NULL REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT NOT NULL,
    label TEXT NOT NULL,
    description TEXT,
    entrypoint TEXT NOT NULL,
    runtime BIGINT REFERENCES runtime(id),
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    param_schema JSONB,
    out_schema JSONB,
    parameter_delivery TEXT NOT NULL DEFAULT 'stdin' CHECK (parameter_delivery IN ('stdin', 'file')),
    parameter_format TEXT NOT NULL DEFAULT 'json' CHECK (parameter_format IN ('dotenv', 'json', 'yaml')),
    output_format TEXT NOT NULL DEFAULT 'text' CHECK (output_format IN ('text', 'json', 'yaml', 'jsonl')),
    is_adhoc BOOLEAN NOT NULL DEFAULT FALSE,
    timeout_seconds INTEGER,
    max_retries INTEGER DEFAULT 0,
    runtime_version_constraint TEXT,
    accesses_mcp BOOLEAN NOT NULL DEFAULT FALSE,
    default_execution_permission_set_refs TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    reference_visibility action_reference_visibility_enum NOT NULL DEFAULT 'public',
    reference_allowed_pack_refs TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    log_retention_policy artifact_retention_enum,
    log_retention_limit INTEGER,
    artifact_retention_policy artifact_retention_enum,
    artifact_retention_limit INTEGER,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    workflow_def BIGINT REFERENCES workflow_definition(id) ON DELETE CASCADE,
    required_worker_runtimes JSONB NOT NULL DEFAULT '{}'::jsonb,
    worker_selector JSONB NOT NULL DEFAULT '{}'::jsonb,
    worker_tolerations JSONB NOT NULL DEFAULT '[]'::jsonb,
    worker_affinity JSONB NOT NULL DEFAULT '{}'::jsonb,
    catalog_revision INTEGER CHECK (catalog_revision > 0),
    managed_release BIGINT,
    management_origin management_origin GENERATED ALWAYS AS (
        CASE WHEN catalog_revision IS NOT NULL THEN 'platform'::management_origin
             WHEN is_adhoc OR pack IS NULL THEN 'ad_hoc'::management_origin
             ELSE 'pack'::management_origin END) STORED,
    retired_at TIMESTAMPTZ,
    enabled_override BOOLEAN,
    omission_disabled BOOLEAN NOT NULL DEFAULT FALSE,
    effective_enabled BOOLEAN GENERATED ALWAYS AS (NOT omission_disabled AND COALESCE(enabled_override, enabled)) STORED,
    CONSTRAINT action_ref_lowercase CHECK (ref = LOWER(ref)),
    CONSTRAINT action_ref_format CHECK (ref ~ '^[^.]+\.[^.]+$'),
    CONSTRAINT action_log_retention_limit_positive CHECK (log_retention_limit IS NULL OR log_retention_limit > 0),
    CONSTRAINT action_artifact_retention_limit_positive CHECK (artifact_retention_limit IS NULL OR artifact_retention_limit > 0),
    CONSTRAINT action_timeout_seconds_positive CHECK (timeout_seconds IS NULL OR timeout_seconds > 0),
    CONSTRAINT action_reference_allowed_pack_refs_non_null CHECK (array_position(reference_allowed_pack_refs, NULL) IS NULL),
    CONSTRAINT action_reference_allowed_pack_refs_restricted_only
        CHECK (reference_visibility = 'restricted' OR cardinality(reference_allowed_pack_refs) = 0),
    CONSTRAINT action_platform_owner CHECK (catalog_revision IS NULL OR (pack IS NULL AND NOT (is_adhoc OR FALSE))),
    CONSTRAINT action_managed_release_owner FOREIGN KEY (pack, managed_release)
        REFERENCES pack_release(pack, id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT action_managed_release_origin CHECK (management_origin = 'pack' OR managed_release IS NULL)
);
CREATE INDEX IF NOT EXISTS idx_action_ref ON action(ref);
CREATE INDEX IF NOT EXISTS idx_action_pack ON action(pack);
CREATE INDEX IF NOT EXISTS idx_action_runtime ON action(runtime);
CREATE INDEX IF NOT EXISTS idx_action_enabled ON action(enabled);
CREATE INDEX IF NOT EXISTS idx_action_parameter_delivery ON action(parameter_delivery);
CREATE INDEX IF NOT EXISTS idx_action_parameter_format ON action(parameter_format);
CREATE INDEX IF NOT EXISTS idx_action_output_format ON action(output_format);
CREATE INDEX IF NOT EXISTS idx_action_is_adhoc ON action(is_adhoc) WHERE is_adhoc = true;
CREATE INDEX IF NOT EXISTS idx_action_accesses_mcp ON action(accesses_mcp) WHERE accesses_mcp = true;
CREATE INDEX IF NOT EXISTS idx_action_default_execution_permission_set_refs ON action USING GIN (default_execution_permission_set_refs);
CREATE INDEX IF NOT EXISTS idx_action_reference_visibility ON action(reference_visibility);
CREATE INDEX IF NOT EXISTS idx_action_reference_allowed_pack_refs ON action USING GIN (reference_allowed_pack_refs);
CREATE INDEX IF NOT EXISTS idx_action_created ON action(created DESC);
CREATE INDEX IF NOT EXISTS idx_action_workflow_def ON action(workflow_def);
CREATE INDEX IF NOT EXISTS idx_action_active ON action (retired_at) WHERE retired_at IS NULL;

-- ============================================================================
-- RULE (20250101000005, 000015, 20260902000003, 20260916000001/3, 20260919000002):
-- FK target of enforcement only
-- ============================================================================
CREATE TABLE IF NOT EXISTS rule (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    pack BIGINT NOT NULL REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT NOT NULL,
    label TEXT NOT NULL,
    description TEXT,
    action BIGINT REFERENCES action(id) ON DELETE SET NULL,
    action_ref TEXT NOT NULL,
    trigger BIGINT, -- REFERENCES trigger(id) ON DELETE SET NULL in Attune; trigger is out of scope here
    trigger_ref TEXT NOT NULL,
    conditions JSONB NOT NULL DEFAULT '[]'::jsonb,
    action_params JSONB DEFAULT '{}'::jsonb,
    trigger_params JSONB DEFAULT '{}'::jsonb,
    permission_set_refs TEXT[],
    enabled BOOLEAN NOT NULL,
    is_adhoc BOOLEAN NOT NULL DEFAULT FALSE,
    owner_identity BIGINT REFERENCES identity(id) ON DELETE SET NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    trace_tag_template TEXT,
    sensor_worker_selector JSONB NOT NULL DEFAULT '{}'::jsonb,
    sensor_worker_tolerations JSONB NOT NULL DEFAULT '[]'::jsonb,
    sensor_worker_affinity JSONB NOT NULL DEFAULT '{}'::jsonb,
    catalog_revision INTEGER CHECK (catalog_revision > 0),
    managed_release BIGINT,
    management_origin management_origin GENERATED ALWAYS AS (
        CASE WHEN catalog_revision IS NOT NULL THEN 'platform'::management_origin
             WHEN is_adhoc OR pack IS NULL THEN 'ad_hoc'::management_origin
             ELSE 'pack'::management_origin END) STORED,
    retired_at TIMESTAMPTZ,
    enabled_override BOOLEAN,
    omission_disabled BOOLEAN NOT NULL DEFAULT FALSE,
    effective_enabled BOOLEAN GENERATED ALWAYS AS (NOT omission_disabled AND COALESCE(enabled_override, enabled)) STORED,
    CONSTRAINT rule_ref_lowercase CHECK (ref = LOWER(ref)),
    CONSTRAINT rule_ref_format CHECK (ref ~ '^[^.]+\.[^.]+$'),
    CONSTRAINT rule_sensor_worker_selector_object CHECK (jsonb_typeof(sensor_worker_selector) = 'object'),
    CONSTRAINT rule_sensor_worker_tolerations_array CHECK (jsonb_typeof(sensor_worker_tolerations) = 'array'),
    CONSTRAINT rule_sensor_worker_affinity_object CHECK (jsonb_typeof(sensor_worker_affinity) = 'object'),
    CONSTRAINT rule_platform_owner CHECK (catalog_revision IS NULL OR (pack IS NULL AND NOT (is_adhoc OR FALSE))),
    CONSTRAINT rule_managed_release_owner FOREIGN KEY (pack, managed_release)
        REFERENCES pack_release(pack, id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT rule_managed_release_origin CHECK (management_origin = 'pack' OR managed_release IS NULL)
);

-- ============================================================================
-- EVENT (20250101000004, 000016): read by the enforcement notification trigger only
-- ============================================================================
CREATE TABLE IF NOT EXISTS event (
    id BIGSERIAL PRIMARY KEY,
    trigger BIGINT,  -- REFERENCES trigger(id) ON DELETE SET NULL in Attune; out of scope here
    trigger_ref TEXT NOT NULL,
    config JSONB,
    payload JSONB,
    source BIGINT,   -- REFERENCES sensor(id) ON DELETE SET NULL in Attune; out of scope here
    source_ref TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    rule BIGINT REFERENCES rule(id) ON DELETE SET NULL,
    rule_ref TEXT,
    trace_tag TEXT
);

-- ============================================================================
-- ENFORCEMENT (20250101000004, 000005 FK, 20260909000002, 000007)
-- The agent reads rule_ref / trigger_ref for ATTUNE_RULE / ATTUNE_TRIGGER. No `updated` column.
-- ============================================================================
CREATE TABLE IF NOT EXISTS enforcement (
    id BIGSERIAL PRIMARY KEY,
    rule BIGINT,
    rule_ref TEXT NOT NULL,
    trigger_ref TEXT NOT NULL,
    config JSONB,
    event BIGINT, -- no FK in Attune (event is partitioned)
    status enforcement_status_enum NOT NULL DEFAULT 'created',
    payload JSONB NOT NULL,
    condition enforcement_condition_enum NOT NULL DEFAULT 'all',
    conditions JSONB NOT NULL DEFAULT '[]'::jsonb,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    resolved_at TIMESTAMPTZ,
    pack_release BIGINT REFERENCES pack_release(id) ON DELETE SET NULL,
    pack_release_digest TEXT,
    executable_snapshot JSONB,
    CONSTRAINT enforcement_condition_check CHECK (condition IN ('any', 'all')),
    CONSTRAINT enforcement_rule_fkey FOREIGN KEY (rule) REFERENCES rule(id) ON DELETE SET NULL,
    CONSTRAINT enforcement_release_pin_complete CHECK (
        (pack_release IS NULL AND pack_release_digest IS NULL AND executable_snapshot IS NULL)
        OR (pack_release_digest IS NOT NULL AND executable_snapshot IS NOT NULL)),
    CONSTRAINT enforcement_release_digest_sha256 CHECK (pack_release_digest IS NULL OR pack_release_digest ~ '^[0-9a-f]{64}$')
);
CREATE INDEX IF NOT EXISTS idx_enforcement_rule ON enforcement(rule);
CREATE INDEX IF NOT EXISTS idx_enforcement_rule_ref ON enforcement(rule_ref);
CREATE INDEX IF NOT EXISTS idx_enforcement_trigger_ref ON enforcement(trigger_ref);
CREATE INDEX IF NOT EXISTS idx_enforcement_event ON enforcement(event);
CREATE INDEX IF NOT EXISTS idx_enforcement_status ON enforcement(status);
CREATE INDEX IF NOT EXISTS idx_enforcement_created ON enforcement(created DESC);
CREATE INDEX IF NOT EXISTS idx_enforcement_status_created ON enforcement(status, created DESC);
CREATE INDEX IF NOT EXISTS idx_enforcement_rule_status ON enforcement(rule, status);
CREATE INDEX IF NOT EXISTS idx_enforcement_event_status ON enforcement(event, status);
CREATE INDEX IF NOT EXISTS idx_enforcement_payload_gin ON enforcement USING GIN (payload);
CREATE INDEX IF NOT EXISTS idx_enforcement_conditions_gin ON enforcement USING GIN (conditions);
CREATE UNIQUE INDEX IF NOT EXISTS uq_enforcement_rule_event ON enforcement (rule, event) WHERE rule IS NOT NULL AND event IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_enforcement_pack_release_pin ON enforcement(pack_release) WHERE pack_release IS NOT NULL;

-- ============================================================================
-- WORKER (20250101000005)
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
CREATE INDEX IF NOT EXISTS idx_worker_name ON worker(name);
CREATE INDEX IF NOT EXISTS idx_worker_type ON worker(worker_type);
CREATE INDEX IF NOT EXISTS idx_worker_role ON worker(worker_role);
CREATE INDEX IF NOT EXISTS idx_worker_runtime ON worker(runtime);
CREATE INDEX IF NOT EXISTS idx_worker_status ON worker(status);
CREATE INDEX IF NOT EXISTS idx_worker_last_heartbeat ON worker(last_heartbeat DESC) WHERE last_heartbeat IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_worker_created ON worker(created DESC);
CREATE INDEX IF NOT EXISTS idx_worker_status_role ON worker(status, worker_role);
CREATE INDEX IF NOT EXISTS idx_worker_capabilities_gin ON worker USING GIN (capabilities);
CREATE INDEX IF NOT EXISTS idx_worker_meta_gin ON worker USING GIN (meta);
CREATE INDEX IF NOT EXISTS idx_worker_capabilities_health_status ON worker USING GIN ((capabilities -> 'health' -> 'status'));
CREATE INDEX IF NOT EXISTS idx_worker_cordoned ON worker(cordoned) WHERE cordoned = TRUE;
CREATE INDEX IF NOT EXISTS idx_worker_role_cordoned_status ON worker(worker_role, cordoned, status);

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
-- EXECUTION (20250101000005, 000006 FK, 000015, 000019, 20260909000002, 000007)
-- ============================================================================
CREATE TABLE IF NOT EXISTS execution (
    id BIGSERIAL PRIMARY KEY,
    action BIGINT,
    action_ref TEXT NOT NULL,
    config JSONB,
    env_vars JSONB,
    parent BIGINT,
    enforcement BIGINT,
    executor BIGINT,
    permission_set_refs TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    artifact_retention_policy artifact_retention_enum,
    artifact_retention_limit INTEGER,
    worker_selector JSONB,
    worker_tolerations JSONB,
    worker_affinity JSONB,
    worker BIGINT,
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
    original_execution BIGINT,
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    trace_tag TEXT,
    pack_release BIGINT REFERENCES pack_release(id) ON DELETE SET NULL,
    pack_release_digest TEXT,
    executable_snapshot JSONB,
    CONSTRAINT execution_artifact_retention_limit_positive CHECK (artifact_retention_limit IS NULL OR artifact_retention_limit > 0),
    CONSTRAINT execution_timeout_seconds_positive CHECK (timeout_seconds IS NULL OR timeout_seconds > 0),
    CONSTRAINT execution_action_fkey FOREIGN KEY (action) REFERENCES action(id) ON DELETE SET NULL,
    CONSTRAINT execution_parent_fkey FOREIGN KEY (parent) REFERENCES execution(id) ON DELETE SET NULL,
    CONSTRAINT execution_original_execution_fkey FOREIGN KEY (original_execution) REFERENCES execution(id) ON DELETE SET NULL,
    CONSTRAINT execution_enforcement_fkey FOREIGN KEY (enforcement) REFERENCES enforcement(id) ON DELETE SET NULL,
    CONSTRAINT execution_executor_fkey FOREIGN KEY (executor) REFERENCES identity(id) ON DELETE SET NULL,
    CONSTRAINT execution_worker_fkey FOREIGN KEY (worker) REFERENCES worker(id) ON DELETE SET NULL,
    CONSTRAINT execution_workflow_def_fkey FOREIGN KEY (workflow_def) REFERENCES workflow_definition(id) ON DELETE SET NULL,
    CONSTRAINT execution_release_pin_complete CHECK (
        (pack_release IS NULL AND pack_release_digest IS NULL AND executable_snapshot IS NULL)
        OR (pack_release_digest IS NOT NULL AND executable_snapshot IS NOT NULL)),
    CONSTRAINT execution_release_digest_sha256 CHECK (pack_release_digest IS NULL OR pack_release_digest ~ '^[0-9a-f]{64}$')
);
CREATE INDEX IF NOT EXISTS idx_execution_action ON execution(action);
CREATE INDEX IF NOT EXISTS idx_execution_action_ref ON execution(action_ref);
CREATE INDEX IF NOT EXISTS idx_execution_parent ON execution(parent);
CREATE INDEX IF NOT EXISTS idx_execution_enforcement ON execution(enforcement);
CREATE INDEX IF NOT EXISTS idx_execution_executor ON execution(executor);
CREATE INDEX IF NOT EXISTS idx_execution_permission_set_refs ON execution USING GIN (permission_set_refs);
CREATE INDEX IF NOT EXISTS idx_execution_worker_selector_gin ON execution USING GIN (worker_selector) WHERE worker_selector IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_execution_worker_tolerations_gin ON execution USING GIN (worker_tolerations) WHERE worker_tolerations IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_execution_worker_affinity_gin ON execution USING GIN (worker_affinity) WHERE worker_affinity IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_execution_worker ON execution(worker);
CREATE INDEX IF NOT EXISTS idx_execution_status ON execution(status);
CREATE INDEX IF NOT EXISTS idx_execution_created ON execution(created DESC);
CREATE INDEX IF NOT EXISTS idx_execution_updated ON execution(updated DESC);
CREATE INDEX IF NOT EXISTS idx_execution_status_created ON execution(status, created DESC);
CREATE INDEX IF NOT EXISTS idx_execution_status_updated ON execution(status, updated DESC);
CREATE INDEX IF NOT EXISTS idx_execution_action_status ON execution(action, status);
CREATE INDEX IF NOT EXISTS idx_execution_executor_created ON execution(executor, created DESC);
CREATE INDEX IF NOT EXISTS idx_execution_worker_created ON execution(worker, created DESC);
CREATE INDEX IF NOT EXISTS idx_execution_parent_created ON execution(parent, created DESC);
CREATE INDEX IF NOT EXISTS idx_execution_result_gin ON execution USING GIN (result);
CREATE INDEX IF NOT EXISTS idx_execution_env_vars_gin ON execution USING GIN (env_vars);
CREATE INDEX IF NOT EXISTS idx_execution_original_execution ON execution(original_execution) WHERE original_execution IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_execution_status_retry ON execution(status, retry_count) WHERE status = 'failed' AND retry_count < COALESCE(max_retries, 0);
CREATE INDEX IF NOT EXISTS idx_execution_top_level_created ON execution (created DESC) WHERE parent IS NULL;
-- One top-level execution per enforcement (retries carry config.retry_of).
CREATE UNIQUE INDEX IF NOT EXISTS uq_execution_top_level_enforcement ON execution (enforcement)
    WHERE enforcement IS NOT NULL AND parent IS NULL AND (config IS NULL OR NOT (config ? 'retry_of'));
CREATE INDEX IF NOT EXISTS idx_execution_trace_tag ON execution(trace_tag) WHERE trace_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_execution_pack_ref_created_desc ON execution ((split_part(action_ref, '.', 1)), created DESC);
CREATE INDEX IF NOT EXISTS idx_execution_pack_release_pin ON execution(pack_release) WHERE pack_release IS NOT NULL;

-- ============================================================================
-- HISTORY AND AUDIT (20250101000009, 000013, 000015, 20260909000002, 20261006000001):
-- written by triggers on execution and worker. Plain tables here; Attune range-partitions
-- execution_history (time) and audit_event (created) natively with a DEFAULT partition.
-- ============================================================================
CREATE TABLE IF NOT EXISTS execution_history (
    time TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    operation TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    entity_ref TEXT,
    changed_fields TEXT[] NOT NULL DEFAULT '{}',
    old_values JSONB,
    new_values JSONB
);
CREATE INDEX IF NOT EXISTS idx_execution_history_time ON execution_history (time DESC);
CREATE INDEX IF NOT EXISTS idx_execution_history_entity ON execution_history (entity_id, time DESC);
CREATE INDEX IF NOT EXISTS idx_execution_history_entity_ref ON execution_history (entity_ref, time DESC);
CREATE INDEX IF NOT EXISTS idx_execution_history_status_changes ON execution_history (time DESC) WHERE 'status' = ANY(changed_fields);
CREATE INDEX IF NOT EXISTS idx_execution_history_changed_fields ON execution_history USING GIN (changed_fields);

CREATE TABLE IF NOT EXISTS worker_history (
    time TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    operation TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    entity_ref TEXT,
    changed_fields TEXT[] NOT NULL DEFAULT '{}',
    old_values JSONB,
    new_values JSONB
);
CREATE INDEX IF NOT EXISTS idx_worker_history_time ON worker_history (time DESC);
CREATE INDEX IF NOT EXISTS idx_worker_history_entity ON worker_history (entity_id, time DESC);
CREATE INDEX IF NOT EXISTS idx_worker_history_entity_ref ON worker_history (entity_ref, time DESC);
CREATE INDEX IF NOT EXISTS idx_worker_history_status_changes ON worker_history (time DESC) WHERE 'status' = ANY(changed_fields);
CREATE INDEX IF NOT EXISTS idx_worker_history_changed_fields ON worker_history USING GIN (changed_fields);

CREATE TABLE IF NOT EXISTS audit_event (
    id BIGSERIAL NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    category audit_category_enum NOT NULL,
    event_type TEXT NOT NULL,
    outcome audit_outcome_enum NOT NULL,
    actor_identity BIGINT,
    actor_login TEXT,
    actor_token_type TEXT,
    actor_ip INET,
    actor_user_agent TEXT,
    request_id UUID,
    resource_type TEXT,
    resource_id BIGINT,
    resource_ref TEXT,
    http_method TEXT,
    http_path TEXT,
    http_status INTEGER,
    duration_ms INTEGER,
    details JSONB,
    correlation_chain JSONB,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_audit_event_created ON audit_event (created DESC);
CREATE INDEX IF NOT EXISTS idx_audit_event_resource ON audit_event (resource_type, resource_id, created DESC) WHERE resource_type IS NOT NULL;

-- Field-level execution history; result, env_vars and the snapshot only as digests.
CREATE OR REPLACE FUNCTION record_execution_history()
RETURNS TRIGGER AS $$
DECLARE
    changed TEXT[] := '{}';
    old_vals JSONB := '{}';
    new_vals JSONB := '{}';
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO execution_history (time, operation, entity_id, entity_ref, changed_fields, old_values, new_values)
        VALUES (NOW(), 'INSERT', NEW.id, NEW.action_ref, '{}', NULL, jsonb_build_object(
            'status', NEW.status, 'action_ref', NEW.action_ref, 'executor', NEW.executor, 'worker', NEW.worker,
            'parent', NEW.parent, 'enforcement', NEW.enforcement, 'started_at', NEW.started_at,
            'trace_tag', NEW.trace_tag, 'pack_release', NEW.pack_release,
            'pack_release_digest', NEW.pack_release_digest,
            'executable_snapshot', _jsonb_digest_summary(NEW.executable_snapshot)));
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO execution_history (time, operation, entity_id, entity_ref, changed_fields, old_values, new_values)
        VALUES (NOW(), 'DELETE', OLD.id, OLD.action_ref, '{}', NULL, NULL);
        RETURN OLD;
    END IF;
    IF OLD.status IS DISTINCT FROM NEW.status THEN
        changed := array_append(changed, 'status');
        old_vals := old_vals || jsonb_build_object('status', OLD.status);
        new_vals := new_vals || jsonb_build_object('status', NEW.status);
    END IF;
    IF OLD.result IS DISTINCT FROM NEW.result THEN
        changed := array_append(changed, 'result');
        old_vals := old_vals || jsonb_build_object('result', _jsonb_digest_summary(OLD.result));
        new_vals := new_vals || jsonb_build_object('result', _jsonb_digest_summary(NEW.result));
    END IF;
    IF OLD.executor IS DISTINCT FROM NEW.executor THEN
        changed := array_append(changed, 'executor');
        old_vals := old_vals || jsonb_build_object('executor', OLD.executor);
        new_vals := new_vals || jsonb_build_object('executor', NEW.executor);
    END IF;
    IF OLD.worker IS DISTINCT FROM NEW.worker THEN
        changed := array_append(changed, 'worker');
        old_vals := old_vals || jsonb_build_object('worker', OLD.worker);
        new_vals := new_vals || jsonb_build_object('worker', NEW.worker);
    END IF;
    IF OLD.workflow_task IS DISTINCT FROM NEW.workflow_task THEN
        changed := array_append(changed, 'workflow_task');
        old_vals := old_vals || jsonb_build_object('workflow_task', OLD.workflow_task);
        new_vals := new_vals || jsonb_build_object('workflow_task', NEW.workflow_task);
    END IF;
    IF OLD.env_vars IS DISTINCT FROM NEW.env_vars THEN
        changed := array_append(changed, 'env_vars');
        old_vals := old_vals || jsonb_build_object('env_vars', _jsonb_digest_summary(OLD.env_vars));
        new_vals := new_vals || jsonb_build_object('env_vars', _jsonb_digest_summary(NEW.env_vars));
    END IF;
    IF OLD.started_at IS DISTINCT FROM NEW.started_at THEN
        changed := array_append(changed, 'started_at');
        old_vals := old_vals || jsonb_build_object('started_at', OLD.started_at);
        new_vals := new_vals || jsonb_build_object('started_at', NEW.started_at);
    END IF;
    IF OLD.trace_tag IS DISTINCT FROM NEW.trace_tag THEN
        changed := array_append(changed, 'trace_tag');
        old_vals := old_vals || jsonb_build_object('trace_tag', OLD.trace_tag);
        new_vals := new_vals || jsonb_build_object('trace_tag', NEW.trace_tag);
    END IF;
    IF OLD.pack_release IS DISTINCT FROM NEW.pack_release THEN
        changed := array_append(changed, 'pack_release');
        old_vals := old_vals || jsonb_build_object('pack_release', OLD.pack_release);
        new_vals := new_vals || jsonb_build_object('pack_release', NEW.pack_release);
    END IF;
    IF OLD.pack_release_digest IS DISTINCT FROM NEW.pack_release_digest THEN
        changed := array_append(changed, 'pack_release_digest');
        old_vals := old_vals || jsonb_build_object('pack_release_digest', OLD.pack_release_digest);
        new_vals := new_vals || jsonb_build_object('pack_release_digest', NEW.pack_release_digest);
    END IF;
    IF OLD.executable_snapshot IS DISTINCT FROM NEW.executable_snapshot THEN
        changed := array_append(changed, 'executable_snapshot');
        old_vals := old_vals || jsonb_build_object('executable_snapshot', _jsonb_digest_summary(OLD.executable_snapshot));
        new_vals := new_vals || jsonb_build_object('executable_snapshot', _jsonb_digest_summary(NEW.executable_snapshot));
    END IF;
    IF array_length(changed, 1) > 0 THEN
        INSERT INTO execution_history (time, operation, entity_id, entity_ref, changed_fields, old_values, new_values)
        VALUES (NOW(), 'UPDATE', NEW.id, NEW.action_ref, changed, old_vals, new_vals);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- Field-level worker history; heartbeat-only updates leave no row.
CREATE OR REPLACE FUNCTION record_worker_history()
RETURNS TRIGGER AS $$
DECLARE
    changed TEXT[] := '{}';
    old_vals JSONB := '{}';
    new_vals JSONB := '{}';
    f TEXT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO worker_history (time, operation, entity_id, entity_ref, changed_fields, old_values, new_values)
        VALUES (NOW(), 'INSERT', NEW.id, NEW.name, '{}', NULL, jsonb_build_object(
            'name', NEW.name, 'worker_type', NEW.worker_type, 'worker_role', NEW.worker_role, 'status', NEW.status,
            'capabilities', NEW.capabilities, 'meta', NEW.meta, 'host', NEW.host, 'port', NEW.port,
            'cordoned', NEW.cordoned, 'cordon_reason', NEW.cordon_reason, 'cordoned_by', NEW.cordoned_by,
            'cordoned_at', NEW.cordoned_at));
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO worker_history (time, operation, entity_id, entity_ref, changed_fields, old_values, new_values)
        VALUES (NOW(), 'DELETE', OLD.id, OLD.name, '{}', to_jsonb(OLD), NULL);
        RETURN OLD;
    END IF;
    -- the tracked fields, in Attune's order
    FOREACH f IN ARRAY ARRAY['name', 'status', 'capabilities', 'meta', 'host', 'port', 'cordoned', 'cordon_reason', 'cordoned_by', 'cordoned_at'] LOOP
        IF (to_jsonb(OLD) -> f) IS DISTINCT FROM (to_jsonb(NEW) -> f) THEN
            changed := array_append(changed, f);
            old_vals := old_vals || jsonb_build_object(f, to_jsonb(OLD) -> f);
            new_vals := new_vals || jsonb_build_object(f, to_jsonb(NEW) -> f);
        END IF;
    END LOOP;
    IF array_length(changed, 1) > 0 THEN
        INSERT INTO worker_history (time, operation, entity_id, entity_ref, changed_fields, old_values, new_values)
        VALUES (NOW(), 'UPDATE', NEW.id, NEW.name, changed, old_vals, new_vals);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- One audit_event per execution insert and status change.
CREATE OR REPLACE FUNCTION audit_execution_lifecycle()
RETURNS TRIGGER AS $$
DECLARE
    event_name TEXT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        event_name := CASE NEW.status::text
            WHEN 'requested' THEN 'execution.requested' WHEN 'scheduled' THEN 'execution.scheduled'
            WHEN 'running' THEN 'execution.started' WHEN 'completed' THEN 'execution.completed'
            WHEN 'failed' THEN 'execution.failed' WHEN 'timeout' THEN 'execution.timed_out'
            WHEN 'cancelled' THEN 'execution.cancelled' ELSE 'execution.status_changed' END;
    ELSIF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status THEN
        event_name := CASE NEW.status::text
            WHEN 'scheduled' THEN 'execution.scheduled' WHEN 'running' THEN 'execution.started'
            WHEN 'completed' THEN 'execution.completed' WHEN 'failed' THEN 'execution.failed'
            WHEN 'timeout' THEN 'execution.timed_out' WHEN 'cancelled' THEN 'execution.cancelled'
            WHEN 'canceling' THEN 'execution.canceling' WHEN 'abandoned' THEN 'execution.abandoned'
            ELSE 'execution.status_changed' END;
    ELSE
        RETURN NEW;
    END IF;
    INSERT INTO audit_event (category, event_type, outcome, actor_identity, resource_type, resource_id, resource_ref, details, correlation_chain)
    VALUES ('execution'::audit_category_enum, event_name,
        CASE WHEN NEW.status::text IN ('failed', 'timeout', 'abandoned') THEN 'failure'::audit_outcome_enum ELSE 'success'::audit_outcome_enum END,
        NEW.executor, 'execution', NEW.id, NEW.action_ref,
        jsonb_strip_nulls(jsonb_build_object(
            'operation', lower(TG_OP),
            'old_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status::text ELSE NULL END,
            'new_status', NEW.status::text, 'action_ref', NEW.action_ref, 'parent_execution_id', NEW.parent,
            'enforcement_id', NEW.enforcement, 'worker_id', NEW.worker, 'retry_count', NEW.retry_count,
            'max_retries', NEW.max_retries, 'original_execution', NEW.original_execution)),
        jsonb_strip_nulls(jsonb_build_object('execution_id', NEW.id, 'parent_execution_id', NEW.parent, 'enforcement_id', NEW.enforcement)));
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- ============================================================================
-- EXECUTION / ENFORCEMENT NOTIFICATIONS (final: 20260902000001, 20260902000002; 20250101000006)
-- ============================================================================
CREATE OR REPLACE FUNCTION notify_execution_created()
RETURNS TRIGGER AS $$
DECLARE
    payload JSON;
    compact JSON;
    enforcement_rule_ref TEXT;
    enforcement_trigger_ref TEXT;
BEGIN
    IF NEW.enforcement IS NOT NULL THEN
        SELECT rule_ref, trigger_ref INTO enforcement_rule_ref, enforcement_trigger_ref
        FROM enforcement WHERE id = NEW.enforcement;
    END IF;
    payload := json_build_object(
        'entity_type', 'execution', 'entity_id', NEW.id, 'id', NEW.id,
        'action_id', NEW.action, 'action_ref', NEW.action_ref, 'status', NEW.status, 'trace_tag', NEW.trace_tag,
        'enforcement', NEW.enforcement, 'rule_ref', enforcement_rule_ref, 'trigger_ref', enforcement_trigger_ref,
        'parent', NEW.parent, 'started_at', NEW.started_at, 'workflow_task', NEW.workflow_task,
        'created', NEW.created, 'updated', NEW.updated, 'auth_mode', 'full');
    compact := json_build_object(
        'entity_type', 'execution', 'entity_id', NEW.id, 'id', NEW.id, 'status', NEW.status,
        'trace_tag', NEW.trace_tag, 'auth_mode', 'deferred');
    PERFORM _notify_payload_guard('execution_created', payload::text, compact::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION notify_execution_status_changed()
RETURNS TRIGGER AS $$
DECLARE
    payload JSON;
    compact JSON;
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
            'action_id', NEW.action, 'action_ref', NEW.action_ref, 'status', NEW.status, 'old_status', OLD.status,
            'trace_tag', NEW.trace_tag, 'enforcement', NEW.enforcement, 'rule_ref', enforcement_rule_ref,
            'trigger_ref', enforcement_trigger_ref, 'parent', NEW.parent, 'started_at', NEW.started_at,
            'workflow_task', NEW.workflow_task, 'created', NEW.created, 'updated', NEW.updated, 'auth_mode', 'full');
        compact := json_build_object(
            'entity_type', 'execution', 'entity_id', NEW.id, 'id', NEW.id, 'status', NEW.status,
            'old_status', OLD.status, 'trace_tag', NEW.trace_tag, 'auth_mode', 'deferred');
        PERFORM _notify_payload_guard('execution_status_changed', payload::text, compact::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION notify_workflow_execution_status_changed()
RETURNS TRIGGER AS $$
DECLARE
    payload JSON;
BEGIN
    payload := json_build_object(
        'entity_type', 'execution', 'entity_id', NEW.id, 'id', NEW.id, 'action_ref', NEW.action_ref,
        'status', NEW.status, 'old_status', OLD.status, 'workflow_def', NEW.workflow_def, 'parent', NEW.parent,
        'created', NEW.created, 'updated', NEW.updated);
    PERFORM pg_notify('workflow_execution_status_changed', payload::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- The enforcement's trace tag: its first tagged execution's, else its event's.
CREATE OR REPLACE FUNCTION notify_enforcement_created()
RETURNS TRIGGER AS $$
DECLARE
    payload JSON;
    compact JSON;
    enforcement_trace_tag TEXT;
BEGIN
    SELECT trace_tag INTO enforcement_trace_tag FROM execution
     WHERE enforcement = NEW.id AND trace_tag IS NOT NULL ORDER BY created ASC, id ASC LIMIT 1;
    IF enforcement_trace_tag IS NULL AND NEW.event IS NOT NULL THEN
        SELECT trace_tag INTO enforcement_trace_tag FROM event WHERE id = NEW.event;
    END IF;
    payload := json_build_object(
        'entity_type', 'enforcement', 'entity_id', NEW.id, 'id', NEW.id, 'rule', NEW.rule, 'rule_ref', NEW.rule_ref,
        'trigger_ref', NEW.trigger_ref, 'event', NEW.event, 'status', NEW.status, 'trace_tag', enforcement_trace_tag,
        'condition', NEW.condition, 'created', NEW.created, 'resolved_at', NEW.resolved_at, 'auth_mode', 'full');
    compact := json_build_object(
        'entity_type', 'enforcement', 'entity_id', NEW.id, 'id', NEW.id, 'rule', NEW.rule, 'rule_ref', NEW.rule_ref,
        'trigger_ref', NEW.trigger_ref, 'event', NEW.event, 'status', NEW.status, 'trace_tag', enforcement_trace_tag,
        'auth_mode', 'deferred');
    PERFORM _notify_payload_guard('enforcement_created', payload::text, compact::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION notify_enforcement_status_changed()
RETURNS TRIGGER AS $$
DECLARE
    payload JSON;
    compact JSON;
    enforcement_trace_tag TEXT;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS DISTINCT FROM NEW.status THEN
        SELECT trace_tag INTO enforcement_trace_tag FROM execution
         WHERE enforcement = NEW.id AND trace_tag IS NOT NULL ORDER BY created ASC, id ASC LIMIT 1;
        IF enforcement_trace_tag IS NULL AND NEW.event IS NOT NULL THEN
            SELECT trace_tag INTO enforcement_trace_tag FROM event WHERE id = NEW.event;
        END IF;
        payload := json_build_object(
            'entity_type', 'enforcement', 'entity_id', NEW.id, 'id', NEW.id, 'rule', NEW.rule, 'rule_ref', NEW.rule_ref,
            'trigger_ref', NEW.trigger_ref, 'event', NEW.event, 'status', NEW.status, 'old_status', OLD.status,
            'trace_tag', enforcement_trace_tag, 'condition', NEW.condition, 'created', NEW.created,
            'resolved_at', NEW.resolved_at, 'auth_mode', 'full');
        compact := json_build_object(
            'entity_type', 'enforcement', 'entity_id', NEW.id, 'id', NEW.id, 'rule', NEW.rule, 'rule_ref', NEW.rule_ref,
            'trigger_ref', NEW.trigger_ref, 'event', NEW.event, 'status', NEW.status, 'old_status', OLD.status,
            'trace_tag', enforcement_trace_tag, 'auth_mode', 'deferred');
        PERFORM _notify_payload_guard('enforcement_status_changed', payload::text, compact::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- ============================================================================
-- SECRET VALUES (20250101000005): encrypted values behind the redaction markers of
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
-- ARTIFACT (20250101000007, 000017, 000020, 000025): ref is NOT unique
-- ============================================================================
CREATE TABLE IF NOT EXISTS artifact (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL,
    scope owner_type_enum NOT NULL DEFAULT 'system',
    owner TEXT NOT NULL DEFAULT '',
    type artifact_type_enum NOT NULL,
    visibility artifact_visibility_enum NOT NULL DEFAULT 'private',
    name TEXT,
    description TEXT,
    content_type TEXT,
    size_bytes BIGINT,
    data JSONB,
    retention_policy artifact_retention_enum NOT NULL DEFAULT 'versions',
    retention_limit INTEGER NOT NULL DEFAULT 1,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    classification artifact_classification_enum NOT NULL DEFAULT 'general'
);
CREATE INDEX IF NOT EXISTS idx_artifact_ref ON artifact(ref);
CREATE INDEX IF NOT EXISTS idx_artifact_scope ON artifact(scope);
CREATE INDEX IF NOT EXISTS idx_artifact_owner ON artifact(owner);
CREATE INDEX IF NOT EXISTS idx_artifact_type ON artifact(type);
CREATE INDEX IF NOT EXISTS idx_artifact_created ON artifact(created DESC);
CREATE INDEX IF NOT EXISTS idx_artifact_scope_owner ON artifact(scope, owner);
CREATE INDEX IF NOT EXISTS idx_artifact_type_created ON artifact(type, created DESC);
CREATE INDEX IF NOT EXISTS idx_artifact_visibility ON artifact(visibility);
CREATE INDEX IF NOT EXISTS idx_artifact_visibility_scope ON artifact(visibility, scope, owner);
CREATE INDEX IF NOT EXISTS idx_artifact_name ON artifact(name);
CREATE INDEX IF NOT EXISTS idx_artifact_classification ON artifact(classification);
CREATE INDEX IF NOT EXISTS idx_artifact_classification_created ON artifact(classification, created DESC);
-- NOT VALID as in Attune: enforced for new and updated rows.
DO $$ BEGIN
    ALTER TABLE artifact ADD CONSTRAINT artifact_ref_path_safe CHECK (
        ref <> '' AND ref = btrim(ref) AND ref !~ '(^\.|\.{2}|[/:\\]|\.$)') NOT VALID;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- ============================================================================
-- ARTIFACT_VERSION (20250101000007, 000025, 20260909000003, 000006, 20260912000001, 000003)
-- `execution` is a plain BIGINT (no FK) in Attune.
-- ============================================================================
CREATE TABLE IF NOT EXISTS artifact_version (
    id BIGSERIAL PRIMARY KEY,
    artifact BIGINT NOT NULL REFERENCES artifact(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    execution BIGINT,
    content_type TEXT,
    size_bytes BIGINT,
    content BYTEA,
    content_json JSONB,
    file_path TEXT,
    meta JSONB,
    created_by TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    body_state artifact_body_state_enum,
    object_key TEXT,
    provider_version TEXT,
    sha256 TEXT,
    body_updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    legacy_snapshot_expires_at TIMESTAMPTZ,
    CONSTRAINT uq_artifact_version_artifact_version UNIQUE (artifact, version),
    -- no body metadata (legacy row); pending/claimed bodies have no size or digest yet; ready and
    -- deleting bodies have both, plus either an object pointer or a shared file path
    CONSTRAINT ck_artifact_version_object_metadata CHECK (
        (body_state IS NULL AND object_key IS NULL AND provider_version IS NULL AND sha256 IS NULL)
        OR (body_state IN ('pending', 'cleanup_claimed') AND provider_version IS NULL AND sha256 IS NULL AND size_bytes IS NULL)
        OR (body_state IN ('ready', 'deleting') AND size_bytes IS NOT NULL AND size_bytes >= 0
            AND sha256 ~ '^[0-9a-f]{64}$'
            AND ((object_key IS NOT NULL AND provider_version IS NOT NULL)
                 OR (object_key IS NULL AND provider_version IS NULL AND file_path IS NOT NULL))))
);
CREATE INDEX IF NOT EXISTS idx_artifact_version_artifact ON artifact_version(artifact);
CREATE INDEX IF NOT EXISTS idx_artifact_version_artifact_version ON artifact_version(artifact, version DESC);
CREATE INDEX IF NOT EXISTS idx_artifact_version_created ON artifact_version(created DESC);
CREATE INDEX IF NOT EXISTS idx_artifact_version_file_path ON artifact_version(file_path) WHERE file_path IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_artifact_version_execution ON artifact_version(execution) WHERE execution IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_artifact_version_artifact_execution ON artifact_version(artifact, execution) WHERE execution IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS uq_artifact_version_object_key ON artifact_version(object_key) WHERE object_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_artifact_version_body_maintenance ON artifact_version(body_state, body_updated, id) WHERE body_state IS NOT NULL;
DO $$ BEGIN
    ALTER TABLE artifact_version ADD CONSTRAINT artifact_version_file_path_safe CHECK (
        file_path IS NULL OR (file_path <> '' AND file_path !~ '(^/|\\|(^|/)\.\.?(/|$)|//|/$|:)')) NOT VALID;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- ============================================================================
-- LOG_STREAM (20260909000004, 20260912000001)
-- ============================================================================
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
-- ARTIFACT TRIGGER FUNCTIONS (final: 20260915000001, 20260912000003, 20260909000007, 20250101000020)
-- ============================================================================
-- Version-count retention and the parent's size/content type, once a body is ready (or for legacy
-- rows without body state). Shared-file log versions are never pruned here.
CREATE OR REPLACE FUNCTION enforce_artifact_retention()
RETURNS TRIGGER AS $$
DECLARE
    v_policy artifact_retention_enum;
    v_limit INTEGER;
BEGIN
    IF NEW.body_state = 'pending' OR NEW.body_state = 'deleting' THEN
        RETURN NEW;
    END IF;
    SELECT retention_policy, retention_limit INTO v_policy, v_limit FROM artifact WHERE id = NEW.artifact;
    IF v_policy = 'versions' AND v_limit > 0 THEN
        DELETE FROM artifact_version
        WHERE id IN (
            SELECT stale.id FROM artifact_version stale
             WHERE stale.artifact = NEW.artifact
               AND (stale.body_state IS NULL OR stale.body_state = 'ready')
               AND NOT EXISTS (SELECT 1 FROM log_stream stream WHERE stream.artifact_version = stale.id AND stream.backend = 'shared_file')
               AND stale.id NOT IN (
                   SELECT kept.id FROM artifact_version kept
                    WHERE kept.artifact = NEW.artifact AND (kept.body_state IS NULL OR kept.body_state = 'ready')
                    ORDER BY kept.version DESC LIMIT v_limit)
             ORDER BY stale.version ASC LIMIT 100);
    END IF;
    UPDATE artifact
       SET size_bytes = NEW.size_bytes, content_type = COALESCE(NEW.content_type, content_type)
     WHERE id = NEW.artifact
       AND NEW.version = (SELECT MAX(latest.version) FROM artifact_version latest
                           WHERE latest.artifact = NEW.artifact AND (latest.body_state IS NULL OR latest.body_state = 'ready'));
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- Object keys and ready-body metadata are immutable; ready → deleting only; claimed bodies stay put.
CREATE OR REPLACE FUNCTION enforce_artifact_body_immutability()
RETURNS TRIGGER AS $$
BEGIN
    IF OLD.object_key IS NOT NULL AND NEW.object_key IS DISTINCT FROM OLD.object_key THEN
        RAISE EXCEPTION 'artifact object key is immutable';
    END IF;
    IF OLD.body_state IN ('ready', 'deleting') AND (
        NEW.provider_version IS DISTINCT FROM OLD.provider_version
        OR NEW.sha256 IS DISTINCT FROM OLD.sha256
        OR NEW.size_bytes IS DISTINCT FROM OLD.size_bytes) THEN
        RAISE EXCEPTION 'ready artifact body metadata is immutable';
    END IF;
    IF OLD.body_state = 'ready' AND NEW.body_state NOT IN ('ready', 'deleting') THEN
        RAISE EXCEPTION 'ready artifact body can only transition to deleting';
    END IF;
    IF OLD.body_state IN ('deleting', 'cleanup_claimed') AND NEW.body_state <> OLD.body_state THEN
        RAISE EXCEPTION 'claimed artifact body cannot transition';
    END IF;
    IF NEW.body_state IS DISTINCT FROM OLD.body_state THEN
        NEW.body_updated = NOW();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- Deleting a row that points at a stored object queues the object's deletion (log streams excepted).
CREATE OR REPLACE FUNCTION enqueue_deleted_object()
RETURNS TRIGGER AS $$
DECLARE
    v_size BIGINT;
BEGIN
    IF TG_TABLE_NAME = 'artifact_version' AND EXISTS (SELECT 1 FROM log_stream WHERE artifact_version = OLD.id) THEN
        RETURN OLD;
    END IF;
    IF OLD.object_key IS NOT NULL AND OLD.provider_version IS NOT NULL THEN
        IF TG_TABLE_NAME = 'pack_release' THEN
            v_size := OLD.archive_size;
        ELSE
            v_size := OLD.size_bytes;
        END IF;
        INSERT INTO object_maintenance_ledger (object_key, provider_version, object_kind, size_bytes, state, eligible_at, updated)
        VALUES (OLD.object_key, OLD.provider_version, TG_ARGV[0], v_size, 'deletion_pending', NOW(), NOW())
        ON CONFLICT (object_key) DO UPDATE
            SET state = 'deletion_pending', eligible_at = NOW(), updated = NOW(), last_error = NULL
            WHERE object_maintenance_ledger.provider_version = EXCLUDED.provider_version;
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION notify_artifact_created()
RETURNS TRIGGER AS $$
DECLARE
    payload JSON;
    compact JSON;
BEGIN
    payload := json_build_object(
        'entity_type', 'artifact', 'entity_id', NEW.id, 'id', NEW.id, 'ref', NEW.ref, 'type', NEW.type,
        'visibility', NEW.visibility, 'classification', NEW.classification, 'name', NEW.name, 'scope', NEW.scope,
        'owner', NEW.owner, 'content_type', NEW.content_type, 'size_bytes', NEW.size_bytes, 'created', NEW.created,
        'auth_mode', 'full');
    compact := json_build_object(
        'entity_type', 'artifact', 'entity_id', NEW.id, 'id', NEW.id, 'ref', NEW.ref, 'type', NEW.type,
        'visibility', NEW.visibility, 'scope', NEW.scope, 'owner', NEW.owner, 'auth_mode', 'deferred');
    PERFORM _notify_payload_guard('artifact_created', payload::text, compact::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION notify_artifact_updated()
RETURNS TRIGGER AS $$
DECLARE
    payload JSON;
    compact JSON;
    latest_percent DOUBLE PRECISION;
    latest_message TEXT;
    entry_count INTEGER;
    latest_execution BIGINT;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT av.execution INTO latest_execution FROM artifact_version av
         WHERE av.artifact = NEW.id ORDER BY av.version DESC LIMIT 1;
        IF NEW.type = 'progress' AND NEW.data IS NOT NULL AND jsonb_typeof(NEW.data) = 'array' THEN
            entry_count := jsonb_array_length(NEW.data);
            IF entry_count > 0 THEN
                latest_percent := (NEW.data -> (entry_count - 1) ->> 'percent')::DOUBLE PRECISION;
                latest_message := NEW.data -> (entry_count - 1) ->> 'message';
            END IF;
        END IF;
        payload := json_build_object(
            'entity_type', 'artifact', 'entity_id', NEW.id, 'id', NEW.id, 'ref', NEW.ref, 'type', NEW.type,
            'visibility', NEW.visibility, 'classification', NEW.classification, 'name', NEW.name, 'scope', NEW.scope,
            'owner', NEW.owner, 'content_type', NEW.content_type, 'size_bytes', NEW.size_bytes,
            'execution', latest_execution, 'progress_percent', latest_percent, 'progress_message', latest_message,
            'progress_entries', entry_count, 'created', NEW.created, 'updated', NEW.updated, 'auth_mode', 'full');
        compact := json_build_object(
            'entity_type', 'artifact', 'entity_id', NEW.id, 'id', NEW.id, 'ref', NEW.ref, 'type', NEW.type,
            'visibility', NEW.visibility, 'scope', NEW.scope, 'owner', NEW.owner, 'execution', latest_execution,
            'progress_percent', latest_percent, 'progress_entries', entry_count, 'auth_mode', 'deferred');
        PERFORM _notify_payload_guard('artifact_updated', payload::text, compact::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION notify_artifact_version_changed()
RETURNS TRIGGER AS $$
DECLARE
    artifact_row artifact%ROWTYPE;
    payload JSON;
    compact JSON;
    latest_percent DOUBLE PRECISION;
    latest_message TEXT;
    entry_count INTEGER;
BEGIN
    SELECT * INTO artifact_row FROM artifact WHERE id = NEW.artifact;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    IF artifact_row.type = 'progress' AND artifact_row.data IS NOT NULL AND jsonb_typeof(artifact_row.data) = 'array' THEN
        entry_count := jsonb_array_length(artifact_row.data);
        IF entry_count > 0 THEN
            latest_percent := (artifact_row.data -> (entry_count - 1) ->> 'percent')::DOUBLE PRECISION;
            latest_message := artifact_row.data -> (entry_count - 1) ->> 'message';
        END IF;
    END IF;
    payload := json_build_object(
        'entity_type', 'artifact', 'entity_id', artifact_row.id, 'id', artifact_row.id, 'ref', artifact_row.ref,
        'type', artifact_row.type, 'visibility', artifact_row.visibility, 'classification', artifact_row.classification,
        'name', artifact_row.name, 'scope', artifact_row.scope, 'owner', artifact_row.owner,
        'content_type', COALESCE(NEW.content_type, artifact_row.content_type),
        'size_bytes', COALESCE(NEW.size_bytes, artifact_row.size_bytes), 'execution', NEW.execution,
        'artifact_version_id', NEW.id, 'version', NEW.version, 'progress_percent', latest_percent,
        'progress_message', latest_message, 'progress_entries', entry_count, 'created', artifact_row.created,
        'updated', NOW(), 'auth_mode', 'full');
    compact := json_build_object(
        'entity_type', 'artifact', 'entity_id', artifact_row.id, 'id', artifact_row.id, 'ref', artifact_row.ref,
        'type', artifact_row.type, 'visibility', artifact_row.visibility, 'scope', artifact_row.scope,
        'owner', artifact_row.owner, 'execution', NEW.execution, 'artifact_version_id', NEW.id, 'version', NEW.version,
        'progress_percent', latest_percent, 'progress_entries', entry_count, 'auth_mode', 'deferred');
    PERFORM _notify_payload_guard('artifact_updated', payload::text, compact::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- A compact wake-up after log bytes commit or a stream seals.
CREATE OR REPLACE FUNCTION notify_log_stream_changed()
RETURNS TRIGGER AS $$
BEGIN
    PERFORM pg_notify('log_stream_changed', json_build_object(
        'stream_id', NEW.id, 'artifact_version_id', NEW.artifact_version,
        'total_bytes', NEW.total_bytes, 'sealed', NEW.sealed)::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- ============================================================================
-- PACK INSTALL / PACK TESTS (20260818000002, 20260822000002/4, 20260823000001, 20260919000002;
-- 20250101000007, 20260818000001)
-- ============================================================================
CREATE TABLE IF NOT EXISTS pack_install (
    id BIGSERIAL PRIMARY KEY,
    pack_ref TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CONSTRAINT valid_pack_install_status_enum
        CHECK (status IN ('pending', 'running', 'activating', 'succeeded', 'failed', 'rolled_back')),
    trigger_reason TEXT NOT NULL,
    pack_id BIGINT,
    test_execution_id BIGINT,
    test_result JSONB,
    error_message TEXT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    finished_at TIMESTAMPTZ,
    assigned_worker_id BIGINT,
    candidate_access_token_hash TEXT,
    requested_by BIGINT,
    absent_metadata_policy absent_metadata_policy NOT NULL DEFAULT 'remove'
);
CREATE INDEX IF NOT EXISTS idx_pack_install_pack_ref ON pack_install(pack_ref, id DESC);
CREATE INDEX IF NOT EXISTS idx_pack_install_status ON pack_install(status);
CREATE INDEX IF NOT EXISTS idx_pack_install_assigned_worker ON pack_install(assigned_worker_id) WHERE assigned_worker_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_pack_install_requested_by ON pack_install(requested_by) WHERE requested_by IS NOT NULL;

CREATE TABLE IF NOT EXISTS pack_test_execution (
    id BIGSERIAL PRIMARY KEY,
    pack_id BIGINT NOT NULL REFERENCES pack(id) ON DELETE CASCADE,
    pack_version VARCHAR(50) NOT NULL,
    execution_time TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    trigger_reason VARCHAR(50) NOT NULL,
    total_tests INT NOT NULL,
    passed INT NOT NULL,
    failed INT NOT NULL,
    skipped INT NOT NULL,
    pass_rate DOUBLE PRECISION NOT NULL,
    duration_ms BIGINT NOT NULL,
    result JSONB NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT valid_test_counts CHECK (total_tests >= 0 AND passed >= 0 AND failed >= 0 AND skipped >= 0),
    CONSTRAINT valid_pass_rate CHECK (pass_rate >= 0.0 AND pass_rate <= 1.0),
    CONSTRAINT valid_trigger_reason CHECK (trigger_reason IN ('install', 'update', 'manual', 'validation'))
);
CREATE INDEX IF NOT EXISTS idx_pack_test_execution_pack_id ON pack_test_execution(pack_id);
CREATE INDEX IF NOT EXISTS idx_pack_test_execution_time ON pack_test_execution(execution_time DESC);
CREATE INDEX IF NOT EXISTS idx_pack_test_execution_pass_rate ON pack_test_execution(pass_rate);
CREATE INDEX IF NOT EXISTS idx_pack_test_execution_trigger ON pack_test_execution(trigger_reason);

-- A placeholder in Attune too: returns the row unchanged.
CREATE OR REPLACE FUNCTION update_pack_test_metadata()
RETURNS TRIGGER AS $$
BEGIN
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- ============================================================================
-- TRIGGERS (re-created on every application)
-- ============================================================================
DO $$
DECLARE
    t TEXT;
    spec TEXT[];
BEGIN
    -- `updated` maintenance: every table here that has the column (enforcement has none)
    FOREACH t IN ARRAY ARRAY['identity', 'pack', 'runtime', 'runtime_version', 'action', 'worker', 'execution', 'artifact'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', 'update_' || t || '_updated', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION update_updated_column()', 'update_' || t || '_updated', t);
    END LOOP;
    -- platform catalog ownership on the components the agent reads
    FOREACH t IN ARRAY ARRAY['runtime', 'action'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS set_component_managed_release ON %I', t);
        EXECUTE format('CREATE TRIGGER set_component_managed_release BEFORE INSERT OR UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION set_component_managed_release(%L)', t, 'pack');
        EXECUTE format('DROP TRIGGER IF EXISTS guard_platform_component ON %I', t);
        EXECUTE format('CREATE TRIGGER guard_platform_component BEFORE INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION guard_platform_component()', t);
    END LOOP;
    -- metadata-cache notifications
    FOREACH t IN ARRAY ARRAY['action', 'runtime', 'runtime_version'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_metadata_changed_notify', t);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION notify_metadata_changed()', t || '_metadata_changed_notify', t);
    END LOOP;
    -- the rest: {name, table, timing and events, function call}
    FOREACH spec SLICE 1 IN ARRAY ARRAY[
        ['guard_platform_runtime_version', 'runtime_version', 'BEFORE INSERT OR UPDATE OR DELETE', 'guard_platform_runtime_version()'],
        ['guard_runtime_version_lifecycle', 'runtime_version', 'BEFORE INSERT OR UPDATE OF runtime, retired_at', 'guard_runtime_version_lifecycle()'],
        ['guard_runtime_version_managed_release', 'runtime_version', 'BEFORE INSERT OR UPDATE OF runtime, managed_release', 'guard_runtime_version_managed_release()'],
        ['trg_pack_release_enqueue_object', 'pack_release', 'BEFORE DELETE', 'enqueue_deleted_object(''pack'')'],
        ['enforcement_created_notify', 'enforcement', 'AFTER INSERT', 'notify_enforcement_created()'],
        ['enforcement_status_changed_notify', 'enforcement', 'AFTER UPDATE', 'notify_enforcement_status_changed()'],
        ['worker_history_trigger', 'worker', 'AFTER INSERT OR UPDATE OR DELETE', 'record_worker_history()'],
        ['execution_created_notify', 'execution', 'AFTER INSERT', 'notify_execution_created()'],
        ['execution_status_changed_notify', 'execution', 'AFTER UPDATE', 'notify_execution_status_changed()'],
        ['execution_history_trigger', 'execution', 'AFTER INSERT OR UPDATE OR DELETE', 'record_execution_history()'],
        ['trg_audit_execution_lifecycle', 'execution', 'AFTER INSERT OR UPDATE OF status', 'audit_execution_lifecycle()'],
        ['artifact_created_notify', 'artifact', 'AFTER INSERT', 'notify_artifact_created()'],
        ['artifact_updated_notify', 'artifact', 'AFTER UPDATE', 'notify_artifact_updated()'],
        ['trg_enforce_artifact_retention', 'artifact_version', 'AFTER INSERT', 'enforce_artifact_retention()'],
        ['artifact_version_notify', 'artifact_version', 'AFTER INSERT OR UPDATE OF size_bytes, file_path, content, content_json', 'notify_artifact_version_changed()'],
        ['trg_artifact_body_immutability', 'artifact_version', 'BEFORE UPDATE', 'enforce_artifact_body_immutability()'],
        ['trg_artifact_version_enqueue_object', 'artifact_version', 'BEFORE DELETE', 'enqueue_deleted_object(''artifact'')'],
        ['trigger_update_pack_test_metadata', 'pack_test_execution', 'AFTER INSERT', 'update_pack_test_metadata()']
    ] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', spec[1], spec[2]);
        EXECUTE format('CREATE TRIGGER %I %s ON %I FOR EACH ROW EXECUTE FUNCTION %s', spec[1], spec[3], spec[2], spec[4]);
    END LOOP;
END $$;

-- Triggers with a WHEN condition
DROP TRIGGER IF EXISTS workflow_execution_status_changed_notify ON execution;
CREATE TRIGGER workflow_execution_status_changed_notify
    AFTER UPDATE ON execution FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.workflow_def IS NOT NULL)
    EXECUTE FUNCTION notify_workflow_execution_status_changed();

DROP TRIGGER IF EXISTS trg_enforce_artifact_retention_ready ON artifact_version;
CREATE TRIGGER trg_enforce_artifact_retention_ready
    AFTER UPDATE OF body_state ON artifact_version FOR EACH ROW
    WHEN (OLD.body_state = 'pending' AND NEW.body_state = 'ready')
    EXECUTE FUNCTION enforce_artifact_retention();

DROP TRIGGER IF EXISTS log_stream_changed_notify ON log_stream;
CREATE TRIGGER log_stream_changed_notify
    AFTER UPDATE OF total_bytes, sealed ON log_stream FOR EACH ROW
    WHEN (OLD.total_bytes IS DISTINCT FROM NEW.total_bytes OR OLD.sealed IS DISTINCT FROM NEW.sealed)
    EXECUTE FUNCTION notify_log_stream_changed();
