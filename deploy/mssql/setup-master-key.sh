#!/bin/bash
# master's database master key, which protects the TDE certificates cmk creates in master (docs/SQLSERVER.md).
# The service master key also encrypts it, so the random password made here is never needed again. Idempotent.
# Run by the mssql-setup service of docker-compose.yml (the SQL Server image, for sqlcmd).
set -euo pipefail
: "${MSSQL_SA_PASSWORD:?MSSQL_SA_PASSWORD is required}"
password="Cmk-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')-9a"
/opt/mssql-tools18/bin/sqlcmd -C -b -S mssql -U sa -P "$MSSQL_SA_PASSWORD" -d master -Q "
IF NOT EXISTS (SELECT 1 FROM sys.symmetric_keys WHERE name = N'##MS_DatabaseMasterKey##')
  CREATE MASTER KEY ENCRYPTION BY PASSWORD = N'$password';"
echo "cmk: master has a database master key"
