import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Refusal, RefusalAudit } from '../../../src/manager/app/refusal-audit.js';
import type { AuditEvent } from '../../../src/manager/ports/access-repos.js';
import { captureLogger } from '../../support/capture-logger.js';

/** An audit table in memory, and a clock the test moves. */
function setup(maxSources = 3) {
  const rows: AuditEvent[] = [];
  let now = new Date('2026-01-01T00:00:00Z');
  const audit = new RefusalAudit({ record: async (event) => void rows.push(event) }, { now: () => now }, captureLogger().log, { windowMs: 60_000, maxSources });
  return { rows, audit, advance: (ms: number) => (now = new Date(now.getTime() + ms)) };
}

const refusal = (actor: string, remoteAddress: string, n = 0): Refusal => ({
  actor,
  action: 'host.heartbeat',
  resource: 'host',
  resourceId: actor.startsWith('host:') ? actor.slice(5) : `unknown-${n}`,
  remoteAddress,
  requestId: `req-${n}`,
  status: 401,
  reason: 'heartbeat with a wrong credential',
});

describe('RefusalAudit', () => {
  it('writes the first refusal of a source at once and counts the rest of its window into one row', async () => {
    const { rows, audit, advance } = setup();
    for (let n = 0; n < 1000; n++) audit.note(refusal('host:h1', '10.0.0.5', n));
    await audit.flush();
    assert.equal(rows.length, 2, '1000 refusals, two rows');
    assert.equal(rows[0]?.actor, 'host:h1');
    assert.equal(rows[0]?.remoteAddress, '10.0.0.5');
    assert.equal(rows[0]?.result, 'denied');
    assert.equal(rows[0]?.status, 401);
    assert.equal(rows[0]?.requestId, 'req-0');
    assert.match(rows[0]?.detail ?? '', /^heartbeat with a wrong credential; more from host:h1 at 10\.0\.0\.5 within 60 s are counted in one row$/);
    assert.match(rows[1]?.detail ?? '', /^999 more refused \(heartbeat with a wrong credential\) from host:h1 at 10\.0\.0\.5 between /);
    assert.equal(rows[1]?.requestId, 'req-999', 'the summary names the last request');

    advance(60_000);
    audit.note(refusal('host:h1', '10.0.0.5', 1000));
    assert.equal(rows.length, 3, 'a new window itemizes the source again');
    await audit.flush();
    assert.equal(rows.length, 3, 'nothing more to count');
  });

  it('keeps sources apart by actor and address, and counts sources past the cap together', async () => {
    const { rows, audit } = setup(3);
    audit.note(refusal('anonymous', '10.0.0.1'));
    audit.note(refusal('anonymous', '10.0.0.2'));
    audit.note(refusal('host:h1', '10.0.0.1'));
    assert.equal(rows.length, 3);
    // A spray from many addresses: no row each.
    for (let n = 0; n < 500; n++) audit.note(refusal('anonymous', `192.168.${n >> 8}.${n & 255}`, n));
    assert.equal(rows.length, 3, 'past the cap nothing is itemized');
    await audit.flush();
    assert.equal(rows.length, 4);
    assert.equal(rows[3]?.actor, 'anonymous');
    assert.equal(rows[3]?.remoteAddress, null);
    assert.match(rows[3]?.detail ?? '', /^500 refused from 500 more sources between .* not itemized: more than 3 sources in one window$/);
  });

  it('writes what it counted when it stops', async () => {
    const { rows, audit } = setup();
    audit.start();
    audit.note(refusal('anonymous', '10.0.0.9', 1));
    audit.note(refusal('anonymous', '10.0.0.9', 2));
    await audit.stop();
    assert.equal(rows.length, 2);
    assert.match(rows[1]?.detail ?? '', /^1 more refused/);
  });
});
