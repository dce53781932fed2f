// Shared by the Node tests: the repository layout and the examples' setup.
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export * from '../../examples/node/setup.mjs';
