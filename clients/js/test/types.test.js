// pushclient.d.ts against a TypeScript program that uses it (tsc --strict, no output).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { test } from 'node:test';

test('pushclient.d.ts type-checks real usage and rejects misuse', async () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const args = [
    tsc,
    '--noEmit',
    '--strict',
    '--module', 'nodenext',
    '--moduleResolution', 'nodenext',
    '--target', 'es2022',
    '--lib', 'es2022,dom',
    '--skipLibCheck',
    'test/types_usage.ts',
  ];
  const result = await new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: 60000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (error.code ?? 1) : 0, out: stdout + stderr }),
    );
  });
  assert.equal(result.code, 0, result.out);
});
