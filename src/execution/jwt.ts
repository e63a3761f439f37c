/**
 * HS256 JSON Web Tokens (Attune `auth/jwt.rs`): base64url(header).base64url(claims).base64url(hmac).
 * Pure apart from node:crypto's HMAC, which is deterministic.
 */
import { createHmac } from 'node:crypto';

export function signHs256(claims: Record<string, unknown>, secret: string): string {
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'HS256' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
  return `${header}.${body}.${sig}`;
}

function b64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

export interface ExecutionTokenInput {
  executionId: number;
  executor: number;
  actionRef: string;
  /** Workflow task parent's action ref, if known (adds to the standard-access lists). */
  parentActionRef?: string | null;
  permissionSetRefs: readonly string[];
  timeoutSeconds: number;
  nowSeconds: number;
}

/** `ATTUNE_API_TOKEN` claims (docs/attune-compat.md §5.6): lifetime = effective timeout + 60 s. */
export function executionTokenClaims(t: ExecutionTokenInput): Record<string, unknown> {
  const actionRefs = [...new Set([t.actionRef, ...(t.parentActionRef ? [t.parentActionRef] : [])])].sort();
  const packRefs = [...new Set(actionRefs.map(packRefOf))].sort();
  return {
    sub: String(t.executor),
    login: `execution:${t.executionId}`,
    iat: t.nowSeconds,
    exp: t.nowSeconds + t.timeoutSeconds + 60,
    token_type: 'execution',
    scope: 'execution',
    metadata: {
      execution_id: t.executionId,
      action_ref: t.actionRef,
      permission_set_refs: [...t.permissionSetRefs],
      standard_access_action_refs: actionRefs,
      standard_access_pack_refs: packRefs,
    },
  };
}

export function packRefOf(actionRef: string): string {
  const dot = actionRef.indexOf('.');
  return dot === -1 ? actionRef : actionRef.slice(0, dot);
}
