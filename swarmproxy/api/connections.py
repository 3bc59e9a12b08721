"""Client connections and their limits: how long a connection may take to send a request
head, how long it may sit idle between requests, and how long a request line or header may
be ([server] head_timeout, idle_timeout, max_line_size, max_field_size).

aiohttp bounds the idle time between requests (its keep-alive timeout), but not the time a
request head takes once begun: a client that opens a connection and dribbles a head (or
sends nothing at all, on older aiohttp) would hold its socket for as long as it likes. Each
connection here is a `Connection`, which closes itself when a head is not complete in time,
as dockerd does (Go's ReadHeaderTimeout): a close, with no answer, since no request was read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler

from swarmproxy.api.fast_lane import FastLane, Lane
from swarmproxy.config import ServerConfig
from swarmproxy.log import log_event

log = logging.getLogger("swarmproxy.http")


class Connection(RequestHandler):
    """One client connection. A head is awaited from the connection's start, and on a kept
    alive connection from the first byte of the next request; `request_started` and
    `request_done` (called by the `heads` middleware) say when the proxy is busy with one."""

    def __init__(
        self,
        manager: web.Server,
        *,
        head_timeout: float,
        lane: FastLane | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        # Between requests, with nothing of the next one received: aiohttp's keep-alive
        # timeout covers that time, and the next byte starts the head's.
        self._between_requests = False
        self._shared_lane = lane
        self._lane: Lane | None = None
        # In the lane: since when the connection is idle (None while a request is under way
        # or coming), and the one timer that checks it, re-armed only when it fires early.
        self._idle_since: float | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._await_head()
        if self._shared_lane is not None:
            self._lane = Lane(
                self._shared_lane,
                transport,  # type: ignore[arg-type]
                self._leave_lane,
                self.request_started,
                self._lane_request_done,
            )
            # aiohttp sees no request while the lane serves: the lane keeps the idle
            # timeout until it hands the connection over.
            if self._keepalive_handle is not None:
                self._keepalive_handle.cancel()
                self._keepalive_handle = None

    def data_received(self, data: bytes) -> None:
        lane = self._lane
        if lane is not None:
            self._idle_since = None
            lane.feed(data)
            # Timed only when a head is left half received: most come whole, and are
            # answered before any timer would be worth arming.
            if self._lane is not None and lane.awaiting_head and self._head_timer is None:
                self._await_head()
            return
        if self._between_requests and data:
            self._between_requests = False
            self._await_head()
        super().data_received(data)

    def _leave_lane(self, pending: bytes) -> None:
        self._lane = None
        self._stop_idle_timer()
        if pending:
            # The head timer runs until aiohttp has the head (the `heads` middleware).
            self._between_requests = False
            if self._head_timer is None:
                self._await_head()
            super().data_received(pending)
        else:
            # Nothing of a next request yet: aiohttp's idle timeout takes over.
            self._keepalive_handle = self._loop.call_later(
                self._keepalive_timeout, self._process_keepalive
            )
            self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout

    def _lane_request_done(self) -> None:
        self.request_done()
        lane = self._lane
        if lane is not None and lane.awaiting_head and self._head_timer is None:
            # What was sent behind the request answered: its head is timed from now.
            self._await_head()
        since = self._idle_since = self._loop.time()
        if self._idle_timer is None:
            self._idle_timer = self._loop.call_at(
                since + self._keepalive_timeout, self._lane_idle_check
            )

    def _lane_idle_check(self) -> None:
        self._idle_timer = None
        since = self._idle_since
        if self._lane is None or since is None:
            # Busy: the request under way arms the timer again when it is answered.
            return
        due = since + self._keepalive_timeout
        if self._loop.time() < due:
            self._idle_timer = self._loop.call_at(due, self._lane_idle_check)
        else:
            self.force_close()

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._lane is not None:
            self._lane.client_paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._lane is not None:
            self._lane.client_resumed()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        self._stop_idle_timer()
        if self._lane is not None:
            self._lane.close()
        super().connection_lost(exc)

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        lane = self._lane
        if lane is not None:
            # A request under way in the lane ends (a stream: within the timeout) first.
            in_flight = lane.in_flight
            if in_flight is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(in_flight), timeout)
            lane.close()
        await super().shutdown(timeout)

    def request_started(self) -> None:
        self._between_requests = False
        self._stop_head_timer()

    def request_done(self) -> None:
        self._between_requests = True

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            # A client's malformed head, answered 400: one line, not an error's traceback.
            log_event(log, logging.INFO, "bad request head", error=error.message.strip())
            return
        super().log_exception(*args, **kwargs)

    def _await_head(self) -> None:
        self._stop_head_timer()
        # The connection's own loop: asyncio.get_running_loop() costs a getpid() a call.
        self._head_timer = self._loop.call_later(self._head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self.force_close()


class _Server(web.Server):
    lane: FastLane | None = None

    def __call__(self) -> RequestHandler:
        # aiohttp's own __call__ makes a RequestHandler with the runner's settings.
        return Connection(self, loop=self._loop, lane=self.lane, **self._kwargs)


class ProxyRunner(web.AppRunner):
    """An AppRunner whose connections follow the [server] limits; with `fast_lane`, each
    starts in the fast lane (swarmproxy.api.fast_lane) in front of the application."""

    def __init__(
        self, app: web.Application, server: ServerConfig, fast_lane: bool = False, **kwargs: Any
    ) -> None:
        self._fast_lane = fast_lane
        super().__init__(
            app,
            keepalive_timeout=server.idle_timeout,
            max_line_size=server.max_line_size,
            max_field_size=server.max_field_size,
            head_timeout=server.head_timeout,
            **kwargs,
        )

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp makes the application's server itself, with no say in the protocol class:
        # it stays as made, but for the protocol it makes per connection. The tests of the
        # head timeout (test_e2e_bad_input.py) say whether a new aiohttp still allows it.
        server.__class__ = _Server
        assert isinstance(server, _Server)
        if self._fast_lane:
            server.lane = FastLane(self.app)
        return server


@web.middleware
async def heads(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tells the connection when a request's head has arrived and when it is answered."""
    connection = request.protocol
    if not isinstance(connection, Connection):
        return await handler(request)
    connection.request_started()
    try:
        return await handler(request)
    finally:
        connection.request_done()
