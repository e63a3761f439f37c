#!/usr/bin/env bash
# Start the local PostgreSQL and RabbitMQ if they are down, then wait until both accept connections.
set -euo pipefail
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 120); do port_open "$1" && return 0; sleep 0.5; done
  echo "ERROR: $2 is not listening on 127.0.0.1:$1 after 60 s" >&2; exit 1
}
if ! port_open 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
fi
wait_port 5432 PostgreSQL
if ! port_open 5672; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
fi
wait_port 5672 RabbitMQ
for _ in $(seq 1 60); do rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null
echo "PostgreSQL and RabbitMQ are up"
