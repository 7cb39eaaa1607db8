"""`/metrics` (Prometheus text) and `/healthz` over HTTP, off unless a port is set.

`/healthz` answers 200 while some feed has produced a good quote within the staleness limit
and every chat platform is receiving commands, and 503 otherwise (all feeds failing or stale,
or a platform's command side down), naming what is wrong, so a supervisor can restart or page.

On PostgreSQL a replica answers for the parts it runs: the feeds only while it holds the
engine, a platform's command side only while it holds that platform's role (or always, where
every replica receives); the body then says which roles it holds and which it stands by for,
and /metrics has `tickerbell_role{role=...}` 1 or 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.serving import serve
from storage.api import Storage
from tickerbell.service import Service


class Listening(Protocol):
    """A chat platform as health sees it."""

    name: str

    def listening(self) -> bool: ...


Roles = Callable[[], Mapping[str, bool]]  # on PostgreSQL: each role, and whether it runs here


class _Snapshot(Collector):
    """Reads the service's counters and an outbox count taken just before."""

    def __init__(
        self, service: Service, outbox: dict[str, int], roles: Roles | None = None
    ) -> None:
        self.service = service
        self.outbox = outbox
        self.roles = roles

    def collect(self) -> Iterator[Metric]:
        stats, now = self.service.stats, self.service.clock()
        polls = CounterMetricFamily("tickerbell_polls", "Polls per feed", labels=["feed"])
        failures = CounterMetricFamily(
            "tickerbell_poll_failures", "Failed polls per feed", labels=["feed"]
        )
        rejected = CounterMetricFamily(
            "tickerbell_quotes_rejected",
            "Quotes rejected by sanity checks",
            labels=["feed", "reason"],
        )
        age = GaugeMetricFamily(
            "tickerbell_feed_age_seconds", "Seconds since the last good quote", labels=["feed"]
        )
        for feed, fs in stats.feeds.items():
            polls.add_metric([feed], fs.polls)
            failures.add_metric([feed], fs.failures)
            for reason, count in fs.rejected.items():
                rejected.add_metric([feed, reason], count)
            if fs.last_good is not None:
                age.add_metric([feed], (now - fs.last_good).total_seconds())
        yield from (polls, failures, rejected, age)
        streaming = GaugeMetricFamily(
            "tickerbell_stream_up", "1 while a venue's stream delivers, else 0", labels=["feed"]
        )
        for feed, stream in self.service.streams.items():
            streaming.add_metric([feed], 1 if stream.up else 0)
        yield streaming
        yield CounterMetricFamily(
            "tickerbell_alerts_decided", "Alerts decided", value=stats.alerts_decided
        )
        deliveries = CounterMetricFamily(
            "tickerbell_deliveries", "Delivery attempts by outcome", labels=["platform", "outcome"]
        )
        for (platform, outcome), count in stats.deliveries.items():
            deliveries.add_metric([platform, outcome], count)
        yield deliveries
        outbox = GaugeMetricFamily("tickerbell_outbox_rows", "Outbox rows", labels=["status"])
        for status, count in self.outbox.items():
            outbox.add_metric([status], count)
        yield outbox
        yield GaugeMetricFamily("tickerbell_rules", "Active rules", value=len(self.service.book))
        if self.roles is not None:
            held = GaugeMetricFamily(
                "tickerbell_role", "1 while this replica runs the role, else 0", labels=["role"]
            )
            for role, here in self.roles().items():
                held.add_metric([role], 1 if here else 0)
            yield held


def problems(
    service: Service, front_ends: Sequence[Listening] = (), roles: Roles | None = None
) -> list[str]:
    """What makes the bot unhealthy now (empty when healthy): of the parts that run here."""
    held = roles() if roles is not None else {}
    found = []
    if (roles is None or service.running) and not service.data.healthy():
        found.append("no feed has a fresh good quote")
    found.extend(
        f"{front_end.name} is not receiving commands"
        for front_end in front_ends
        if held.get(front_end.name, True) and not front_end.listening()
    )
    return found


def roles_text(roles: Mapping[str, bool]) -> str:
    """Which roles run here and which this replica stands by for, a line each."""
    here = ", ".join(role for role, held in roles.items() if held) or "none"
    lines = f"roles here: {here}\n"
    waiting = [role for role, held in roles.items() if not held]
    if waiting:
        lines += f"standing by for: {', '.join(waiting)}\n"
    return lines


def make_app(
    service: Service,
    store: Storage,
    front_ends: Sequence[Listening] = (),
    roles: Roles | None = None,
) -> web.Application:
    """The aiohttp application serving /metrics and /healthz."""

    async def metrics(request: web.Request) -> web.Response:
        registry = CollectorRegistry()
        registry.register(_Snapshot(service, await store.outbox_counts(), roles))
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    async def healthz(request: web.Request) -> web.Response:
        wrong = problems(service, front_ends, roles)
        text = "".join(f"{line}\n" for line in wrong) or "ok\n"
        if roles is not None:
            text += roles_text(roles())
        return web.Response(status=503 if wrong else 200, text=text)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def start(
    service: Service,
    store: Storage,
    host: str,
    port: int,
    front_ends: Sequence[Listening] = (),
    roles: Roles | None = None,
) -> web.AppRunner:
    """Serve the endpoints; the caller awaits `runner.cleanup()` on shutdown."""
    return await serve(make_app(service, store, front_ends, roles), host, port)
