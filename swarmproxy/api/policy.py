"""The authorization policy on the Docker API: the middleware that asks swarmproxy.policy
about every request, and the policy in force, which a reload swaps."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from swarmproxy.api.context import endpoint_of
from swarmproxy.api.middleware import error_response
from swarmproxy.log import log_event
from swarmproxy.policy import Policy, Subject, subject_of_certificate

log = logging.getLogger("swarmproxy.policy")


class PolicyInForce:
    """Read once per request, so a request is judged by one policy even across a reload."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy


POLICY = web.AppKey("policy", PolicyInForce)


def set_policy(app: web.Application, policy: Policy) -> None:
    if POLICY in app:
        app[POLICY].policy = policy
    else:
        app[POLICY] = PolicyInForce(policy)


def _subject(request: web.Request) -> Subject | None:
    # A TLS listener's connection (swarmproxy.tls.TLSStream) gives the verified certificate.
    transport = request.transport
    return (
        None if transport is None else subject_of_certificate(transport.get_extra_info("peercert"))
    )


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    policy = request.app[POLICY].policy
    if not policy.enabled:
        return await handler(request)
    subject = _subject(request) if policy.clients else None
    route = endpoint_of(request)
    # Only the small JSON bodies the rules judge are read here (the handlers read them whole
    # anyway); uploads stream through untouched.
    body = await request.read() if policy.needs_body(request.method, route, subject) else None
    refusal = policy.check(request.method, request.path, subject, route=route, body=body)
    if refusal is None:
        return await handler(request)
    log_event(
        log,
        logging.WARNING,
        "request refused",
        method=request.method,
        path=request.path,
        rule=refusal.rule,
        client=refusal.client,
        why=refusal.problem,
    )
    return error_response(403, refusal.message)
