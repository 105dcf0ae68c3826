// Over 400 lines: every T-SQL text of the engine in one module, so that its quoting is reviewed in one place.
/**
 * The T-SQL text of the SQL Server engine (database/sqlserver.ts): the one identifier quoter, the one string-literal
 * quoter, and a builder per statement. Names reach these builders only after the engine has validated them; quoting
 * is the second guard, so even a name that slipped through cannot close the identifier or literal it sits in.
 * Values that are data (row text, key-record fields) never come here: they travel as bound parameters (@name).
 */

/** SQL Server's limit for identifiers (sysname). */
export const MAX_IDENTIFIER_LENGTH = 128;

/** `[name]` with `]` doubled: the only way an identifier enters a statement. */
export function quoteName(name: string): string {
  if (name.length === 0 || name.length > MAX_IDENTIFIER_LENGTH || name.includes('\u0000')) {
    throw new Error(`"${name}" cannot be a SQL Server identifier.`);
  }
  return `[${name.replace(/]/g, ']]')}]`;
}

/** `N'value'` with `'` doubled: the only way a string literal (key name, file path, subject) enters a statement. */
export function quoteString(value: string): string {
  if (value.includes('\u0000')) throw new Error('A SQL Server string literal cannot hold a NUL character.');
  return `N'${value.replace(/'/g, "''")}'`;
}

/** What wraps a database's DEK: a server certificate or an EKM asymmetric key, both in master. */
export interface Encryptor {
  type: 'CERTIFICATE' | 'ASYMMETRIC KEY';
  name: string;
}

const encryptionBy = ({ type, name }: Encryptor): string => `ENCRYPTION BY SERVER ${type} ${quoteName(name)}`;

/**
 * The key record's one row, written in the same batch as the encryptor change it describes. SET XACT_ABORT ON ends
 * the batch at the first error, so a refused key statement never leaves a record that claims the change happened.
 */
const WRITE_KEY_RECORD = `
  UPDATE dbo.cmk_key_record
     SET kind = @kind, name = @name, version = @version, thumbprint = @thumbprint,
         encryptor_type = @encryptor_type, encryptor_name = @encryptor_name, updated_at = @updated_at
   WHERE id = 1;
  IF @@ROWCOUNT = 0
    INSERT INTO dbo.cmk_key_record (id, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at)
    VALUES (1, @kind, @name, @version, @thumbprint, @encryptor_type, @encryptor_name, @updated_at);`;

/** The key record's columns: the record itself, and its copies kept while offline or restoring, share one shape. */
const KEY_RECORD_COLUMNS = `
      kind NVARCHAR(16) NOT NULL,
      name NVARCHAR(128) NOT NULL,
      version NVARCHAR(128) NOT NULL,
      thumbprint NVARCHAR(128) NOT NULL,
      encryptor_type NVARCHAR(16) NOT NULL,
      encryptor_name NVARCHAR(128) NOT NULL,
      updated_at NVARCHAR(40) NOT NULL`;

// ------------------------------------------------------------------------------------------------------ reads

/**
 * In master. Recovery model and log chain decide whether a REGENERATE needs a log backup first (see sqlserver.ts);
 * state_desc (ONLINE, OFFLINE, RESTORING…) whether the database can be queried at all.
 */
export const FIND_DATABASE = `
  SELECT d.name, d.state_desc AS state, d.recovery_model_desc AS recovery_model,
         CONVERT(varchar(40), rs.last_log_backup_lsn) AS last_log_backup_lsn
    FROM sys.databases AS d
    LEFT JOIN sys.database_recovery_status AS rs ON rs.database_id = d.database_id
   WHERE d.name = @database`;

/**
 * In master. No row: the database has no DEK. Thumbprints as hex text, so they compare as strings; regenerate_date
 * (when the DEK was last regenerated) as ISO 8601 text, so a retry can tell whether its REGENERATE took place.
 */
export const ENCRYPTION_STATE = `
  SELECT encryption_state, percent_complete, CONVERT(varchar(66), encryptor_thumbprint, 2) AS encryptor_thumbprint,
         CONVERT(varchar(27), regenerate_date, 126) AS regenerate_date
    FROM sys.dm_database_encryption_keys
   WHERE database_id = DB_ID(@database)`;

/** In master. */
export const FIND_CERTIFICATE = `
  SELECT CONVERT(varchar(66), thumbprint, 2) AS thumbprint FROM sys.certificates WHERE name = @name`;

/** In master: the EKM key, and whether its TDE login exists and holds the EKM credential. */
export const FIND_ASYMMETRIC_KEY = `
  SELECT CONVERT(varchar(66), k.thumbprint, 2) AS thumbprint,
         (SELECT COUNT(*) FROM sys.server_principals WHERE name = @login) AS logins,
         (SELECT COUNT(*) FROM sys.server_principal_credentials AS pc
            JOIN sys.server_principals AS p ON p.principal_id = pc.principal_id
            JOIN sys.credentials AS c ON c.credential_id = pc.credential_id
           WHERE p.name = @login AND c.name = @credential) AS credentials
    FROM sys.asymmetric_keys AS k
   WHERE k.name = @name`;

/** In the environment's database. No row (or no table yet): no key record. */
export const READ_KEY_RECORD = `
  IF OBJECT_ID(N'dbo.cmk_key_record', N'U') IS NOT NULL
    SELECT kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at
      FROM dbo.cmk_key_record WHERE id = 1`;

export const READ_ROWS = `SELECT id, text, created_at FROM dbo.cmk_rows ORDER BY id`;

/** In master: the data and log files of a database, offline or not (sys.master_files lives in master). */
export const DATABASE_FILES = `SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID(@database) ORDER BY file_id`;

/** In master. NULL before SQL Server 2019. */
export const DEFAULT_BACKUP_PATH = `SELECT CONVERT(nvarchar(512), SERVERPROPERTY('InstanceDefaultBackupPath')) AS path`;

// ---------------------------------------------------------------------------------------------------- changes

/** In master. A self-signed certificate protected by master's database master key (a TDE prerequisite). */
export const createCertificate = (name: string, subject: string): string =>
  `CREATE CERTIFICATE ${quoteName(name)} WITH SUBJECT = ${quoteString(subject)}`;

/** In master. Opens (never creates) the tenant's key in Azure Key Vault through the EKM provider. */
export const openEkmKey = (name: string, provider: string, providerKeyName: string): string =>
  `CREATE ASYMMETRIC KEY ${quoteName(name)} FROM PROVIDER ${quoteName(provider)}
     WITH PROVIDER_KEY_NAME = ${quoteString(providerKeyName)}, CREATION_DISPOSITION = OPEN_EXISTING`;

/** In master. The login the Database Engine uses to reach the vault when it loads a database under that key. */
export const createKeyLogin = (login: string, key: string): string =>
  `CREATE LOGIN ${quoteName(login)} FROM ASYMMETRIC KEY ${quoteName(key)}`;

/**
 * In master, one batch: the EKM credential made, or altered when it exists (so a new secret takes effect), then
 * mapped to the engine's own login unless that login already holds a credential for the provider (a login holds one
 * per provider; CREATE ASYMMETRIC KEY … FROM PROVIDER runs with it). CREATE/ALTER CREDENTIAL take no variables, so
 * the statement is built on the server: every value arrives as a bound parameter (@credential, @provider, @identity,
 * @secret), names through QUOTENAME, identity and secret as N'…' literals with ' doubled. The secret is thus never
 * part of the text the engine sends, nor of any error that quotes it.
 */
export const ENSURE_EKM_CREDENTIAL = `
  DECLARE @literals NVARCHAR(MAX) = N' WITH IDENTITY = N''' + REPLACE(@identity, N'''', N'''''') + N''', SECRET = N''' + REPLACE(@secret, N'''', N'''''') + N'''';
  DECLARE @statement NVARCHAR(MAX) = CASE WHEN EXISTS (SELECT 1 FROM sys.credentials WHERE name = @credential)
    THEN N'ALTER CREDENTIAL ' + QUOTENAME(@credential) + @literals
    ELSE N'CREATE CREDENTIAL ' + QUOTENAME(@credential) + @literals + N' FOR CRYPTOGRAPHIC PROVIDER ' + QUOTENAME(@provider) END;
  EXEC sys.sp_executesql @statement;
  IF NOT EXISTS (SELECT 1 FROM sys.server_principal_credentials AS pc
                   JOIN sys.credentials AS c ON c.credential_id = pc.credential_id
                   JOIN sys.cryptographic_providers AS cp ON c.target_type = N'CRYPTOGRAPHIC PROVIDER' AND cp.provider_id = c.target_id
                  WHERE pc.principal_id = SUSER_ID() AND cp.name = @provider)
  BEGIN
    SET @statement = N'ALTER LOGIN ' + QUOTENAME(SUSER_SNAME()) + N' ADD CREDENTIAL ' + QUOTENAME(@credential);
    EXEC sys.sp_executesql @statement;
  END`;

export const addLoginCredential = (login: string, credential: string): string =>
  `ALTER LOGIN ${quoteName(login)} ADD CREDENTIAL ${quoteName(credential)}`;

/** In master. */
export const createDatabase = (database: string): string => `CREATE DATABASE ${quoteName(database)}`;

/** In the environment's database. Conditional, so a retry after a crash finishes what the first attempt began. */
export const CREATE_TABLES = `
  IF OBJECT_ID(N'dbo.cmk_rows', N'U') IS NULL
    CREATE TABLE dbo.cmk_rows (
      id INT IDENTITY(1, 1) NOT NULL PRIMARY KEY,
      text NVARCHAR(4000) NOT NULL,
      created_at DATETIME2(3) NOT NULL);
  IF OBJECT_ID(N'dbo.cmk_key_record', N'U') IS NULL
    CREATE TABLE dbo.cmk_key_record (
      id TINYINT NOT NULL PRIMARY KEY CHECK (id = 1),
      ${KEY_RECORD_COLUMNS});`;

/** In the environment's database: the DEK and the key record that names its encryptor, in one batch. */
export const createEncryptionKey = (encryptor: Encryptor): string => `
  SET XACT_ABORT ON;
  CREATE DATABASE ENCRYPTION KEY WITH ALGORITHM = AES_256 ${encryptionBy(encryptor)};
  ${WRITE_KEY_RECORD}`;

/** In the environment's database: the DEK re-wrapped by another encryptor (no page is rewritten), and the record. */
export const changeEncryptor = (encryptor: Encryptor): string => `
  SET XACT_ABORT ON;
  ALTER DATABASE ENCRYPTION KEY ${encryptionBy(encryptor)};
  ${WRITE_KEY_RECORD}`;

/** In the environment's database: the record alone, when the DEK is already under the right encryptor. */
export const writeKeyRecord = (): string => `
  SET XACT_ABORT ON;
  ${WRITE_KEY_RECORD}`;

/**
 * In the environment's database: a new DEK under the current encryptor; SQL Server re-encrypts every page in the
 * background (encryption_state 4 until done). Microsoft documents REGENERATE and ENCRYPTION BY as alternatives for
 * SQL Server (the combined form is documented for Parallel Data Warehouse only), so the engine never combines them.
 */
export const regenerateEncryptionKey = (): string => `
  SET XACT_ABORT ON;
  ALTER DATABASE ENCRYPTION KEY REGENERATE WITH ALGORITHM = AES_256;
  ${WRITE_KEY_RECORD}`;

/** In master. Starts the background encryption scan (encryption_state 2 until done). */
export const setEncryptionOn = (database: string): string => `ALTER DATABASE ${quoteName(database)} SET ENCRYPTION ON`;

/** In master. */
export const backupLog = (database: string, path: string): string =>
  `BACKUP LOG ${quoteName(database)} TO DISK = ${quoteString(path)}`;

/** In the environment's database. The server stamps created_at; the text is a parameter, never part of the SQL. */
export const INSERT_ROW = `
  INSERT INTO dbo.cmk_rows (text, created_at)
  OUTPUT inserted.id, inserted.text, inserted.created_at
  VALUES (@text, SYSUTCDATETIME())`;

// ------------------------------------------------------------------------------------- offline and backups
//
// What must outlive an offline or restored environment database lives in the engine's control database: the offline
// mark with a copy of the key record (an OFFLINE database cannot be queried), the backups, a restore in progress, and
// files that DROP DATABASE leaves behind. Tenant and environment IDs, timestamps, thumbprints and paths only.

/** In master. The control database, made on first use; its name is a parameter for the test, quoted for the DDL. */
export const createControlDatabase = (name: string): string => `IF DB_ID(@database) IS NULL CREATE DATABASE ${quoteName(name)}`;

/** In the control database. Conditional, so every engine process may run it on first use. */
export const CREATE_CONTROL_TABLES = `
  IF OBJECT_ID(N'dbo.cmk_offline', N'U') IS NULL
    CREATE TABLE dbo.cmk_offline (
      tenant NVARCHAR(63) NOT NULL,
      env NVARCHAR(63) NOT NULL,
      locked_at NVARCHAR(40) NOT NULL,
      delete_at NVARCHAR(40) NOT NULL,
      ${KEY_RECORD_COLUMNS},
      CONSTRAINT pk_cmk_offline PRIMARY KEY (tenant, env));
  IF OBJECT_ID(N'dbo.cmk_backups', N'U') IS NULL
    CREATE TABLE dbo.cmk_backups (
      tenant NVARCHAR(63) NOT NULL,
      env NVARCHAR(63) NOT NULL,
      id NVARCHAR(63) NOT NULL,
      path NVARCHAR(1024) NOT NULL,
      created_at NVARCHAR(40) NOT NULL,
      size_bytes BIGINT NULL,
      record_thumbprint NVARCHAR(128) NOT NULL,
      record_updated_at NVARCHAR(40) NOT NULL,
      CONSTRAINT pk_cmk_backups PRIMARY KEY (tenant, env, id));
  IF OBJECT_ID(N'dbo.cmk_restores', N'U') IS NULL
    CREATE TABLE dbo.cmk_restores (
      tenant NVARCHAR(63) NOT NULL,
      env NVARCHAR(63) NOT NULL,
      backup_id NVARCHAR(63) NOT NULL,
      ${KEY_RECORD_COLUMNS},
      CONSTRAINT pk_cmk_restores PRIMARY KEY (tenant, env));
  IF OBJECT_ID(N'dbo.cmk_leftover_files', N'U') IS NULL
    CREATE TABLE dbo.cmk_leftover_files (
      physical_name NVARCHAR(520) NOT NULL,
      tenant NVARCHAR(63) NOT NULL,
      env NVARCHAR(63) NOT NULL,
      recorded_at NVARCHAR(40) NOT NULL,
      CONSTRAINT pk_cmk_leftover_files PRIMARY KEY (physical_name));`;

/** In the control database. The key record as it was when the database went offline, with the mark. */
export const READ_OFFLINE_MARK = `
  SELECT locked_at, delete_at, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at
    FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env`;

export const LIST_OFFLINE = `SELECT tenant, env, locked_at, delete_at FROM dbo.cmk_offline ORDER BY delete_at, tenant, env`;

/** In the control database. A repeat keeps the first mark. */
export const WRITE_OFFLINE_MARK = `
  IF NOT EXISTS (SELECT 1 FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env)
    INSERT INTO dbo.cmk_offline (tenant, env, locked_at, delete_at, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at)
    VALUES (@tenant, @env, @locked_at, @delete_at, @kind, @name, @version, @thumbprint, @encryptor_type, @encryptor_name, @updated_at)`;

export const DELETE_OFFLINE_MARK = `DELETE FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env`;

/** In master. Ends every session in the database (TDE drops the DEK from memory only when the database closes). */
export const setOffline = (database: string): string => `ALTER DATABASE ${quoteName(database)} SET OFFLINE WITH ROLLBACK IMMEDIATE`;

/** In master. SQL Server unwraps the DEK with its encryptor in master to open the database again. */
export const setOnline = (database: string): string => `ALTER DATABASE ${quoteName(database)} SET ONLINE`;

/**
 * In master. Online: every other session ended, then dropped (data and log files deleted). Offline: dropped as it is —
 * SQL Server then leaves the files on disk ("if the database, or any one of its files, is offline when dropped, the
 * disk files are not deleted"); the engine records them first (RECORD_LEFTOVER_FILE).
 */
export const dropDatabase = (database: string, online: boolean): string =>
  online ? `ALTER DATABASE ${quoteName(database)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE ${quoteName(database)};` : `DROP DATABASE ${quoteName(database)}`;

/** In the control database. */
export const RECORD_LEFTOVER_FILE = `
  IF NOT EXISTS (SELECT 1 FROM dbo.cmk_leftover_files WHERE physical_name = @physical_name)
    INSERT INTO dbo.cmk_leftover_files (physical_name, tenant, env, recorded_at) VALUES (@physical_name, @tenant, @env, @recorded_at)`;

/** In master. msdb's history of the database's backups (file names, sizes, dates). */
export const DELETE_BACKUP_HISTORY = `EXEC msdb.dbo.sp_delete_database_backuphistory @database_name = @database`;

/** In the control database. Every backup of the environment, finished or not (destroy deletes them all). */
export const BACKUP_FILES = `SELECT id, path FROM dbo.cmk_backups WHERE tenant = @tenant AND env = @env ORDER BY id`;

/**
 * In the control database. Finished backups only (size known), oldest first, with the key record each one holds
 * (its thumbprint and updated_at: a restored database's record is exactly that row).
 */
export const LIST_BACKUPS = `
  SELECT id, path, created_at, size_bytes, record_thumbprint, record_updated_at FROM dbo.cmk_backups
   WHERE tenant = @tenant AND env = @env AND size_bytes IS NOT NULL ORDER BY created_at, id`;

/**
 * In the control database: the backup file, then its row. xp_delete_file (what maintenance plans' cleanup runs) is
 * undocumented; it deletes only files whose header is a SQL Server backup's, and says nothing when it deletes none.
 */
export const DELETE_BACKUP_FILE = `
  EXEC master.sys.xp_delete_file 0, @path;
  DELETE FROM dbo.cmk_backups WHERE tenant = @tenant AND env = @env AND id = @id`;

/** In the control database. Written before BACKUP DATABASE, so no file the engine makes is ever unknown to destroy. */
export const START_BACKUP = `
  INSERT INTO dbo.cmk_backups (tenant, env, id, path, created_at, size_bytes, record_thumbprint, record_updated_at)
  VALUES (@tenant, @env, @id, @path, @created_at, NULL, @record_thumbprint, @record_updated_at)`;

/** In master. The path and the backup set's name are parameters. COPY_ONLY: the log chain of the DBA's backups stays as it is. */
export const backupDatabase = (database: string): string =>
  `BACKUP DATABASE ${quoteName(database)} TO DISK = @path WITH COPY_ONLY, CHECKSUM, FORMAT, INIT, NAME = @name`;

/** In the control database: the size msdb recorded for the backup set (bytes on disk), which makes the backup visible. */
export const FINISH_BACKUP = `
  UPDATE dbo.cmk_backups
     SET size_bytes = (SELECT TOP (1) CONVERT(bigint, COALESCE(bs.compressed_backup_size, bs.backup_size))
                         FROM msdb.dbo.backupset AS bs
                        WHERE bs.database_name = @database AND bs.name = @id
                        ORDER BY bs.backup_set_id DESC)
  OUTPUT inserted.size_bytes
   WHERE tenant = @tenant AND env = @env AND id = @id`;

/** In the control database: the protector a restored database must end under, written before the RESTORE. */
export const READ_PENDING_RESTORE = `
  SELECT backup_id, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at
    FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env`;

export const WRITE_PENDING_RESTORE = `
  DELETE FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env;
  INSERT INTO dbo.cmk_restores (tenant, env, backup_id, kind, name, version, thumbprint, encryptor_type, encryptor_name, updated_at)
  VALUES (@tenant, @env, @backup_id, @kind, @name, @version, @thumbprint, @encryptor_type, @encryptor_name, @updated_at)`;

export const DELETE_PENDING_RESTORE = `DELETE FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env`;

/** In the control database: what destroy removes last, the mark among it (so listOffline shows it until then). */
export const FORGET_ENVIRONMENT = `
  DELETE FROM dbo.cmk_restores WHERE tenant = @tenant AND env = @env;
  DELETE FROM dbo.cmk_offline WHERE tenant = @tenant AND env = @env`;

/**
 * In master, one batch: exclusive access, the backup in place of the database, then everyone back. The backup's DEK
 * comes with it, still wrapped by the encryptor it was under when the backup was taken (which must be in master). A
 * failed RESTORE puts the database back to MULTI_USER before the error is passed on.
 */
export const restoreDatabase = (database: string): string => `
  ALTER DATABASE ${quoteName(database)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE;
  BEGIN TRY
    RESTORE DATABASE ${quoteName(database)} FROM DISK = @path WITH REPLACE;
  END TRY
  BEGIN CATCH
    ALTER DATABASE ${quoteName(database)} SET MULTI_USER;
    THROW;
  END CATCH;
  ALTER DATABASE ${quoteName(database)} SET MULTI_USER;`;

// ------------------------------------------------------------------------------------- several servers (fleet)
//
// database/sqlserver-fleet.ts records on which server each environment lives in that server's control database,
// next to the database itself: the servers' own rows are the mapping, so any process rebuilds it by asking them.

/** In the control database. Conditional: every process may run it on first use. */
export const CREATE_ENVIRONMENTS_TABLE = `
  IF OBJECT_ID(N'dbo.cmk_environments', N'U') IS NULL
    CREATE TABLE dbo.cmk_environments (
      tenant NVARCHAR(63) NOT NULL,
      env NVARCHAR(63) NOT NULL,
      server_name NVARCHAR(63) NOT NULL,
      region NVARCHAR(63) NULL,
      placed_at NVARCHAR(40) NOT NULL,
      CONSTRAINT pk_cmk_environments PRIMARY KEY (tenant, env));`;

/**
 * In the control database: whether this server claims the environment — by its placement row (with the server name
 * the row was written for), or by holding its database (one made before placements were recorded). Always one row.
 */
export const LOCATE_ENVIRONMENT = `
  SELECT e.server_name, e.region, CASE WHEN DB_ID(@database) IS NULL THEN 0 ELSE 1 END AS has_database
    FROM (SELECT 1 AS probe) AS p
    LEFT JOIN dbo.cmk_environments AS e ON e.tenant = @tenant AND e.env = @env`;

/** In the control database: the server's load, as placement compares it. */
export const COUNT_ENVIRONMENTS = `SELECT COUNT(*) AS environments FROM dbo.cmk_environments`;

/**
 * In the control database: the placement row, written only if the environment has none here and the server is below
 * @max_environments (-1: no limit). The range locks make the count and the insert one step against other workers.
 * OUTPUT returns a row exactly when it was written.
 */
export const CLAIM_ENVIRONMENT = `
  INSERT INTO dbo.cmk_environments (tenant, env, server_name, region, placed_at)
  OUTPUT inserted.server_name
  SELECT @tenant, @env, @server_name, NULLIF(@region, N''), @placed_at
   WHERE NOT EXISTS (SELECT 1 FROM dbo.cmk_environments WITH (UPDLOCK, HOLDLOCK) WHERE tenant = @tenant AND env = @env)
     AND (@max_environments < 0 OR (SELECT COUNT(*) FROM dbo.cmk_environments WITH (UPDLOCK, HOLDLOCK)) < @max_environments)`;

/** In the control database: after destroy, the last trace of the environment on this server. */
export const FORGET_PLACEMENT = `DELETE FROM dbo.cmk_environments WHERE tenant = @tenant AND env = @env`;

/** In the control database: environments recorded for another region (on a server shared by regions). */
export const OTHER_REGIONS_ENVIRONMENTS = `SELECT tenant, env FROM dbo.cmk_environments WHERE region IS NOT NULL AND region <> @region`;
