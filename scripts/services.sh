#!/usr/bin/env bash
# scripts/services.sh: make sure every service the test suite needs is installed and running.
#
#   bash scripts/services.sh
#
# Idempotent; works on a fresh Debian 12 machine (as root, no TTY or stdin) and on a machine where
# everything already runs (then it takes well under a couple of seconds and changes nothing).
# See /work/shared/services.md for the services, their addresses and start commands.
#
# For each service: install the Debian package if its binary is missing (one `apt-get update`,
# one `apt-get install -y`), start it with the documented start command if its port is closed,
# then wait (bounded) until it accepts connections. A running service is never restarted, with
# two exceptions: PostgreSQL is restarted once if `wal_level = logical` or `max_connections >= 200`
# has to be set (both are applied with ALTER SYSTEM and a single restart), and MariaDB is restarted
# once if binary logging is not on in ROW format with FULL row images (the binlog relay source needs
# them; they are written to /etc/mysql/mariadb.conf.d/60-outbox-binlog.cnf).
#
# Environment: SERVICES_WAIT_SECS (default 60, RabbitMQ gets twice that) bounds each wait.
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive
WAIT_SECS="${SERVICES_WAIT_SECS:-60}"

die() { echo "services.sh: ERROR: $*" >&2; exit 1; }
say() { echo "$*"; }

if [[ $(id -u) -ne 0 ]]; then
	die "must run as root (it may install packages and start services)"
fi

# Serialize concurrent runs (several engineers and CI share these services), so that two runs never
# both start a service or both restart PostgreSQL. Every command that may leave a daemon behind runs
# with `9>&-` so that the daemon does not inherit (and hold forever) the lock.
LOCK=/run/lock/outbox-test-services.lock
[[ -d /run/lock ]] || LOCK=/tmp/outbox-test-services.lock
exec 9>"$LOCK"
if command -v flock >/dev/null 2>&1; then
	flock -w 600 9 || die "could not take $LOCK within 600 s (another services.sh is stuck?)"
fi

# port_open PORT: true if 127.0.0.1:PORT accepts a TCP connection.
port_open() {
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# wait_for NAME SECONDS CMD...: poll CMD every 0.5 s until it succeeds; fail after SECONDS.
wait_for() {
	local name=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			die "$name: not accepting connections after ${secs}s (check its log)"
		fi
		sleep 0.5
	done
}

# ---------------------------------------------------------------------------------------------
# 1. Install whatever is missing (one apt-get update, one apt-get install).
# ---------------------------------------------------------------------------------------------
missing=()
have_pg_server() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null && command -v pg_ctlcluster >/dev/null && command -v psql >/dev/null; }
have_pg_server || missing+=(postgresql)
{ [[ -x /usr/sbin/mariadbd ]] && command -v mariadb >/dev/null; } || missing+=(mariadb-server)
{ command -v redis-server >/dev/null && command -v redis-cli >/dev/null; } || missing+=(redis-server)
[[ -x /usr/sbin/rabbitmq-server ]] || missing+=(rabbitmq-server)
[[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
[[ -x /usr/sbin/nats-server ]] || missing+=(nats-server)
# `go test -race` needs cgo, hence a C compiler.
command -v gcc >/dev/null || missing+=(gcc libc6-dev)

if ((${#missing[@]})); then
	say "installing: ${missing[*]}"
	apt-get update -q >/dev/null || die "apt-get update failed"
	apt-get install -y -q "${missing[@]}" >/dev/null 9>&- || die "apt-get install -y ${missing[*]} failed"
fi

# ---------------------------------------------------------------------------------------------
# 2. Go toolchain.
# ---------------------------------------------------------------------------------------------
if ! command -v go >/dev/null 2>&1; then
	[[ -x /usr/local/go/bin/go ]] || die "go: not found in PATH nor at /usr/local/go/bin/go (install Go from https://go.dev/dl/)"
	export PATH="$PATH:/usr/local/go/bin"
fi
say "go: $(go env GOVERSION) ($(command -v go))"

# ---------------------------------------------------------------------------------------------
# 3. PostgreSQL 15: 127.0.0.1:5432, trust auth, wal_level=logical, max_connections>=200,
#    databases test, postgres, root.
# ---------------------------------------------------------------------------------------------
pg_ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
[[ -n $pg_ver ]] || die "postgres: no cluster under /etc/postgresql (try: pg_createcluster 15 main)"
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2; }
pg_psql() { psql -X -w -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres -At "$@"; }
# One round trip (keeps the everything-is-up path fast): wal_level|max_connections|missing databases.
pg_status() {
	pg_psql -F '|' -c "select current_setting('wal_level'), current_setting('max_connections'),
		coalesce((select string_agg(d, ' ') from unnest(array['test', 'postgres', 'root']) as d
			where d not in (select datname from pg_database)), '')"
}

pg_state=up
if ! status=$(pg_status 2>/dev/null); then
	if ! pg_ready; then
		pg_state=started
		pg_ctlcluster --skip-systemctl-redirect "$pg_ver" main start 9>&- || true
		wait_for postgres "$WAIT_SECS" pg_ready
	fi
	if ! status=$(pg_status 2>/dev/null); then
		# Trust auth for local TCP and the socket (a fresh Debian install has peer/scram). Reload only.
		hba="/etc/postgresql/$pg_ver/main/pg_hba.conf"
		[[ -f $hba ]] || die "postgres: cannot connect as postgres over TCP and $hba is missing"
		sed -i '1i local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
		pg_ctlcluster --skip-systemctl-redirect "$pg_ver" main reload 9>&-
		wait_for "postgres (trust auth for postgres@127.0.0.1)" 15 pg_status
		status=$(pg_status)
		pg_state="$pg_state, trust auth set"
	fi
fi
IFS='|' read -r wal_level max_conn pg_missing_dbs <<<"$status"

pg_changed=()
if [[ $wal_level != logical ]]; then
	pg_psql -c 'ALTER SYSTEM SET wal_level = logical'
	pg_changed+=("wal_level=logical")
fi
if ((max_conn < 200)); then
	pg_psql -c 'ALTER SYSTEM SET max_connections = 200'
	pg_changed+=("max_connections=200")
fi
if ((${#pg_changed[@]})); then
	say "postgres: restarting once to apply ${pg_changed[*]}"
	pg_ctlcluster --skip-systemctl-redirect "$pg_ver" main restart 9>&-
	wait_for postgres "$WAIT_SECS" pg_ready
	wait_for postgres "$WAIT_SECS" pg_status
	IFS='|' read -r wal_level max_conn pg_missing_dbs <<<"$(pg_status)"
	[[ $wal_level == logical ]] || die "postgres: wal_level is still '$wal_level' after restart"
	((max_conn >= 200)) || die "postgres: max_connections is still $max_conn after restart"
	pg_state="$pg_state, restarted"
fi

for db in $pg_missing_dbs; do
	pg_psql -c "CREATE DATABASE \"$db\""
	pg_state="$pg_state, created db $db"
done
say "postgres: $pg_state (wal_level=$wal_level, max_connections=$max_conn)"

# ---------------------------------------------------------------------------------------------
# 4. MariaDB: 127.0.0.1:3306, root with empty password, database test, binary log on (ROW, FULL).
# ---------------------------------------------------------------------------------------------
my_tcp() { mariadb -h 127.0.0.1 -P 3306 -u root --connect-timeout=5 -N -B "$@"; }
my_ping() { mariadb-admin --connect-timeout=2 -h 127.0.0.1 -P 3306 -u root --silent ping; }
# One round trip: log_bin|binlog_format|binlog_row_image.
my_binlog() { my_tcp -e "select concat_ws('|', @@log_bin + 0, @@binlog_format, @@binlog_row_image)"; }
my_state=up
# Fast path: one query that both logs in and tells whether database test exists.
if ! my_has_test=$(my_tcp -e "show databases like 'test'" 2>/dev/null); then
	if ! port_open 3306; then
		my_state=started
		install -d -o mysql -g mysql /run/mysqld
		# mariadbd refuses to run as root: a fresh Debian config leaves `user` to systemd.
		if ! my_print_defaults --mysqld 2>/dev/null | grep -q '^--user='; then
			[[ -d /etc/mysql/mariadb.conf.d ]] || die "mariadb: no user= in its config and no /etc/mysql/mariadb.conf.d"
			printf '[mysqld]\nuser = mysql\nbind-address = 127.0.0.1\nport = 3306\n' >/etc/mysql/mariadb.conf.d/60-outbox-tests.cnf
		fi
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 9>&-
		wait_for mariadb "$WAIT_SECS" port_open 3306
	fi
	wait_for mariadb 30 my_ping
	# Root with an empty password over TCP (a fresh Debian install has unix_socket only).
	if ! my_tcp -e 'select 1' >/dev/null 2>&1; then
		mariadb -u root --protocol=socket -e "
			ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
			CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
			GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
			FLUSH PRIVILEGES;" || die "mariadb: cannot set up root with an empty password"
		my_tcp -e 'select 1' >/dev/null || die "mariadb: root with an empty password still cannot log in over TCP"
		my_state="$my_state, root password set"
	fi
	my_has_test=$(my_tcp -e "show databases like 'test'")
fi
if [[ -z $my_has_test ]]; then
	my_tcp -e 'CREATE DATABASE IF NOT EXISTS test'
	my_state="$my_state, created db test"
fi

# Binary log for the binlog relay source (relay/binlog): log_bin, binlog_format=ROW,
# binlog_row_image=FULL, a server_id; binlogs expire after a day and rotate at 64 MiB so that
# expiry can purge them. Written once, then one graceful restart.
my_cnf_dir=/etc/mysql/mariadb.conf.d
my_binlog_cnf=$my_cnf_dir/60-outbox-binlog.cnf
binlog=$(my_binlog)
if [[ $binlog != "1|ROW|FULL" ]]; then
	say "mariadb: binary log is '$binlog' (log_bin|binlog_format|binlog_row_image); enabling it"
	install -d "$my_cnf_dir"
	cat >"$my_binlog_cnf" <<'CNF'
# Written by scripts/services.sh: the binlog relay source (relay/binlog) tails row events.
[mysqld]
server_id                  = 1
log_bin                    = mariadb-bin
binlog_format              = ROW
binlog_row_image           = FULL
binlog_row_metadata        = FULL
binlog_expire_logs_seconds = 86400
max_binlog_size            = 64M
CNF
	# Debian's own my.cnf includes the directory; a trimmed one (as on these machines) may not.
	if ! grep -Eq '^[[:space:]]*!includedir[[:space:]]+/etc/mysql/mariadb\.conf\.d/?[[:space:]]*$' /etc/mysql/my.cnf; then
		printf '\n!includedir %s/\n' "$my_cnf_dir" >>/etc/mysql/my.cnf
	fi
	my_print_defaults --mysqld | grep -q '^--binlog[-_]format=ROW' || die "mariadb: $my_binlog_cnf is not read (check /etc/mysql/my.cnf)"
	say "mariadb: restarting once to apply $my_binlog_cnf"
	mariadb-admin --connect-timeout=5 -h 127.0.0.1 -P 3306 -u root shutdown || die "mariadb: shutdown failed"
	# The port closes before the process has finished shutting down: wait for the process too,
	# or the start below would find it still running and do nothing.
	my_stopped() { ! port_open 3306 && ! start-stop-daemon --status --exec /usr/sbin/mariadbd; }
	wait_for "mariadb (shutdown)" "$WAIT_SECS" my_stopped
	install -d -o mysql -g mysql /run/mysqld
	start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 9>&-
	wait_for mariadb "$WAIT_SECS" port_open 3306
	wait_for mariadb 30 my_ping
	binlog=$(my_binlog)
	[[ $binlog == "1|ROW|FULL" ]] || die "mariadb: binary log is still '$binlog' after restart (see /var/log/mysql/error.log)"
	my_state="$my_state, binlog enabled, restarted"
fi
say "mariadb: $my_state (log_bin|binlog_format|binlog_row_image=$binlog)"

# ---------------------------------------------------------------------------------------------
# 5. Redis, RabbitMQ, Mosquitto, NATS (JetStream): start if their port is closed.
# ---------------------------------------------------------------------------------------------
# ensure NAME PORT WAIT_SECS START_CMD...
ensure() {
	local name=$1 port=$2 secs=$3
	shift 3
	if port_open "$port"; then
		say "$name: up"
		return
	fi
	"$@" >/dev/null 2>&1 9>&- || echo "$name: start command exited non-zero; waiting for the port anyway" >&2
	wait_for "$name" "$secs" port_open "$port"
	say "$name: started"
}

if ! port_open 6379; then install -d /var/lib/redis /var/log/redis; fi
ensure redis 6379 "$WAIT_SECS" \
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log

ensure rabbitmq 5672 $((WAIT_SECS * 2)) rabbitmq-server -detached

if ! port_open 1883; then install -d -o mosquitto -g mosquitto /run/mosquitto; fi
ensure mosquitto 1883 "$WAIT_SECS" mosquitto -d -c /etc/mosquitto/mosquitto.conf

if ! port_open 4222; then install -d /var/lib/nats-server; fi
ensure nats 4222 "$WAIT_SECS" \
	start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
