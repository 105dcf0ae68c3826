/**
 * The console's files, as console/build.ts left them in dist/console: `index.html` at `/`, and every other file under
 * `/assets/` with a content hash in its name (cached for a year: a new build has new names). Read once at start-up,
 * so no request touches the disk and no path a caller types reaches the file system.
 *
 * Every answer carries a strict Content-Security-Policy (our own scripts and styles only, no inline code, nothing
 * framed, no form or connection to another origin): the console handles key files and passwords.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';

export const CONSOLE_DIR = join(__dirname, '..', 'dist', 'console');

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.html': 'text/html; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

export interface ConsoleFile {
  status: number;
  headers: Record<string, string>;
  body: Buffer | string;
}

export interface ConsoleAssets {
  /** The answer for a GET of `pathname`, or undefined when the path is not the console's. */
  serve(pathname: string): ConsoleFile | undefined;
}

export function loadConsoleAssets(dir = CONSOLE_DIR): ConsoleAssets {
  const built = existsSync(join(dir, 'index.html'));
  const index = built ? readFileSync(join(dir, 'index.html')) : undefined;
  const assets = new Map<string, Buffer>();
  if (built && existsSync(join(dir, 'assets'))) {
    for (const name of readdirSync(join(dir, 'assets'))) assets.set(name, readFileSync(join(dir, 'assets', name)));
  }
  return {
    serve(pathname) {
      if (pathname === '/' || pathname === '/index.html') {
        if (!index) {
          return { status: 503, headers: { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }, body: 'The console is not built: `npm start` builds it (node scripts/setup.js), then restart the API service.\n' };
        }
        return { status: 200, headers: { ...SECURITY_HEADERS, 'content-type': TYPES['.html']!, 'cache-control': 'no-cache' }, body: index };
      }
      if (!pathname.startsWith('/assets/')) return undefined;
      const file = assets.get(pathname.slice('/assets/'.length));
      if (!file) return { status: 404, headers: { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }, body: 'Not found.\n' };
      const type = TYPES[extname(pathname)] ?? 'application/octet-stream';
      return { status: 200, headers: { ...SECURITY_HEADERS, 'content-type': type, 'cache-control': 'public, max-age=31536000, immutable' }, body: file };
    },
  };
}
