import type { Chain, Engine } from '../aegis';
/** Agent middleware (for `createAgent({ middleware: [...] })`) authorizing every tool call. */
export function aegisMiddleware(engine: Engine, chain: Chain | ((request: unknown) => Chain | Promise<Chain>)): any;
