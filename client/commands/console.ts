/**
 * `cmk console`: a one-time sign-in link to the tenant administrators' console for the caller (`--as` / `--token`),
 * printed as the last line (valid 5 minutes, one use), and opened in the desktop browser when there is one.
 */
import { spawn } from 'node:child_process';
import type * as S from '../../api/schemas';
import type { Answer } from '../http';
import type { CliContext } from './context';

export function registerConsole({ program, command, api, print, io }: CliContext): void {
  command(program, 'console', 'print a one-time sign-in link to the web console (its last line; valid 5 minutes, one use)')
    .option('--tenant <tenant>', 'the tenant the console opens on')
    .option('--no-open', 'print the link only, do not open a browser')
    .action(async (o: { tenant?: string; open: boolean }) => {
      const client = api();
      const r = await client.call<Answer<typeof S.ConsoleLink>>('POST', '/v1/console/links', o.tenant === undefined ? {} : { tenant: o.tenant });
      const url = new URL(r.path, client.baseUrl).toString();
      print({ url, expiresAt: r.expiresAt }, () => `Open this link within 5 minutes (it signs in once, until ${r.expiresAt}):\n${url}`);
      if (o.open && !(program.opts() as { json?: boolean }).json) openInBrowser(url, io.env);
    });
}

/** Best effort: a desktop session's browser, never an error (the printed link is the contract). */
function openInBrowser(url: string, env: Record<string, string | undefined>): void {
  const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? null : env.DISPLAY || env.WAYLAND_DISPLAY ? 'xdg-open' : null;
  if (!opener) return;
  try {
    const child = spawn(opener, [url], { detached: true, stdio: 'ignore' });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // No opener installed: the link above is enough.
  }
}
