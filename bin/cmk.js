#!/usr/bin/env node
// The `cmk` CLI. TypeScript sources run through tsx's loader, so there is no build step and no generated file.
'use strict';
require('tsx/cjs');
const { main } = require('../client/cli.ts');
main(process.argv.slice(2), {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
  env: process.env,
}).then((code) => {
  process.exitCode = code;
});
