import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** The SHA256 of a file's content, hex, read as a stream (kernels and packages are tens of MiB). */
export function sha256OfFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
