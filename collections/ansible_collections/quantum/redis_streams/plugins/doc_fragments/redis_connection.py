# The `connection` option every Redis module of this collection shares (plugins/module_utils/
# redis_connection.py holds its argument spec): documented once, here.
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  connection:
    description:
      - How to reach Redis (the inventory's C(pipeline.redis)). The same option, with the same
        suboptions, in every Redis module of this project.
      - Omitted, the defaults of its suboptions apply (M(quantum.redis_streams.redis_stream_info) uses
        O(quantum.redis_streams.redis_stream_info#module:pipeline)'s C(redis) first).
    type: dict
    default: {}
    suboptions:
      host:
        description: Host name or address of the Redis server. Ignored with O(connection.sentinel).
        type: str
        default: 127.0.0.1
      port:
        description: TCP port of the Redis server. Ignored with O(connection.sentinel).
        type: int
        default: 6379
      unix_socket:
        description: Path of a Unix socket to connect to instead of O(connection.host) and O(connection.port).
        type: path
      db:
        description: Database number.
        type: int
        default: 0
      username:
        description:
          - ACL user name (Redis 6 and later); needs O(connection.password).
          - The user needs the permissions listed in C(docs/acl.md). A command its ACL denies,
            also inside a server-side script, fails the module with one sentence naming the
            command, the user and the rule to add (for example C(+xinfo|consumers)).
        type: str
      password:
        description: Password, for the ACL user or for C(requirepass). Never shown in any output.
        type: str
      tls:
        description: Connect with TLS. Cannot be combined with O(connection.unix_socket).
        type: bool
        default: false
      tls_ca_file:
        description: CA certificate file on the target, to verify the server; needs O(connection.tls=true).
        type: path
      tls_cert_file:
        description: Client certificate file, on the target, given with O(connection.tls_key_file).
        type: path
      tls_key_file:
        description: Private key of O(connection.tls_cert_file), on the target.
        type: path
      tls_verify:
        description: Verify the server's certificate and host name.
        type: bool
        default: true
      connect_timeout:
        description: Seconds to wait for the TCP connection to be established.
        type: float
        default: 5.0
      socket_timeout:
        description: Seconds to wait for each answer, and for the TLS handshake.
        type: float
        default: 10.0
      sentinel:
        description:
          - Find the primary through Redis Sentinel instead of O(connection.host) and O(connection.port)
            (the inventory's C(pipeline.redis.sentinel)).
          - The sentinels are asked once, at the start, for the primary of O(connection.sentinel.service_name)
            (the first sentinel that answers and knows it as an up primary names it; same timeouts, one
            attempt), then the module connects directly to that address with O(connection.username),
            O(connection.password) and O(connection.db); it never follows a failover silently.
          - Fencing - before every write (each reclaim batch, retirement, governor reset) the module checks
            with C(ROLE) that the node is still the primary, and that the first sentinel that answers
            C(SENTINEL GET-MASTER-ADDR-BY-NAME) still names it (a failover names the promoted replica
            seconds before the old primary is demoted); otherwise it stops with one sentence saying what
            it had done and that nothing more was written, and a new run finishes against the new primary.
            A C(READONLY) reply is reported the same way. The data-node user then also needs C(+role), the
            sentinel user C(+sentinel|masters) and C(+sentinel|get-master-addr-by-name) (C(docs/acl.md)).
          - Writes the old primary acknowledges before the sentinel asked first knows of a failover are
            lost with it; no entry is lost by that (a lost move leaves the entry with the dead consumer)
            and a new run finishes the work (C(docs/interfaces.md)).
          - Results that name the endpoint say C(primary HOST:PORT of Sentinel service NAME).
          - Cannot be combined with O(connection.unix_socket) or O(connection.tls).
        type: dict
        suboptions:
          hosts:
            description: Required. The sentinels, as C(host:port) strings (C([::1]:26379) for IPv6).
            type: list
            elements: str
          service_name:
            description:
              - Required. The name the sentinels monitor the primary by (C(sentinel monitor NAME ...)).
            type: str
          username:
            description:
              - ACL user on the sentinels themselves (not the data nodes).
              - Needs O(connection.sentinel.password).
            type: str
          password:
            description:
              - Password on the sentinels (C(requirepass) or the ACL user's). Never shown in any output.
            type: str
"""
