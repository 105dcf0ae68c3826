/**
 * Several SQL Servers behind one EnvironmentDatabases: each new environment is placed on a server of its region
 * (R1), and every later call goes to the server that holds it. Each server is driven by its own
 * SqlServerEnvironmentDatabases (database/sqlserver.ts); this module only decides where, and remembers it.
 *
 * Where the mapping lives: in the control database of the server that holds the environment (dbo.cmk_environments,
 * next to its offline marks and backups), written before the database is made and deleted after it is destroyed.
 * Nothing else is authoritative: a process finds an environment by asking every server of its region (in parallel)
 * and keeps the answer in memory. A server also claims an environment whose database it holds without a row (made
 * before the fleet, e.g. under MSSQL_URL): the row is then written ("adopted"). Two servers claiming one environment
 * is an error, logged and thrown, never a guess.
 *
 * Placement: the server of the region with the fewest cmk environments (rows in its cmk_environments), ties broken by
 * name; a server at its maxEnvironments is skipped. The claim is one conditional INSERT on that server, so two
 * workers placing at once cannot push it past its limit. Moving an environment between servers is not supported.
 */
import { CmkError, isCmkError } from '../common/errors';
import { databaseName, type SqlConnection, type SqlParams } from './sqlserver';
import * as sql from './sqlserver-sql';
import type { BackupView, EnvironmentDatabases, KeyRecordView, OfflineEnvironment, OfflineMark, Protector, RekeyHooks, Row } from './types';

/** One SQL Server of the fleet: its connection, the engine that drives it, and what placement needs to know. */
export interface FleetServer {
  name: string;
  regions: readonly string[];
  connection: SqlConnection;
  databases: EnvironmentDatabases;
  controlDatabase: string;
  maxEnvironments?: number;
}

export interface SqlServerFleetOptions {
  servers: FleetServer[];
  /**
   * The region this fleet serves (a region's own worker): its servers are that region's. Undefined: every server
   * (the API service, or one worker for all regions); a new environment's region then comes from `regionOf`.
   */
  region?: string;
  /** The region of a new environment in a fleet of several regions, from the protector `create` is given. */
  regionOf?: (protector: Protector) => string | undefined;
  now?: () => Date;
  /** Where placements, adoptions and conflicts are reported for operators. */
  log?: (line: string) => void;
}

interface Claim {
  /** The server name its placement row was written for; null without a row. */
  server_name: string | null;
  region: string | null;
  has_database: number;
}

const MASTER = 'master';

export class SqlServerFleet implements EnvironmentDatabases {
  private readonly servers: FleetServer[];
  private readonly region: string | undefined;
  private readonly regionOf: (protector: Protector) => string | undefined;
  private readonly now: () => Date;
  private readonly log: (line: string) => void;
  /** tenant/env → the server that holds it: what the servers answered, kept (moving is not supported). */
  private readonly located = new Map<string, FleetServer>();
  private readonly tableReady = new Map<FleetServer, Promise<void>>();

  constructor(options: SqlServerFleetOptions) {
    if (options.servers.length === 0) throw new Error('A fleet of SQL Servers needs at least one server.');
    const names = options.servers.map((s) => s.name);
    if (new Set(names).size !== names.length) throw new Error(`Two servers of the fleet share a name (${names.join(', ')}).`);
    this.servers = [...options.servers].sort((a, b) => compare(a.name, b.name));
    this.region = options.region;
    this.regionOf = options.regionOf ?? (() => undefined);
    this.now = options.now ?? (() => new Date());
    this.log = options.log ?? ((line) => console.error(`cmk sqlserver: ${line}`));
  }

  /** Closes every server's connection. */
  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.connection.close()));
  }

  /** The server holding the environment, by asking (no cache); undefined when none does. For operators and tests. */
  async whereIs(tenant: string, env: string): Promise<string | undefined> {
    return (await this.ask(tenant, env))?.name;
  }

  /**
   * The holder, asked afresh (a create is rare, and a stale answer here would make a second database), or a new
   * placement. A refusal from the engine right after a placement made by this call takes the placement back: the
   * engine refuses before it makes anything.
   */
  async create(tenant: string, env: string, protector: Protector): Promise<KeyRecordView> {
    databaseName(tenant, env);
    const holder = await this.ask(tenant, env);
    if (holder) return holder.databases.create(tenant, env, protector);
    const placed = await this.place(tenant, env, protector);
    try {
      return await placed.databases.create(tenant, env, protector);
    } catch (err) {
      if (isCmkError(err)) {
        await this.controlQuery(placed, sql.FORGET_PLACEMENT, { tenant, env });
        this.located.delete(key(tenant, env));
      }
      throw err;
    }
  }

  describe(tenant: string, env: string): Promise<KeyRecordView | undefined> {
    return this.routed(tenant, env, (db) => db.describe(tenant, env), () => undefined, (r) => r === undefined);
  }

  readRows(tenant: string, env: string): Promise<Row[]> {
    return this.routed(tenant, env, (db) => db.readRows(tenant, env), notFound(env));
  }

  writeRow(tenant: string, env: string, text: string): Promise<Row> {
    return this.routed(tenant, env, (db) => db.writeRow(tenant, env, text), notFound(env));
  }

  rekey(tenant: string, env: string, protector: Protector, hooks?: RekeyHooks): Promise<KeyRecordView> {
    return this.routed(tenant, env, (db) => db.rekey(tenant, env, protector, hooks), notFound(env));
  }

  reprotect(tenant: string, env: string, protector: Protector): Promise<KeyRecordView> {
    return this.routed(tenant, env, (db) => db.reprotect(tenant, env, protector), notFound(env));
  }

  takeOffline(tenant: string, env: string, mark: OfflineMark): Promise<void> {
    return this.routed(tenant, env, (db) => db.takeOffline(tenant, env, mark), notFound(env));
  }

  bringOnline(tenant: string, env: string, protector?: Protector): Promise<KeyRecordView> {
    return this.routed(tenant, env, (db) => db.bringOnline(tenant, env, protector), notFound(env));
  }

  offlineMark(tenant: string, env: string): Promise<OfflineMark | undefined> {
    return this.routed(tenant, env, (db) => db.offlineMark(tenant, env), () => undefined, (r) => r === undefined);
  }

  backup(tenant: string, env: string): Promise<BackupView> {
    return this.routed(tenant, env, (db) => db.backup(tenant, env), notFound(env));
  }

  listBackups(tenant: string, env: string): Promise<BackupView[]> {
    return this.routed(tenant, env, (db) => db.listBackups(tenant, env), () => [], (r) => r.length === 0);
  }

  restore(tenant: string, env: string, backupId?: string): Promise<BackupView> {
    return this.routed(tenant, env, (db) => db.restore(tenant, env, backupId), notFound(env));
  }

  /** The engine's destroy on the holder, then its placement row: a retry finds the row and finishes. Idempotent. */
  async destroy(tenant: string, env: string): Promise<void> {
    databaseName(tenant, env);
    const holder = await this.ask(tenant, env);
    if (!holder) return;
    await holder.databases.destroy(tenant, env);
    await this.controlQuery(holder, sql.FORGET_PLACEMENT, { tenant, env });
    this.located.delete(key(tenant, env));
  }

  /**
   * Every offline environment of the fleet's servers (of its region, on a server shared with other regions), by
   * deleteAt. The purge's safety net (R9): a server that does not answer fails the call rather than hide its marks.
   */
  async listOffline(): Promise<OfflineEnvironment[]> {
    const perServer = await Promise.all(
      this.servers.map(async (server) => {
        const marks = await server.databases.listOffline();
        if (!this.region || server.regions.length < 2) return { server, marks };
        const others = await this.controlQuery<{ tenant: string; env: string }>(server, sql.OTHER_REGIONS_ENVIRONMENTS, { region: this.region });
        const foreign = new Set(others.map((o) => key(o.tenant, o.env)));
        return { server, marks: marks.filter((m) => !foreign.has(key(m.tenant, m.env))) };
      }),
    );
    const holders = new Map<string, FleetServer>();
    for (const { server, marks } of perServer) {
      for (const mark of marks) {
        const id = key(mark.tenant, mark.env);
        const other = holders.get(id);
        if (other) this.conflict(mark.tenant, mark.env, [other.name, server.name]);
        holders.set(id, server);
      }
    }
    for (const [id, server] of holders) this.located.set(id, server);
    return perServer
      .flatMap((p) => p.marks)
      .sort((a, b) => compare(a.deleteAt, b.deleteAt) || compare(a.tenant, b.tenant) || compare(a.env, b.env));
  }

  // ------------------------------------------------------------------------------------------------ internals

  /**
   * `operation` on the server holding the environment; `absent()` when none does. A remembered holder that answers
   * "not there" (NOT_FOUND, or `isAbsent`) is asked about once more against every server: the environment may have
   * been destroyed and made again elsewhere by another process since.
   */
  private async routed<T>(tenant: string, env: string, operation: (db: EnvironmentDatabases) => Promise<T>, absent: () => T, isAbsent?: (result: T) => boolean): Promise<T> {
    databaseName(tenant, env);
    const remembered = this.located.get(key(tenant, env));
    const holder = remembered ?? (await this.ask(tenant, env));
    if (!holder) return absent();
    let result: T;
    try {
      result = await operation(holder.databases);
    } catch (err) {
      if (!remembered || !isCmkError(err) || err.code !== 'NOT_FOUND') throw err;
      return this.again(tenant, env, remembered, operation, absent, err);
    }
    if (remembered && isAbsent?.(result)) return this.again(tenant, env, remembered, operation, absent, undefined, result);
    return result;
  }

  private async again<T>(tenant: string, env: string, remembered: FleetServer, operation: (db: EnvironmentDatabases) => Promise<T>, absent: () => T, err?: unknown, result?: T): Promise<T> {
    const holder = await this.ask(tenant, env);
    if (!holder) return absent();
    if (holder !== remembered) return operation(holder.databases);
    if (err !== undefined) throw err;
    return result as T;
  }

  /** Every server (of the region) asked at once whether it holds the environment; the answer is remembered. */
  private async ask(tenant: string, env: string): Promise<FleetServer | undefined> {
    const database = databaseName(tenant, env);
    const answers = await Promise.all(
      this.servers.map(async (server) => {
        try {
          const [claim] = await this.controlQuery<Claim>(server, sql.LOCATE_ENVIRONMENT, { tenant, env, database });
          return { server, claim };
        } catch (err) {
          // Without this server's answer, "nowhere" could be wrong (and a create would make a second database).
          throw new Error(`SQL Server ${server.name} did not answer where ${tenant}/${env} lives: ${err instanceof Error ? err.message : String(err)}`);
        }
      }),
    );
    const claiming = answers.filter(({ server, claim }) => {
      if (claim?.server_name && claim.server_name !== server.name) {
        throw new Error(
          `The control database of SQL Server ${server.name} records ${tenant}/${env} as placed on "${claim.server_name}": was the server renamed, ` +
            'or do two entries of CMK_MSSQL_SERVERS reach one SQL Server? (docs/SQLSERVER.md, "Several servers")',
        );
      }
      return Boolean(claim?.server_name) || Number(claim?.has_database) === 1;
    });
    if (claiming.length > 1) this.conflict(tenant, env, claiming.map((c) => c.server.name));
    const found = claiming[0];
    if (!found) {
      this.located.delete(key(tenant, env));
      return undefined;
    }
    if (!found.claim?.server_name) await this.adopt(found.server, tenant, env);
    this.located.set(key(tenant, env), found.server);
    return found.server;
  }

  /** A database this server holds without a placement row (made before the fleet): the row is written now. */
  private async adopt(server: FleetServer, tenant: string, env: string): Promise<void> {
    const region = this.region ?? (server.regions.length === 1 ? (server.regions[0] ?? '') : '');
    const params = { tenant, env, server_name: server.name, region, placed_at: this.now().toISOString(), max_environments: -1 };
    await this.controlQuery(server, sql.CLAIM_ENVIRONMENT, params);
    this.log(`recorded ${tenant}/${env} on SQL Server ${server.name}, which held its database without a placement row`);
  }

  /** R1: a server of the environment's region with the fewest environments (ties by name), not full; claimed there. */
  private async place(tenant: string, env: string, protector: Protector): Promise<FleetServer> {
    const region = this.region ?? this.regionOf(protector);
    if (region === undefined) {
      throw new Error(`The region of new environment ${tenant}/${env} is unknown to this fleet of several regions: build it per region (buildSqlServerDatabases(config, region)).`);
    }
    const candidates = this.servers.filter((s) => s.regions.includes(region));
    if (candidates.length === 0) throw new CmkError('INVALID_ARGUMENT', `Region ${region} has no SQL Server for environments.`);
    const loads = await Promise.all(
      candidates.map(async (server) => {
        const [row] = await this.controlQuery<{ environments: number | string }>(server, sql.COUNT_ENVIRONMENTS);
        return { server, count: Number(row?.environments ?? 0) };
      }),
    );
    const open = loads
      .filter(({ server, count }) => server.maxEnvironments === undefined || count < server.maxEnvironments)
      .sort((a, b) => a.count - b.count || compare(a.server.name, b.server.name));
    for (const { server, count } of open) {
      const params = { tenant, env, server_name: server.name, region, placed_at: this.now().toISOString(), max_environments: server.maxEnvironments ?? -1 };
      const [claimed] = await this.controlQuery<{ server_name: string }>(server, sql.CLAIM_ENVIRONMENT, params);
      if (claimed) {
        this.located.set(key(tenant, env), server);
        this.log(`placed ${tenant}/${env} (region ${region}) on SQL Server ${server.name}, which held ${count} environment(s)`);
        return server;
      }
      // Not written: the server filled up meanwhile, or another worker placed this environment at the same moment.
      const holder = await this.ask(tenant, env);
      if (holder) return holder;
    }
    throw new CmkError(
      'INVALID_ARGUMENT',
      `Every SQL Server of region ${region} is full (${candidates.map((s) => s.name).join(', ')}): an operator must add a server or raise its maxEnvironments.`,
    );
  }

  private conflict(tenant: string, env: string, servers: string[]): never {
    const message =
      `Environment ${tenant}/${env} is claimed by SQL Servers ${servers.join(' and ')} (a placement row or its database on each): ` +
      'cmk will not guess which one holds it; an operator must remove the stale one (docs/SQLSERVER.md, "Several servers").';
    this.log(message);
    throw new Error(message);
  }

  /** A statement in the server's control database, after making it and the placement table once (again after a failure). */
  private async controlQuery<T extends object>(server: FleetServer, statement: string, params?: SqlParams): Promise<T[]> {
    let ready = this.tableReady.get(server);
    if (!ready) {
      ready = (async () => {
        await server.connection.query(MASTER, sql.createControlDatabase(server.controlDatabase), { database: server.controlDatabase });
        await server.connection.query(server.controlDatabase, sql.CREATE_ENVIRONMENTS_TABLE);
      })();
      this.tableReady.set(server, ready);
      void ready.catch(() => this.tableReady.delete(server));
    }
    await ready;
    return server.connection.query<T>(server.controlDatabase, statement, params);
  }
}

const key = (tenant: string, env: string): string => `${tenant}/${env}`;
const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function notFound(env: string): () => never {
  return () => {
    throw new CmkError('NOT_FOUND', `Environment ${env} has no database.`);
  };
}
