/** Connection strings with credentials never reach a log line or an error message. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable URL>';
  }
}

/** Remove any password-like part of a free-text error (drivers sometimes echo the URL). */
export function redactText(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/\s@]+:)[^@\s]+@/gi, '$1***@');
  for (const s of secrets) if (s.length >= 3) out = out.split(s).join('***');
  return out;
}
