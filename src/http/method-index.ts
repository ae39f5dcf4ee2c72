import FindMyWay, { type HTTPMethod } from 'find-my-way';

/**
 * Remembers which methods each registered route answers, so an unmatched request can be told
 * 405 (with `Allow`) when its path exists under another method, instead of a blanket 404.
 */
export class MethodIndex {
  private readonly router = FindMyWay({ ignoreTrailingSlash: false });
  private readonly methods = new Set<HTTPMethod>();

  add(method: string | string[], url: string): void {
    for (const m of Array.isArray(method) ? method : [method]) {
      const upper = m.toUpperCase() as HTTPMethod;
      this.methods.add(upper);
      this.router.on(upper, url, () => undefined);
    }
  }

  /** The methods that would have matched this path, sorted; empty when the path is unknown. */
  allowedFor(path: string): string[] {
    return [...this.methods].filter((method) => this.router.find(method, path) !== null).sort();
  }
}
