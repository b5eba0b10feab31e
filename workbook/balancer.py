"""The load balancer in front of two or more gateway nodes: HAProxy, and the configuration it runs with.

``python -m workbook app up --gateways 2`` writes this configuration into its state directory and runs Debian's
``haproxy`` in the foreground as one more process of the app; docker-compose.yml runs the same configuration,
printed by ``python -m workbook.balancer``. What it does:

- listens where one gateway would listen (the app's HTTP port: the address users open), and hands each
  connection to a gateway node (``leastconn``: see the comment in the configuration);
- lets a WebSocket upgrade through and keeps the tunnel open for up to an hour of silence (``timeout tunnel``);
- asks every node ``GET /healthz`` each second and takes a node out after two failed checks (and back in after
  two good ones): a node that was killed is out within about two seconds;
- a connection refused by a node (one that is stopping or has died, before the checks noticed) is retried on
  another node (``retries`` with ``option redispatch``), so a client never sees that node's failure.

Only the standard library here: the app's image runs ``python -m workbook.balancer`` too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HEALTH_PATH = "/healthz"  # reference_app/gateway/app.py answers it
HAPROXY_PACKAGE = "haproxy"
# Debian installs haproxy in /usr/sbin, which is not on an ordinary user's PATH.
SYSTEM_PLACES = (Path("/usr/sbin/haproxy"), Path("/usr/local/sbin/haproxy"))
INSTALL_FIX = "make haproxy (or: sudo apt-get install haproxy)"


@dataclass(frozen=True)
class Node:
    """One gateway node as the balancer sees it: a name (its log lines and the X-Gateway-Node header say it) and
    where it listens."""

    name: str
    host: str
    port: int


class HaproxyMissing(Exception):
    """haproxy is not installed; the message says how to install it."""


def haproxy_binary() -> str:
    """The haproxy program to run, found on the PATH or where Debian puts it; HaproxyMissing if there is none."""
    found = shutil.which(HAPROXY_PACKAGE)
    if found:
        return found
    for place in SYSTEM_PLACES:
        if os.access(place, os.X_OK):
            return str(place)
    raise HaproxyMissing(
        f"two or more gateway nodes need the load balancer haproxy, which is not installed. Fix: {INSTALL_FIX}"
    )


def haproxy_command(config: Path) -> list[str]:
    """haproxy in the foreground (``-db``: no daemon, no master process), so a process manager can watch and stop
    it like any other process (SIGTERM stops it at once). Where it is not installed, the command names it
    ``haproxy``: whoever starts it checks with haproxy_binary() first."""
    try:
        program = haproxy_binary()
    except HaproxyMissing:
        program = HAPROXY_PACKAGE
    return [program, "-db", "-f", str(config)]


@dataclass(frozen=True)
class BalancerTls:
    """TLS at the balancer: ``certificate`` is one PEM file with the chain AND the key (haproxy's format), for
    HTTPS and wss:// towards the clients; towards the nodes, which serve TLS too, it trusts ``ca_file`` only."""

    certificate: Path
    ca_file: Path


def haproxy_config(
    bind_host: str,
    bind_port: int,
    nodes: Sequence[Node],
    *,
    resolver: str | None = None,
    tls: BalancerTls | None = None,
) -> str:
    """The configuration: one frontend on ``bind_host:bind_port``, one backend of ``nodes``.

    ``resolver`` (``host:port`` of a DNS server, Docker's 127.0.0.11:53 in compose) makes haproxy look the nodes'
    names up again while it runs, so a gateway container that restarts with a new address is found again.
    ``tls``: clients connect with TLS, and the balancer connects to the nodes (and checks them) with TLS.
    """
    if not nodes:
        raise ValueError("a balancer needs at least one gateway node")
    names = [node.name for node in nodes]
    if len(set(names)) != len(names):
        raise ValueError(f"the gateway nodes need different names; got {names}")
    dns = (
        f"""
resolvers dns
    nameserver dns {resolver}
    hold valid 10s
"""
        if resolver
        else ""
    )
    lookup = " resolvers dns init-addr libc,none" if resolver else ""

    # Towards a node over TLS: its certificate must be signed by our authority (the health checks use TLS too).
    def to_node(node: Node) -> str:
        # The chain must lead to our authority, and the certificate must be for the name we connect to. HAProxy's
        # verifyhost compares DNS names only, so a node on the loopback address is checked as "localhost".
        name = "localhost" if node.host in ("127.0.0.1", "::1") else node.host
        return f" ssl verify required ca-file {tls.ca_file} verifyhost {name}" if tls else ""

    servers = "\n".join(f"    server {node.name} {node.host}:{node.port}{lookup}{to_node(node)}" for node in nodes)
    bind_tls = f" ssl crt {tls.certificate} alpn http/1.1" if tls else ""
    return f"""\
# The messenger's load balancer: HAProxy in front of {len(nodes)} gateway nodes.
# Written by workbook/balancer.py (python -m workbook app up --gateways N, or python -m workbook.balancer).
# Edits here are lost at the next start: change workbook/balancer.py instead.

global
    # Log lines go to stderr, which the process manager keeps (python -m workbook app logs haproxy).
    log stderr format raw local0 info
    # No maxconn: haproxy derives it from the file-descriptor limit it is given (ulimit -n), whatever the machine.

defaults
    mode http
    log global
    option httplog
    # Only requests that went wrong are logged (and every node taken out or put back), not each request.
    option dontlog-normal
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # After a WebSocket upgrade the connection is a tunnel: it may stay quiet for up to an hour (clients ping
    # every 25 s anyway). Without this, timeout client/server would cut an idle WebSocket after 60 s.
    timeout tunnel 1h
    timeout client-fin 5s
    # A node that refuses the connection (stopping, or dead before the checks noticed) is tried again, each
    # retry on another node: the client never sees it.
    retries 3
    option redispatch 1
{dns}
frontend messenger
    bind {bind_host}:{bind_port}{bind_tls}
    # The nodes see the client's address in X-Forwarded-For (uvicorn believes it from the balancer's address):
    # without it every client would look like the balancer, and one per-address sign-in limit would hold them all.
    # SET, not added to: a client's own X-Forwarded-For (any address it likes) must never reach a node, nor its
    # X-Forwarded-Proto (the scheme the app believes).
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Forwarded-Proto {"https" if tls else "http"}
    default_backend gateways

backend gateways
    # leastconn, not roundrobin: WebSockets stay open for hours, so what loads a node is how many connections it
    # holds, not how many it was given. roundrobin would keep handing a node its share of new sockets while it
    # already holds more than the others (after the others restarted, say); leastconn gives each new
    # connection to the node holding the fewest, and takes turns between nodes that hold as many.
    balance leastconn
    # The health check: GET {HEALTH_PATH} every second; two failures in a row take a node out, two successes
    # put it back. A node killed outright is out within about two seconds.
    option httpchk
    http-check send meth GET uri {HEALTH_PATH}
    http-check expect status 200
    default-server check inter 1s fall 2 rise 2
{servers}
"""


def main(argv: list[str] | None = None) -> int:
    """``python -m workbook.balancer --bind HOST:PORT NAME=HOST:PORT...``: print the configuration."""
    parser = argparse.ArgumentParser(prog="python -m workbook.balancer", description=main.__doc__)
    parser.add_argument("--bind", default="127.0.0.1:8000", help="where the balancer listens (default: %(default)s)")
    parser.add_argument("--resolver", help="a DNS server HOST:PORT to look the nodes up again while running")
    parser.add_argument("--certificate", type=Path, help="TLS: one PEM file with the chain and the key")
    parser.add_argument("--ca-file", type=Path, help="TLS: the authority the nodes' certificates are signed by")
    parser.add_argument("nodes", nargs="+", metavar="NAME=HOST:PORT", help="a gateway node")
    arguments = parser.parse_args(argv)
    if (arguments.certificate is None) != (arguments.ca_file is None):
        parser.error("TLS needs both --certificate and --ca-file")
    tls = None if arguments.certificate is None else BalancerTls(arguments.certificate, arguments.ca_file)
    bind_host, bind_port = arguments.bind.rsplit(":", 1)
    nodes = []
    for text in arguments.nodes:
        name, _, address = text.partition("=")
        host, _, port = address.rpartition(":")
        if not (name and host and port.isdigit()):
            parser.error(f"a node is NAME=HOST:PORT, not {text!r}")
        nodes.append(Node(name, host, int(port)))
    sys.stdout.write(haproxy_config(bind_host, int(bind_port), nodes, resolver=arguments.resolver, tls=tls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
