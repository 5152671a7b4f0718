/**
 * V8 flags `outpost serve` is meant to run with (bin/outpost.js's shebang and `npm start` carry
 * the same literal). A 1 MiB young generation makes scavenges frequent and cheap, so the buffers of
 * an upload's network chunks are freed young instead of piling up as external memory that forces
 * full collections: about 2 CPU-s less per GiB uploaded, for 8–10 % fewer GET requests per second
 * (docs/benchmarks.md).
 */
export const SERVE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
