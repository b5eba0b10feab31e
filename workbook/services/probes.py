"""Does a service really answer? Each probe does real work over a real connection and returns the server version."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

Probe = Callable[[str], str]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def probe_postgres(url: str) -> str:
    import psycopg

    with psycopg.connect(url, connect_timeout=3) as connection:
        row = connection.execute("SELECT current_setting('server_version')").fetchone()
    assert row is not None
    return str(row[0])


def probe_mongo(url: str) -> str:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=3000, connectTimeoutMS=3000)
    try:
        # A write and a delete, not only a ping: a server whose storage is gone still answers pings.
        probes = client.get_default_database("workbook").workbook_probe
        probes.delete_one({"_id": probes.insert_one({}).inserted_id})
        info = client.admin.command("buildInfo")
    finally:
        client.close()
    # FerretDB reports the MongoDB version it imitates, and its own version beside it.
    if "ferretdbVersion" in info:
        return f"FerretDB {info['ferretdbVersion']} (MongoDB {info['version']} protocol)"
    return f"MongoDB {info['version']}"


def probe_redis(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def probe_rabbitmq(url: str) -> str:
    import pika

    parameters = pika.URLParameters(url)
    parameters.socket_timeout = 3
    parameters.connection_attempts = 1
    connection = pika.BlockingConnection(parameters)
    try:
        connection.channel().close()
    finally:
        connection.close()
    return rabbitmq_management_version(url) or "version unknown (management API not reachable)"


def rabbitmq_management_version(amqp_url: str, management_port: int = 15672) -> str | None:
    parts = urlsplit(amqp_url)
    if parts.hostname not in LOOPBACK:
        return None  # the API is plain HTTP: never send credentials across a network for a version string
    request = urllib.request.Request(f"http://{parts.hostname}:{management_port}/api/overview")
    credentials = f"{unquote(parts.username or 'guest')}:{unquote(parts.password or 'guest')}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return str(json.load(response)["rabbitmq_version"])
    except (OSError, KeyError, ValueError):
        return None


def wait_until_ready(probe: Probe, url: str, timeout: float) -> str:
    """Probe until the service answers; return its version. Raises the last error at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return probe(url)
        except Exception:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
