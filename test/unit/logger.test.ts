// Every logger this service builds redacts secret-like fields wherever they sit in a logged object.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../worker/logger.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, stream };
}

describe('logger redaction', () => {
  it('redacts secret-like fields at the top level and one level down, keeps the rest', () => {
    const { lines, stream } = capture();
    const log = createLogger('test', {}, stream);
    log.info(
      {
        cluster: 'lab',
        password: 'p4ssw0rd-value-1',
        token: 'tok-value-2',
        rootToken: 'root-value-3',
        unsealKeys: ['k-value-4'],
        entry: { id: 'github', value: 'v-value-5', secret: 's-value-6', privateKey: 'pk-value-7' },
        req: { headers: { authorization: 'Bearer h-value-8' } },
      },
      'rotated',
    );
    const out = lines.join('');
    for (const v of [
      'p4ssw0rd-value-1',
      'tok-value-2',
      'root-value-3',
      'k-value-4',
      'v-value-5',
      's-value-6',
      'pk-value-7',
      'h-value-8',
    ])
      expect(out).not.toContain(v);
    const parsed = JSON.parse(lines[0]);
    expect(parsed).toMatchObject({
      cluster: 'lab',
      msg: 'rotated',
      password: '[redacted]',
      entry: { id: 'github', value: '[redacted]' },
    });
  });
});
