import type { Chain, Engine } from '../aegis';
/** Wraps an AI SDK tool so `execute` is authorized first (Aegis tool name `name`). */
export function aegisTool<T extends { execute?: (input: any, options: any) => any }>(
  engine: Engine, chain: Chain | (() => Chain | Promise<Chain>), name: string, tool: T): T;
