import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { type FirecrackerApiVersion, firecrackerApiContract } from '../../doubles/firecracker-api-contract.js';
import { type SwaggerDocument, firecrackerSwaggerDiff } from '../../support/firecracker-swagger-diff.js';

/**
 * Our Firecracker contract (test/doubles/firecracker-api-contract.ts) against an official swagger
 * file (Firecracker's src/firecracker/swagger/firecracker.yaml), when NEXUS_FIRECRACKER_SWAGGER
 * names one; .ci/run points it at the reference copy beside the checkout when there is one. The
 * contract itself needs no file: this check is how it learns that Firecracker moved.
 */
const swaggerFile = process.env.NEXUS_FIRECRACKER_SWAGGER;
const skip = swaggerFile ? false : 'NEXUS_FIRECRACKER_SWAGGER names no Firecracker swagger file to compare the contract with';

// Skipped test by test, so the summary counts each as skipped (a skipped suite counts none).
describe('Firecracker contract against the official swagger', () => {
  const load = () => parse(readFileSync(resolve(swaggerFile!), 'utf8')) as SwaggerDocument;
  /** The contract the swagger describes: v1.16.x is 1.16; main and anything newer is compared as 1.17. */
  const versionOf = (swagger: SwaggerDocument): FirecrackerApiVersion => (String(swagger.info.version).startsWith('1.16') ? '1.16' : '1.17');
  const report = (differences: string[], what: string) =>
    `${what} differs from ${swaggerFile} in ${differences.length} place(s):\n  - ${differences.join('\n  - ')}`;

  it('has every path and method, field, type, format, required list, enum and bound of the swagger, and nothing more', { skip }, () => {
    const swagger = load();
    const version = versionOf(swagger);
    const differences = firecrackerSwaggerDiff(firecrackerApiContract(version), swagger);
    assert.equal(differences.length, 0, report(differences, `the ${version} contract (swagger version ${swagger.info.version})`));
  });

  it("is main's swagger without the listed v1.16.1 differences, for 1.16", { skip }, (t) => {
    const swagger = load();
    if (versionOf(swagger) === '1.16') return t.skip('the swagger is v1.16 itself: the test above compared the 1.16 contract with it');
    const differences = firecrackerSwaggerDiff(firecrackerApiContract('1.16'), swagger, { withoutMainOnly: true });
    assert.equal(differences.length, 0, report(differences, 'the 1.16 contract (main without MAIN_ONLY_INPUTS)'));
  });

  it('reports a contract that drifted, one readable line per difference', { skip }, () => {
    const swagger = load();
    const contract = firecrackerApiContract(versionOf(swagger));
    const baseline = firecrackerSwaggerDiff(contract, swagger);
    const drive = contract.definitions.Drive!.properties!;
    drive.io_engine = { type: 'string', enum: ['Sync'] };
    drive.is_root_device = { type: 'string' };
    contract.definitions.NetworkInterface!.properties!.mtu!.maximum = 9000;
    contract.definitions.Vsock!.properties!.cid_alias = { type: 'string' };
    contract.definitions.BootSource!.required = [];
    contract.definitions.MmdsConfig!.properties!.ipv4_address!.pattern = '^169\\.254\\.';
    delete contract.operations['/vm']!.patch;
    contract.operations['/balloon/hinting/start']!.patch!.body!.optional = false;

    const drifted = firecrackerSwaggerDiff(contract, swagger).filter((line) => !baseline.includes(line));
    assert.deepEqual(drifted, [
      'definition BootSource required: ours [], the swagger\'s ["kernel_image_path"]',
      'definition Drive.io_engine enum: ours ["Sync"], the swagger\'s ["Sync","Async"]',
      'definition Drive.is_root_device type: ours "string", the swagger\'s "boolean"',
      'definition MmdsConfig.ipv4_address pattern: ours and the swagger\'s judge ["169.254.0.1","169.254.255.1","169.254.1.256","169.254.1"] differently',
      "definition NetworkInterface.mtu maximum: ours 9000, the swagger's 65535",
      'definition Vsock.cid_alias: in ours, not in the swagger',
      'PATCH /balloon/hinting/start body: required in ours, optional in the swagger',
      'PATCH /vm: in the swagger, not in ours',
    ]);
  });
});
