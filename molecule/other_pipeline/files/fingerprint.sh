#!/bin/sh
# What recover.yml must never change on the shop lab, one line per item, into FILE:
# the generated unit files, the mode file and the lab's Redis configuration (checksums), the
# ACL users with their rules, the password the default user needs, two canary keys.
# Read-only on Redis. Usage: fingerprint.sh PORT FILE (REDISCLI_AUTH: the default user's password).
set -eu
port=$1
out=$2
{
  sha256sum /etc/systemd/system/shop-*.service /etc/shop/sandbox.env /etc/quantum/redis-lab.conf
  redis-cli -p "$port" --no-auth-warning ACL LIST
  redis-cli -p "$port" --no-auth-warning CONFIG GET requirepass
  redis-cli -p "$port" --no-auth-warning HGETALL shop:canary
  redis-cli -p "$port" --no-auth-warning GET other:canary
} > "$out"
cat "$out"
