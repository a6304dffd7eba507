-- One database per Lindung service, so that each service keeps its own data.
-- Only the databases are created here, no tables.
--
-- Mounted into /docker-entrypoint-initdb.d/ by deploy/compose.yaml. The
-- postgres image runs it as POSTGRES_USER (lindung), who therefore owns the
-- databases, and ONLY on first start with an empty data volume. To re-run it,
-- delete that volume (and with it all the services' data):
--   docker compose -f deploy/compose.yaml down
--   docker volume rm lindung_postgres-data

CREATE DATABASE registration;
CREATE DATABASE eligibility;
CREATE DATABASE billing;
CREATE DATABASE notification;
