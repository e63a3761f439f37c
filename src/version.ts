/** The version Attune sees: crate version of the Rust agent we are a drop-in for. Injected at build time. */
declare const __AGENT_VERSION__: string | undefined;
export const AGENT_VERSION: string = typeof __AGENT_VERSION__ === 'string' ? __AGENT_VERSION__ : '0.6.0';
export const AGENT_BINARY_NAME = 'attune-agent';
