# PostgreSQL 15 from Debian for the fleet example (docker/fleet.compose.yaml,
# docker/fleet-smoke-test): no registry is needed, only Debian's mirror.
# Build context: docker/fleet.
#
#   podman build --format docker --network host -f docker/fleet/postgres.Dockerfile \
#     -t localhost/frontdoor-postgres:15 docker/fleet
#
# On first start (empty $PGDATA) the entrypoint runs initdb and creates the
# role $POSTGRES_USER (password $POSTGRES_PASSWORD or else $PGPASSWORD,
# required, never printed) owning the database $POSTGRES_DB; later starts
# just run postgres. Runs as the Debian user postgres. Mount a volume at
# /var/lib/postgresql/data to keep the data. A demo database, not a tuned
# production one.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# Debian's postgresql-common would create a cluster "main" on install: not
# here, the entrypoint makes its own in $PGDATA.
# Documentation, manual pages and translations are left out (about 70 MB).
RUN export DEBIAN_FRONTEND=noninteractive \
 && printf 'path-exclude=%s\n' '/usr/share/doc/*' '/usr/share/man/*' '/usr/share/locale/*' \
      >/etc/dpkg/dpkg.cfg.d/frontdoor-slim \
 && mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main.conf \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends postgresql-15 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
 && chmod 0700 /var/lib/postgresql/data

COPY postgres-entrypoint /usr/local/bin/postgres-entrypoint

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    POSTGRES_USER=frontdoor \
    POSTGRES_DB=frontdoor
USER postgres
WORKDIR /var/lib/postgresql
EXPOSE 5432
HEALTHCHECK --interval=2s --timeout=3s --start-period=30s --retries=5 \
  CMD pg_isready -q -h 127.0.0.1 -p 5432 || exit 1
# SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for
# every client to leave, and frontdoor replicas stay connected.
STOPSIGNAL SIGINT
ENTRYPOINT ["postgres-entrypoint"]
