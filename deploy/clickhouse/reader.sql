-- Driftway's read-only user, for a ClickHouse server you run yourself (Kubernetes: the
-- manifests in deploy/k8s expect an external server). The same user as
-- users.d/driftway-reader.xml, which docker-compose.yml mounts; keep the two the same.
-- Run once as an administrator, with a password of your own in place of CHANGE-ME, then put
-- https://driftway_reader:<password>@<host>:8443 in DRIFTWAY_QUERY__CLICKHOUSE_DSN.
-- changeable_in_readonly needs settings_constraints_replace_previous (config.d/driftway.xml).

CREATE SETTINGS PROFILE IF NOT EXISTS driftway_reader SETTINGS
    readonly = 1,
    final = 1,
    allow_ddl = 0,
    allow_introspection_functions = 0,
    max_execution_time = 60 MIN 0.001 MAX 60 CHANGEABLE_IN_READONLY,
    timeout_overflow_mode = 'throw',
    max_memory_usage = 2147483648 MIN 1048576 MAX 2147483648 CHANGEABLE_IN_READONLY,
    max_result_rows = 1000000 MIN 1 MAX 1000000 CHANGEABLE_IN_READONLY,
    result_overflow_mode = 'throw';

CREATE USER IF NOT EXISTS driftway_reader IDENTIFIED WITH sha256_password BY 'CHANGE-ME'
    SETTINGS PROFILE 'driftway_reader';

-- SELECT on the monitoring database only: no source grants (FILE, URL, REMOTE, S3, MYSQL,
-- POSTGRES...), no CREATE TEMPORARY TABLE, so no table function reads outside it.
GRANT SELECT ON driftway.* TO driftway_reader;
