/**
 * Dynamic runtime registration (docs/attune-compat.md §2.4): every detected interpreter without a runtime row gets
 * an `auto.{name}` row, cloned from `core.{name}` when such a template exists, otherwise minimal.
 * Never fatal: each failure is logged and the agent carries on. Replicas racing to insert the same
 * row are harmless (ON CONFLICT (ref) DO NOTHING).
 */
import type { DetectedRuntime } from '../detect/detect.ts';
import { runtimeSpec } from '../runtimes.ts';
import type { Logger } from '../observe/logger.ts';
import type { Queryable } from './pool.ts';

interface RuntimeListRow {
  ref: string;
  aliases: string[] | null;
}

interface TemplateRow {
  pack: number | null;
  pack_ref: string | null;
  description: string | null;
  name: string;
  aliases: string[] | null;
  distributions: unknown;
  installation: unknown;
  installers: unknown;
  execution_config: Record<string, unknown> | null;
}

export type RuntimeRegistrationOutcome = 'present' | 'cloned' | 'created' | 'exists' | 'failed';

export interface RuntimeRegistrationResult {
  name: string;
  ref: string;
  outcome: RuntimeRegistrationOutcome;
  /** The ref that matched for `present`; the error text for `failed`. */
  detail?: string;
}

/** Contract: present if any listed row has an alias equal to the name, or a ref ending `.{name}`. */
export function findPresent(rows: readonly RuntimeListRow[], canonical: string): RuntimeListRow | undefined {
  return rows.find((r) => (r.aliases ?? []).includes(canonical) || r.ref.endsWith(`.${canonical}`));
}

export function capitalise(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

function detectionConfig(d: DetectedRuntime, canonical: string): Record<string, unknown> {
  const c: Record<string, unknown> = { detected_path: d.path, detected_name: canonical };
  if (d.version !== null) c.detected_version = d.version;
  return c;
}

/** The template's execution_config with the detected interpreter; templated interpreter paths kept. */
export function cloneExecutionConfig(template: Record<string, unknown> | null, path: string): Record<string, unknown> {
  const ec = structuredClone(template ?? {}) as Record<string, any>;
  ec.interpreter = { ...(ec.interpreter ?? {}), binary: path };
  const env = ec.environment;
  if (env && typeof env === 'object' && typeof env.interpreter_path === 'string' && !env.interpreter_path.includes('{')) {
    env.interpreter_path = path;
  }
  return ec;
}

export function minimalRuntimeRow(d: DetectedRuntime, canonical: string) {
  const spec = runtimeSpec(canonical);
  return {
    ref: `auto.${canonical}`,
    name: capitalise(canonical),
    description: `${capitalise(canonical)} interpreter detected by attune-agent`,
    aliases: spec ? [...spec.aliases] : [canonical],
    distributions: { verification: { commands: [{ binary: d.path, args: ['--version'], exit_code: 0, priority: 1 }] } },
    execution_config: { interpreter: { binary: d.path, args: [], file_extension: spec?.fileExtension ?? null } },
    detection_config: detectionConfig(d, canonical),
  };
}

const INSERT = `INSERT INTO runtime (ref, pack, pack_ref, description, name, aliases, distributions, installation,
                                     installers, execution_config, auto_detected, detection_config)
                VALUES ($1, $2, $3, $4, $5, $6::text[], $7::jsonb, $8::jsonb, COALESCE($9::jsonb, '{}'::jsonb),
                        $10::jsonb, true, $11::jsonb)
                ON CONFLICT (ref) DO NOTHING
                RETURNING id`;

export async function registerDetectedRuntimes(db: Queryable, detected: readonly DetectedRuntime[], log: Logger): Promise<RuntimeRegistrationResult[]> {
  if (detected.length === 0) return [];
  let rows: RuntimeListRow[];
  try {
    // RuntimeRepository::list: the live rows (a retired core.X template is still usable for cloning).
    rows = (await db.query<RuntimeListRow>('SELECT ref, aliases FROM runtime WHERE retired_at IS NULL ORDER BY ref')).rows;
  } catch (e) {
    log.warn({ err: errText(e) }, 'runtime auto-registration skipped: cannot list runtime rows');
    return detected.map((d) => ({ name: d.name, ref: `auto.${d.name.toLowerCase()}`, outcome: 'failed' as const, detail: errText(e) }));
  }
  const results: RuntimeRegistrationResult[] = [];
  for (const d of detected) {
    const canonical = d.name.toLowerCase();
    const ref = `auto.${canonical}`;
    const present = findPresent(rows, canonical);
    if (present) {
      results.push({ name: canonical, ref: present.ref, outcome: 'present', detail: present.ref });
      continue;
    }
    try {
      results.push(await registerOne(db, d, canonical, ref));
    } catch (e) {
      log.warn({ runtime: canonical, ref, err: errText(e) }, 'could not auto-register runtime row; actions of this runtime may not be schedulable here');
      results.push({ name: canonical, ref, outcome: 'failed', detail: errText(e) });
    }
  }
  for (const r of results) {
    if (r.outcome === 'cloned' || r.outcome === 'created') log.info({ runtime: r.name, ref: r.ref, from: r.outcome === 'cloned' ? `core.${r.name}` : undefined }, 'auto-registered runtime');
  }
  return results;
}

async function registerOne(db: Queryable, d: DetectedRuntime, canonical: string, ref: string): Promise<RuntimeRegistrationResult> {
  const template = (await db.query<TemplateRow>(
    `SELECT pack, pack_ref, description, name, aliases, distributions, installation, installers, execution_config
       FROM runtime WHERE ref = $1`,
    [`core.${canonical}`],
  )).rows[0];
  let params: unknown[];
  if (template) {
    params = [
      ref, template.pack, template.pack_ref, template.description, template.name, template.aliases ?? [],
      JSON.stringify(template.distributions ?? {}), template.installation === null ? null : JSON.stringify(template.installation),
      template.installers === null ? null : JSON.stringify(template.installers),
      JSON.stringify(cloneExecutionConfig(template.execution_config, d.path)), JSON.stringify(detectionConfig(d, canonical)),
    ];
  } else {
    const m = minimalRuntimeRow(d, canonical);
    params = [
      ref, null, null, m.description, m.name, m.aliases, JSON.stringify(m.distributions), null, null,
      JSON.stringify(m.execution_config), JSON.stringify(m.detection_config),
    ];
  }
  const inserted = (await db.query(INSERT, params)).rowCount === 1;
  return { name: canonical, ref, outcome: inserted ? (template ? 'cloned' : 'created') : 'exists' };
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
