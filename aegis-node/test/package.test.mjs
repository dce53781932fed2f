// The generated index.d.ts is committed and must not drift; the npm tarball installs and loads.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers.mjs';

const pkg = path.join(ROOT, 'aegis-node');
const napi = path.join(pkg, 'node_modules', '.bin', 'napi');

test('index.d.ts matches what napi generates from the Rust source', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-dts-'));
  execFileSync(napi, ['build', '--platform', '--output-dir', out, '--js', 'index.js', '--dts', 'index.d.ts'], { cwd: pkg, stdio: 'pipe' });
  const fresh = fs.readFileSync(path.join(out, 'index.d.ts'), 'utf8');
  assert.equal(fs.readFileSync(path.join(pkg, 'index.d.ts'), 'utf8'), fresh, 'index.d.ts drifted: run `npm run build` in aegis-node and commit it');
});

test('the tarball from npm pack installs into a fresh project and works', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-pack-'));
  const tarball = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: pkg, encoding: 'utf8' }).trim().split('\n').pop();
  const project = path.join(dir, 'project');
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'package.json'), '{"name":"consumer","version":"1.0.0","private":true}');
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', path.join(dir, tarball)], { cwd: project, stdio: 'pipe' });
  const out = execFileSync(process.execPath, ['-e', `
    const a = require('@aegis-sod/aegis');
    const k = a.KeyPair.fromSeed(new Uint8Array(32));
    console.log(k.kid, a.errorCodes().length > 40);`], { cwd: project, encoding: 'utf8' });
  const [kid, ok] = out.trim().split(' ');
  assert.equal(ok, 'true');
  assert.equal(kid.length, 43);
});
