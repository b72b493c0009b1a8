"""`valkey-rag-cache`: the operator's command line (also ``python -m valkey_rag_cache``).

Exit codes: 0 done; 1 a problem was found (``doctor``) or a confirmation was declined (nothing was done);
2 usage error (bad option or argument, no server given); 3 Valkey unreachable, timed out, or refused the
command (authentication, ACL). Errors are one line on stderr, without a traceback or a password.

Example::

    $ export VALKEY_URL=valkey://cache.internal:6379
    $ valkey-rag-cache stats support
    $ valkey-rag-cache invalidate source kb/refunds.md
    $ valkey-rag-cache doctor || echo "fix the server settings"
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from valkey.exceptions import ValkeyError

from .cache import AnswerCache
from .connection import redact
from .errors import CacheError
from .ops import lifecycle
from .ttl import parse_ttl

__all__ = ["main"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_BACKEND = 0, 1, 2, 3

_COLUMNS = ("hits", "misses", "hit rate", "stale", "bad", "writes", "refused", "invalidations")


class Settings:
    def __init__(
        self, url: str | None, prefix: str, as_json: bool, timeout: float, cluster: bool | None
    ) -> None:
        self.url, self.prefix, self.as_json, self.timeout, self.cluster = (
            url,
            prefix,
            as_json,
            timeout,
            cluster,
        )
        self._cache: AnswerCache | None = None

    def cache(self) -> AnswerCache:
        """The cache on the operator's server; never an embedded one (there would be nothing to operate)."""
        if self._cache is None:
            if not self.url:
                raise click.UsageError(
                    "no Valkey to talk to: pass --url or set VALKEY_URL "
                    "(the command line never starts an embedded server)"
                )
            try:
                self._cache = AnswerCache(
                    self.url, prefix=self.prefix, timeout=self.timeout, cluster=self.cluster
                )
            except (TypeError, ValueError) as exc:
                raise click.UsageError(str(exc)) from None
            with backend_errors(self):
                self._cache.connector.sync_client().ping()  # fail here, clearly, rather than print zeros
        return self._cache


def _fail(settings: Settings | None, message: str, code: int) -> NoReturn:
    if settings is not None and settings.url:
        message = message.replace(settings.url, redact(settings.url))
    click.echo(f"valkey-rag-cache: error: {message}", err=True)
    sys.exit(code)


@contextmanager
def backend_errors(settings: Settings) -> Iterator[None]:
    """Turn what the server or the network did into one line and exit code 3."""
    try:
        yield
    except CacheError as exc:
        cause = exc.__cause__ or exc
        _fail(settings, f"{type(cause).__name__}: {cause}" if cause is not exc else str(exc), EXIT_BACKEND)
    except (ValkeyError, OSError) as exc:
        _fail(settings, f"{type(exc).__name__}: {exc}", EXIT_BACKEND)
    except ValueError as exc:  # the cache's own validation: an empty source id, a malformed namespace
        _fail(settings, str(exc), EXIT_USAGE)


def _emit(settings: Settings, data: Any, human: Callable[[], str]) -> None:
    click.echo(json.dumps(data, sort_keys=True) if settings.as_json else human())


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        first = row[0].ljust(widths[0])
        lines.append("  ".join([first] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    # `--json` is accepted after the command too (`valkey-rag-cache stats --json`).
    def mark(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.find_object(Settings).as_json = True  # type: ignore[union-attr]

    return click.option(
        "--json", "as_json", is_flag=True, expose_value=False, callback=mark, help="Print JSON."
    )(f)


def _idle_seconds(value: str) -> float:
    if value.strip() == "0":
        return 0.0
    try:
        return float(parse_ttl(value))
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--url",
    envvar="VALKEY_URL",
    help="valkey://, valkeys://, redis://, rediss:// or unix:// URL [env: VALKEY_URL].",
)
@click.option("--prefix", default="llmcache", show_default=True, help="The cache's key prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables and sentences.")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(min=0.01), help="Seconds.")
@click.option(
    "--cluster/--no-cluster", default=None, help="Force cluster mode (default: ask the server with INFO)."
)
@click.option("-v", "--verbose", is_flag=True, help="Log the cache's DEBUG lines to stderr.")
@click.version_option(package_name="valkey-rag-cache")
@click.pass_context
def main(
    ctx: click.Context,
    url: str | None,
    prefix: str,
    as_json: bool,
    timeout: float,
    cluster: bool | None,
    verbose: bool,
) -> None:
    """Inspect and operate a valkey-rag-cache: counters, health, invalidation, housekeeping.

    \b
    Exit codes: 0 done; 1 doctor found a problem, or a confirmation was declined;
    2 usage error (or no --url / VALKEY_URL); 3 Valkey unreachable, timed out or refused.
    """
    logger = logging.getLogger("valkey_rag_cache")
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    elif not logger.handlers:
        # Errors are reported as one line by the command; the library's own warnings would repeat them.
        logger.addHandler(logging.NullHandler())
    ctx.obj = Settings(url, prefix, as_json, timeout, cluster)


# -- stats ---------------------------------------------------------------------------------------------


def _stats_view(report: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    rows = {
        ns: counts
        for ns, counts in report["namespaces"].items()
        if namespace is None or ns == namespace or ns.startswith(namespace + ":")
    }
    for counts in rows.values():
        looked = counts["hits"] + counts["misses"]
        counts["hit_rate"] = round(counts["hits"] / looked, 4) if looked else None
    totals = {c: sum(r[c] for r in rows.values()) for c in report["totals"]}
    looked = totals["hits"] + totals["misses"]
    totals["hit_rate"] = round(totals["hits"] / looked, 4) if looked else None
    return {"namespaces": rows, "totals": totals}


def _stats_text(view: dict[str, Any]) -> str:
    if not view["namespaces"]:
        return "no counters yet (nothing was looked up or written under this prefix)"

    def row(name: str, c: dict[str, Any]) -> list[object]:
        rate = "-" if c["hit_rate"] is None else f"{100 * c['hit_rate']:.1f}%"
        return [
            name,
            c["hits"],
            c["misses"],
            rate,
            c["stale"],
            c["bad"],
            c["writes"],
            c["refused"],
            c["invalidations"],
        ]

    rows = [row(ns, c) for ns, c in sorted(view["namespaces"].items())]
    if len(rows) > 1:
        rows.append(row("(total)", view["totals"]))
    return _table(("namespace", *_COLUMNS), rows)


@main.command()
@click.argument("namespace", required=False)
@click.option("--watch", is_flag=True, help="Refresh until interrupted (Ctrl-C).")
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between refreshes.",
)
@click.option("--count", type=click.IntRange(min=1), help="With --watch: stop after this many refreshes.")
@click.option(
    "--reset", is_flag=True, help="Zero the counters of NAMESPACE and below (all without NAMESPACE)."
)
@_json_option
@click.pass_obj
def stats(
    settings: Settings, namespace: str | None, watch: bool, interval: float, count: int | None, reset: bool
) -> None:
    """Hits, misses, hit rate, stale and bad entries, writes, refused writes, invalidations per namespace.

    The counters live in Valkey and are shared by every process using the prefix.
    """
    cache = settings.cache()
    if reset:
        with backend_errors(settings):
            cache.reset_stats(namespace)
        _emit(
            settings,
            {"reset": namespace or "*"},
            lambda: f"reset the counters of {namespace or 'every namespace'}",
        )
        return
    shown = 0
    try:
        while True:
            with backend_errors(settings):
                report = cache.stats()
            if report["process"]["errors"]:
                _fail(settings, "Valkey did not answer while reading the counters", EXIT_BACKEND)
            view = _stats_view(report, namespace)
            if watch and not settings.as_json:
                click.clear()
                click.echo(time.strftime("%Y-%m-%d %H:%M:%S") + f"  every {interval:g}s, Ctrl-C to stop\n")
            _emit(settings, view, lambda v=view: _stats_text(v))  # type: ignore[misc]
            shown += 1
            if not watch or (count is not None and shown >= count):
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


# -- doctor --------------------------------------------------------------------------------------------


@main.command()
@_json_option
@click.pass_obj
def doctor(settings: Settings) -> None:
    """Check the server's settings for the cache; exit code 1 when a problem is found."""
    with backend_errors(settings):
        report = settings.cache().doctor()
    data = {
        "ok": report.ok,
        "cluster": report.cluster,
        "maxmemory_policy": report.maxmemory_policy,
        "maxmemory": report.maxmemory,
        "used_memory": report.used_memory,
        "problems": report.problems,
        "notes": report.notes,
    }
    _emit(settings, data, lambda: str(report) + ("\nok" if report.ok else ""))
    if not report.ok:
        sys.exit(EXIT_PROBLEM)


# -- invalidation --------------------------------------------------------------------------------------


@main.group()
def invalidate() -> None:
    """Retire cached answers: by source document, by namespace, or all of them."""


@invalidate.command("source")
@click.argument("source_ids", nargs=-1, required=True, metavar="ID...")
@_json_option
@click.pass_obj
def invalidate_source(settings: Settings, source_ids: tuple[str, ...]) -> None:
    """Retire and delete every answer built on these source documents, in every namespace."""
    cache = settings.cache()
    with backend_errors(settings):
        retired = cache.invalidate_sources(source_ids)
    _emit(
        settings,
        {"retired": retired, "sources": list(source_ids)},
        lambda: f"retired {retired} answer(s) built on {', '.join(source_ids)}",
    )


@invalidate.command("namespace")
@click.argument("namespace")
@_json_option
@click.pass_obj
def invalidate_namespace(settings: Settings, namespace: str) -> None:
    """Retire every answer in NAMESPACE and the namespaces below it (constant time, no SCAN)."""
    cache = settings.cache()
    with backend_errors(settings):
        try:
            cache.invalidate_namespace(namespace)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="NAMESPACE") from None
    _emit(
        settings,
        {"retired": "namespace", "namespace": namespace},
        lambda: f"retired every answer in {namespace} and the namespaces below it",
    )


@invalidate.command("all")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@click.pass_obj
def invalidate_all(settings: Settings, yes: bool) -> None:
    """Bump the version: no answer cached so far under the prefix is served again."""
    cache = settings.cache()
    if not yes and not click.confirm(
        f"Retire every cached answer under the prefix {settings.prefix!r}, in every namespace?", err=True
    ):
        _fail(settings, "not confirmed; nothing was done", EXIT_PROBLEM)
    with backend_errors(settings):
        cache.invalidate_all()
    _emit(
        settings,
        {"retired": "all", "prefix": settings.prefix},
        lambda: f"retired every answer under the prefix {settings.prefix!r}",
    )


@main.command()
@click.argument("source_id", metavar="ID")
@_json_option
@click.pass_obj
def dependents(settings: Settings, source_id: str) -> None:
    """The keys of the live answers built on the source document ID."""
    cache = settings.cache()
    with backend_errors(settings):
        keys = cache.dependents(source_id)
    _emit(settings, keys, lambda: "\n".join(keys) if keys else f"no live answer is built on {source_id}")


# -- housekeeping --------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--idle-after", default="7d", show_default=True, help="Drop trees idle this long ('0', '12h', '7d')."
)
@click.option("--keep-idle", is_flag=True, help="Do not drop idle namespace trees.")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(min=10), help="SCAN COUNT.")
@_json_option
@click.pass_obj
def purge(settings: Settings, idle_after: str, keep_idle: bool, batch: int) -> None:
    """Reclaim invalidated entries and dead links, and the bookkeeping of idle namespace trees.

    Incremental (SCAN and UNLINK in batches, on every primary); it never blocks the server. A tree is
    dropped when two purges at least --idle-after apart found it empty and untouched.
    """
    idle = None if keep_idle else _idle_seconds(idle_after)
    cache = settings.cache()
    with backend_errors(settings):
        total = int(cache._must(CacheError, lifecycle.key_count))
        # The bar counts the keys examined against all keys of the database (other data included, so it
        # may finish early); on stderr, so that --json output stays clean.
        with click.progressbar(length=max(total, 1), label="purging", file=sys.stderr) as bar:
            removed = cache.purge(batch, idle_after=idle, progress=bar.update)
            bar.update(max(total, 1))
    _emit(settings, {"removed": removed}, lambda: f"removed {removed} stale key(s) or link(s)")


@main.command()
@click.argument("namespace")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@click.pass_obj
def drop(settings: Settings, namespace: str, yes: bool) -> None:
    """Remove the namespace tree NAMESPACE for good: answers, tokens, dependency sets and counters.

    Safe while applications use it: nothing cached before the drop is served again.
    """
    cache = settings.cache()
    if not yes and not click.confirm(
        f"Drop {namespace} and every namespace below it, with its counters?", err=True
    ):
        _fail(settings, "not confirmed; nothing was done", EXIT_PROBLEM)
    with backend_errors(settings):
        try:
            removed = cache.drop_namespace(namespace)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="NAMESPACE") from None
    _emit(
        settings,
        {"dropped": namespace, "keys_deleted": removed},
        lambda: f"dropped {namespace}: {removed} key(s) deleted",
    )


def run() -> None:
    """The console script: click's standalone mode (usage errors exit 2, Ctrl-C exits 1 with 'Aborted!')."""
    main(prog_name="valkey-rag-cache")
