import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dialableHostPort, parseListenAddress, urlOf } from '../../../src/kit/listen-address.js';

describe('parseListenAddress', () => {
  it('reads host:port, [v6]:port and :port', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:8080', 'X'), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseListenAddress('[::1]:9090', 'X'), { host: '::1', port: 9090 });
    assert.deepEqual(parseListenAddress(':0', 'X'), { host: '0.0.0.0', port: 0 });
    assert.deepEqual(parseListenAddress('localhost:1', 'X'), { host: 'localhost', port: 1 });
  });
  for (const bad of ['8080', 'host:', 'host:99999', 'a:b', '::1:80', 'host:80/x', '']) {
    it(`refuses '${bad}', naming the setting`, () => {
      assert.throws(
        () => parseListenAddress(bad, 'NEXUS_LISTEN'),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, 'bad_request');
          assert.match(error.message, /NEXUS_LISTEN must be host:port/);
          return true;
        },
      );
    });
  }
  it('turns wildcards into loopback for local clients and brackets v6', () => {
    assert.equal(urlOf({ host: '0.0.0.0', port: 80 }), 'http://127.0.0.1:80');
    assert.equal(dialableHostPort({ host: '::', port: 80 }), '[::1]:80');
    assert.equal(dialableHostPort({ host: 'fd00::2', port: 9090 }), '[fd00::2]:9090');
  });
});
