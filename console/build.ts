/**
 * Builds the tenant administrators' console into dist/console (served by the API service, api/console-assets.ts):
 * one script and one stylesheet, each with a content hash in its name, and an index.html that names them. Run by
 * scripts/setup.js before `npm start` and `npm test`; its output is never committed. No inline script or style
 * anywhere: the Content-Security-Policy forbids them.
 */
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const root = join(__dirname, '..');
const out = join(root, 'dist', 'console');

async function main(): Promise<void> {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, 'assets'), { recursive: true });
  const result = await build({
    entryPoints: [join(__dirname, 'src', 'main.tsx')],
    bundle: true,
    minify: true,
    sourcemap: false,
    format: 'esm',
    target: ['chrome110', 'firefox110', 'safari16'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    entryNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    outdir: join(out, 'assets'),
    metafile: true,
    // node-forge reads Node's crypto only when it exists; the browser build must not try to bundle it.
    external: ['crypto'],
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  const outputs = Object.keys(result.metafile.outputs).map((file) => basename(file));
  const named = (prefix: string, ext: string) => {
    const found = outputs.find((file) => file.startsWith(`${prefix}-`) && file.endsWith(ext));
    if (!found) throw new Error(`the console build made no ${prefix}*${ext}`);
    return found;
  };
  const html = readFileSync(join(__dirname, 'src', 'index.html'), 'utf8')
    .replace('%SCRIPT%', `/assets/${named('main', '.js')}`)
    .replace('%STYLE%', `/assets/${named('main', '.css')}`)
    .replace('%ICON%', `/assets/${hashedCopy(join(__dirname, 'src', 'icon.svg'))}`);
  writeFileSync(join(out, 'index.html'), html);
}

/** A file copied into assets/ under a name with its content's hash (as esbuild names what it builds). */
function hashedCopy(file: string): string {
  const hash = createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 10).toUpperCase();
  const name = basename(file).replace(/(\.[a-z]+)$/, `-${hash}$1`);
  copyFileSync(file, join(out, 'assets', name));
  return name;
}

main().catch((err: unknown) => {
  process.stderr.write(`cmk console build: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
