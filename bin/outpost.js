#!/usr/bin/env -S node --max-semi-space-size=1
// The `outpost` command. Outpost runs on Node 24+ with its built-in TypeScript type stripping.
// The shebang's V8 flag is explained in src/cli/runtime-flags.ts.
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(`outpost needs Node.js 24 or newer (this is ${process.version}); in the project directory, "npm install" brings Node 24 and "npx outpost ..." runs on it.\n`);
  process.exit(1);
}
await import('../src/cli/main.ts');
