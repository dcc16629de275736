#!/usr/bin/env bash
# Entrypoint of jdkit/postgres (Debian's PostgreSQL on a debootstrapped base).
#
# Honours the environment contract of the official postgres image, so a
# provider can use either image with the same settings:
#   POSTGRES_PASSWORD  superuser password (required unless
#                      POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER      superuser name (default: postgres)
#   POSTGRES_DB        database created on first start (default: $POSTGRES_USER)
#   POSTGRES_INITDB_ARGS  extra initdb arguments (split on white space)
#   POSTGRES_HOST_AUTH_METHOD  pg_hba method for TCP clients (default: scram-sha-256)
#   POSTGRES_*_FILE    read the value of any of the first three from a file
#   PGDATA             data directory (default set by the image)
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz  run once after initdb
# On first start (empty PGDATA) it runs initdb, lets TCP clients in with
# password authentication on every address, creates the database and runs the
# init scripts on a socket-only temporary server; then it execs the server as
# the postgres user, so signals reach postgres directly.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }

# file_env VAR [DEFAULT]: VAR from the environment, or the content of the
# file named by VAR_FILE, or DEFAULT.
file_env() {
    local var="$1" default="${2:-}" file_var="${1}_FILE" value
    if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
        log "error: both $var and $file_var are set; use one"
        exit 1
    fi
    value="$default"
    if [[ -n "${!var:-}" ]]; then
        value="${!var}"
    elif [[ -n "${!file_var:-}" ]]; then
        value="$(<"${!file_var}")"
    fi
    export "$var=$value"
    unset "$file_var"
}

# `docker run IMAGE -c fsync=off` means `postgres -c fsync=off`.
if [[ "${1:-}" == -* ]]; then
    set -- postgres "$@"
fi

# Anything but the server itself runs as given (e.g. `bash`, `psql`).
if [[ "${1:-}" != postgres ]]; then
    exec "$@"
fi

: "${PGDATA:?PGDATA must be set}"

if [[ "$(id -u)" == 0 ]]; then
    # The data directory may be a fresh volume or tmpfs owned by root.
    mkdir -p "$PGDATA" /var/run/postgresql
    chmod 00700 "$PGDATA"
    chmod 03775 /var/run/postgresql
    find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
    exec setpriv --reuid=postgres --regid=postgres --init-groups \
        env HOME=/var/lib/postgresql "${BASH_SOURCE[0]}" "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
        log "error: the database is uninitialized and POSTGRES_PASSWORD is not set;"
        log "       set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust to allow"
        log "       every connection without a password, which is unsafe)"
        exit 1
    fi

    read -r -a initdb_args <<<"${POSTGRES_INITDB_ARGS:-}"
    log "initializing $PGDATA for user $POSTGRES_USER"
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        ${initdb_args[@]+"${initdb_args[@]}"}

    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

    # A temporary server on the Unix socket only, so no client can connect
    # before initialization is complete.
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p ${PGPORT:-5432}" start >/dev/null
    export PGUSER="$POSTGRES_USER" PGPASSWORD="$POSTGRES_PASSWORD"
    psql=(psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --dbname postgres)
    if [[ "$POSTGRES_DB" != postgres ]]; then
        "${psql[@]}" --set db="$POSTGRES_DB" -q <<<'CREATE DATABASE :"db";'
        log "created database $POSTGRES_DB"
    fi
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                if [[ -x "$f" ]]; then
                    log "running $f"; "$f"
                else
                    log "sourcing $f"
                    # shellcheck source=/dev/null
                    . "$f"
                fi ;;
            *.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) log "running $f"; gzip -dc "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
            *) log "ignoring $f" ;;
        esac
    done
    shopt -u nullglob
    unset PGPASSWORD
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    log "initialization complete; starting the server"
fi

exec "$@"
