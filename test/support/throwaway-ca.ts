import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface IssuedCertificate {
  cert: string;
  key: string;
}

export interface ThrowawayCa {
  /** The CA's certificate (PEM file). */
  cert: string;
  /**
   * A server certificate signed by this CA, naming `names` as subjectAltName entries (default
   * `IP:127.0.0.1` and `DNS:localhost`, what a peer on loopback dials).
   */
  issue(name: string, names?: string[]): IssuedCertificate;
}

/** A certificate authority made with openssl in `dir`, for tests only (EC P-256, one day). */
export function throwawayCa(dir: string, name = 'ca'): ThrowawayCa {
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const file = (base: string) => join(dir, base);
  const ecKey = (path: string) => openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path);
  ecKey(file(`${name}.key`));
  openssl('req', '-x509', '-new', '-key', file(`${name}.key`), '-sha256', '-days', '1', '-subj', `/CN=Nexus test ${name}`, '-out', file(`${name}.crt`));
  let serial = 1;
  return {
    cert: file(`${name}.crt`),
    issue(server: string, names = ['IP:127.0.0.1', 'DNS:localhost']) {
      const key = file(`${name}-${server}.key`);
      const cert = file(`${name}-${server}.crt`);
      const csr = file(`${name}-${server}.csr`);
      const extensions = file(`${name}-${server}.ext`);
      ecKey(key);
      openssl('req', '-new', '-key', key, '-subj', `/CN=${server}`, '-out', csr);
      writeFileSync(extensions, `subjectAltName=${names.join(',')}\nextendedKeyUsage=serverAuth\n`);
      openssl(
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        file(`${name}.crt`),
        '-CAkey',
        file(`${name}.key`),
        '-set_serial',
        String(serial++),
        '-days',
        '1',
        '-sha256',
        '-extfile',
        extensions,
        '-out',
        cert,
      );
      return { cert, key };
    },
  };
}
