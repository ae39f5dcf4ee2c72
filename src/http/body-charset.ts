/**
 * The charset a Content-Type declares when it is not UTF-8 (`latin1`, `utf-16`…), else undefined
 * (none declared, or `utf-8` in any case, quoted or not). JSON on the wire is UTF-8 (RFC 8259);
 * a body declared otherwise would be read as UTF-8 and mean something else than was sent.
 */
export function foreignCharsetOf(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  for (const parameter of contentType.split(';').slice(1)) {
    const equals = parameter.indexOf('=');
    if (equals === -1 || parameter.slice(0, equals).trim().toLowerCase() !== 'charset') continue;
    const charset = parameter
      .slice(equals + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1');
    if (charset.toLowerCase() !== 'utf-8') return charset;
  }
  return undefined;
}
