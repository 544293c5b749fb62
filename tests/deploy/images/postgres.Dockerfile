# PostgreSQL from Debian's package, with the part of the official image's interface that
# deploy/swarm/stack.yaml uses (POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD_FILE, PGDATA, PGPORT):
# no image registry is reachable where the tests run.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* && install -d -o postgres -g postgres /var/lib/postgresql/data /run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data/pgdata
USER postgres
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
