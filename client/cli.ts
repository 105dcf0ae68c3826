/**
 * `cmk`: the tenant administrator's command line, a client of the API service (DESIGN.md §4).
 * Exit status: 0 success, 2 usage error, 3 refused, 1 anything else. With --json, stdout is exactly one JSON document.
 * This file is the program: global options, the context every command group is given, and how an outcome becomes
 * output and an exit status. Each command group is a file of its own in client/commands/.
 */
import { Command, CommanderError, Option } from 'commander';
import { isCmkError } from '../common/errors';
import { ApiClient, ApiUnreachableError, secretsMayTravelTo } from './http';
import type { Action } from '../domain/access';
import { CheckFailedError, DryRunRefusedError, enc, UsageError, type CliContext, type Io, type Json } from './commands/context';
import { registerStatus } from './commands/status';
import { registerTenant } from './commands/tenant';
import { registerEnv } from './commands/env';
import { registerKey } from './commands/key';
import { registerMail } from './commands/mail';
import { registerAudit } from './commands/audit';
import { registerDrift } from './commands/drift';
import { registerConsole } from './commands/console';
import { callerToken, registerToken } from './commands/token';

const EXIT = { ok: 0, failed: 1, usage: 2, refused: 3 } as const;

export async function main(argv: string[], io: Io): Promise<number> {
  let json = argv.includes('--json');
  const program = buildProgram(io, (value) => (json = value));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    return report(err, json, io);
  }
}

function report(err: unknown, json: boolean, io: Io): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
    if (json) io.out(JSON.stringify({ error: { code: 'USAGE', message: err.message.replace(/^error: /, '') } }));
    return EXIT.usage;
  }
  if (err instanceof UsageError) {
    io.err(`error: ${err.message}`);
    if (json) io.out(JSON.stringify({ error: { code: 'USAGE', message: err.message } }));
    return EXIT.usage;
  }
  if (err instanceof CheckFailedError) {
    io.err(`cmk: ${err.message}`);
    return EXIT.failed;
  }
  if (err instanceof DryRunRefusedError) {
    // The report is on stdout already (with --json, the one document); the refusal's line goes where refusals go.
    io.err(`${err.code}: ${err.message}`);
    return EXIT.refused;
  }
  if (isCmkError(err)) {
    io.err(`${err.code}: ${err.message}`);
    if (json) io.out(JSON.stringify({ error: { code: err.code, message: err.message } }));
    return EXIT.refused;
  }
  const message = err instanceof ApiUnreachableError || err instanceof Error ? err.message : String(err);
  io.err(`cmk: ${message}`);
  if (json) io.out(JSON.stringify({ error: { code: 'FAILED', message } }));
  return EXIT.failed;
}

function buildProgram(io: Io, setJson: (json: boolean) => void): Command {
  const program = new Command('cmk')
    .description('Bring, rotate, apply, revert and lock your own database encryption keys.')
    .addOption(new Option('--as <email>', 'act as this user (embedded default only; default: CMK_USER, else the provider operator)'))
    .addOption(new Option('--token <jwt>', 'bearer token from your issuer (default: CMK_TOKEN)'))
    .option('--json', 'print exactly one JSON document on stdout')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });
  program.hook('preAction', () => setJson(Boolean(program.opts().json)));

  let token: Promise<string> | undefined;
  const credentials = () => (token ??= callerToken(program.opts() as { as?: string; token?: string }, io.env));
  const api = () => new ApiClient(io.env.CMK_API_URL || `http://127.0.0.1:${io.env.CMK_API_PORT || '8787'}`, credentials);
  const secretsMayGo = () => {
    const { baseUrl } = api();
    if (!secretsMayTravelTo(baseUrl)) throw new UsageError(`the API service at ${baseUrl} is plain http on another host: the key file and its password would cross the network in the clear; use an https:// URL (CMK_API_URL).`);
  };
  const wantsJson = () => Boolean(program.opts().json);
  const print = (doc: Json, human: () => string) => io.out(wantsJson() ? JSON.stringify(doc) : human());
  const localInput = async <T>(tenant: string, action: Action, read: () => Promise<T>, env?: string): Promise<T> => {
    try {
      return await read();
    } catch (err) {
      if (isCmkError(err)) await api().call('POST', `/v1/tenants/${enc(tenant)}/access`, { action, env });
      throw err;
    }
  };
  const command = (parent: Command, name: string, description: string) =>
    parent.command(name).description(description).exitOverride().configureOutput({ writeOut: io.out, writeErr: io.err });

  const context: CliContext = { program, io, command, api, secretsMayGo, print, localInput };
  // The order of the groups is the order of `cmk --help`.
  for (const register of [registerStatus, registerTenant, registerEnv, registerKey, registerMail, registerAudit, registerDrift, registerToken, registerConsole]) register(context);
  return program;
}

if (require.main === module) {
  void main(process.argv.slice(2), {
    out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
    err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
    env: process.env,
  }).then((code) => {
    process.exitCode = code;
  });
}
