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

// ------------------------------------------------------------------------------------------------------ reads

/** In master. Recovery model and log chain decide whether a REGENERATE needs a log backup first (see sqlserver.ts). */
export const FIND_DATABASE = `
  SELECT d.name, d.recovery_model_desc AS recovery_model,
         CONVERT(varchar(40), rs.last_log_backup_lsn) AS last_log_backup_lsn
    FROM sys.databases AS d
    LEFT JOIN sys.database_recovery_status AS rs ON rs.database_id = d.database_id
   WHERE d.name = @database`;

/** In master. No row: the database has no DEK. Thumbprints as hex text, so they compare as strings. */
export const ENCRYPTION_STATE = `
  SELECT encryption_state, percent_complete, CONVERT(varchar(66), encryptor_thumbprint, 2) AS encryptor_thumbprint
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
      kind NVARCHAR(16) NOT NULL,
      name NVARCHAR(128) NOT NULL,
      version NVARCHAR(128) NOT NULL,
      thumbprint NVARCHAR(128) NOT NULL,
      encryptor_type NVARCHAR(16) NOT NULL,
      encryptor_name NVARCHAR(128) NOT NULL,
      updated_at NVARCHAR(40) NOT NULL);`;

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
