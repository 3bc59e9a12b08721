"""TLS at both ends of the proxy: towards the nodes, and on the proxy's own listeners.

Settings (file paths or inline PEM text) become `NodeTLS` and `ServerTLS`, which build the
`ssl.SSLContext`s; every problem is a `TLSError` naming the setting, so that the config (or,
later, the admin API) can report it on one line.

A hijacked stream (attach, exec start) needs TLS that can end one direction alone: "stdin
is done" travels one way (TLS's close_notify, as Go's `CloseWrite` sends it) while the
output keeps flowing the other. asyncio's TLS and uvloop's cannot: they close the whole
connection on the first close_notify, and refuse `write_eof()`. `TLSStream` runs TLS in
memory instead, and is used for raw node connections and for the TLS listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

from swarmproxy.log import log_event

log = logging.getLogger("swarmproxy.tls")

# [[nodes]] settings: a file path, or the PEM text itself (for nodes registered through an
# API, which has no files to give).
NODE_SETTINGS = ("tls_ca", "tls_cert", "tls_key", "tls_ca_pem", "tls_cert_pem", "tls_key_pem")
# [server.tls] settings, all file paths.
SERVER_SETTINGS = ("cert", "key", "client_ca")

# A client that connects and never finishes its handshake must not hold a socket forever.
HANDSHAKE_TIMEOUT = 30.0
READ_CHUNK = 256 * 1024


class TLSError(Exception):
    """A bad TLS setting; `setting` names it, `problem` says what is wrong."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True)
class PEM:
    """PEM text and where it came from, to name it in errors."""

    setting: str
    text: str = field(repr=False)
    path: str | None = None

    @property
    def where(self) -> str:
        return self.path or "the inline text"


@dataclass(frozen=True)
class NodeTLS:
    """How to reach a node over TLS. No `ca`: the system's trusted CAs verify the node."""

    ca: PEM | None = None
    cert: PEM | None = None
    key: PEM | None = None

    def client_context(self) -> ssl.SSLContext:
        # PROTOCOL_TLS_CLIENT verifies the node's certificate and its host name (or IP).
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca is None:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            _trust(context, self.ca)
        if self.cert is not None and self.key is not None:
            _load_pair(context, self.cert, self.key)
        return context

    def pems(self) -> dict[str, str]:
        """The PEM texts by item ("ca", "cert", "key"), as the node's record keeps them so
        that every replica can reach the node, whatever files its own host has."""
        items = (("ca", self.ca), ("cert", self.cert), ("key", self.key))
        return {item: pem.text for item, pem in items if pem is not None}


def node_tls_from_pems(pems: Mapping[str, str]) -> NodeTLS | None:
    """The TLS a node's record keeps (see NodeTLS.pems); None for a plain node."""
    return node_tls({f"tls_{item}_pem": text for item, text in pems.items()})


@dataclass(frozen=True)
class ServerTLS:
    """The proxy's listener certificate; with `client_ca`, clients must show one of its."""

    cert: PEM
    key: PEM
    client_ca: PEM | None = None

    def server_context(self) -> ssl.SSLContext:
        # Not create_default_context: it would also trust the system's CAs for client
        # certificates, where only `client_ca` may vouch for a client.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _load_pair(context, self.cert, self.key)
        if self.client_ca is not None:
            _trust(context, self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


# --- settings -------------------------------------------------------------------------------


def node_tls(settings: Mapping[str, Any]) -> NodeTLS | None:
    """A node's TLS from its NODE_SETTINGS (other keys are ignored); None when it has none."""
    ca, cert, key = (_node_pem(settings, item) for item in ("ca", "cert", "key"))
    if ca is None and cert is None and key is None:
        return None
    if cert is not None and key is None:
        raise TLSError(cert.setting, "needs tls_key or tls_key_pem too")
    if key is not None and cert is None:
        raise TLSError(key.setting, "needs tls_cert or tls_cert_pem too")
    tls = NodeTLS(ca, cert, key)
    tls.client_context()  # proves every piece, or names the bad one
    return tls


def server_tls(settings: Mapping[str, Any]) -> ServerTLS:
    """The listener's TLS from its SERVER_SETTINGS; `cert` and `key` are required."""
    for setting in settings:
        if setting not in SERVER_SETTINGS:
            raise TLSError(setting, "unknown key")
    for setting in ("cert", "key"):
        if setting not in settings:
            raise TLSError(setting, "is required")
    client_ca = settings.get("client_ca")
    tls = ServerTLS(
        cert=_read(settings, "cert"),
        key=_read(settings, "key"),
        client_ca=None if client_ca is None else _read(settings, "client_ca"),
    )
    tls.server_context()
    return tls


def _node_pem(settings: Mapping[str, Any], item: str) -> PEM | None:
    path_setting, pem_setting = f"tls_{item}", f"tls_{item}_pem"
    if path_setting in settings and pem_setting in settings:
        raise TLSError(pem_setting, f"give {path_setting} or {pem_setting}, not both")
    if path_setting in settings:
        return _read(settings, path_setting)
    if pem_setting in settings:
        text = settings[pem_setting]
        if not isinstance(text, str):
            raise TLSError(pem_setting, "must be a string of PEM text")
        return PEM(pem_setting, text)
    return None


def _read(settings: Mapping[str, Any], setting: str) -> PEM:
    path = settings[setting]
    if not isinstance(path, str) or not path:
        raise TLSError(setting, "must be a file path")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TLSError(setting, f"cannot read {path}: {e.strerror or e}") from e
    # PEM is ASCII: anything else simply fails the PEM checks, with the path named.
    return PEM(setting, data.decode("utf-8", "replace"), path)


# --- contexts -------------------------------------------------------------------------------


def _trust(context: ssl.SSLContext, ca: PEM) -> None:
    try:
        context.load_verify_locations(cadata=ca.text)
    except (ssl.SSLError, ValueError) as e:
        raise TLSError(ca.setting, f"no PEM certificate in {ca.where}") from e


def _load_pair(context: ssl.SSLContext, cert: PEM, key: PEM) -> None:
    # load_verify_locations parses certificates alone, so a bad certificate is told apart
    # from a bad key (load_cert_chain says "PEM lib" for both).
    _trust(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert)
    if "PRIVATE KEY-----" not in key.text:
        raise TLSError(key.setting, f"no PEM private key in {key.where}")
    if "ENCRYPTED" in key.text:
        raise TLSError(key.setting, f"the key in {key.where} is encrypted; give it unencrypted")

    def no_password() -> NoReturn:
        # Without a callback OpenSSL would prompt on the terminal, hanging a server.
        raise TLSError(key.setting, f"the key in {key.where} needs a password")

    with _as_file(cert.text) as cert_path, _as_file(key.text) as key_path:
        try:
            context.load_cert_chain(cert_path, key_path, password=no_password)
        except ssl.SSLError as e:
            if e.reason == "KEY_VALUES_MISMATCH":
                problem = f"the key in {key.where} does not match the certificate in {cert.where}"
            else:
                problem = f"no usable PEM private key in {key.where}"
            raise TLSError(key.setting, problem) from e


@contextlib.contextmanager
def _as_file(text: str) -> Iterator[str]:
    """A path holding `text`: load_cert_chain reads files only. An anonymous in-memory file
    keeps a private key off the disk; without memfd (not Linux), a private temporary file."""
    data = text.encode()
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("swarmproxy-pem", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="swarmproxy-pem-") as f:
        f.write(data)
        f.flush()
        yield f.name


# --- streams --------------------------------------------------------------------------------


async def open_tls_connection(
    host: str, port: int, context: ssl.SSLContext, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection over TLS whose writer can `write_eof()` (a close_notify)
    while its reader goes on reading. TLS failures raise ssl.SSLError (an OSError)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    handshake: asyncio.Future[None] = loop.create_future()
    _, stream = await loop.create_connection(
        lambda: TLSStream(context, protocol, server_hostname=host, handshake=handshake),
        host,
        port,
    )
    try:
        await handshake
    except BaseException:
        stream.abort()
        raise
    return reader, asyncio.StreamWriter(stream, protocol, reader, loop)


def server_stream(context: ssl.SSLContext, app: asyncio.Protocol) -> TLSStream:
    """The protocol for one accepted connection of a TLS listener serving `app`."""
    return TLSStream(context, app, server_side=True)


class TLSStream(asyncio.Protocol, asyncio.Transport):
    """TLS over one TCP connection: the socket's protocol, and the transport of the protocol
    above it (`app`), with half-closes in both directions.

    Decrypted data goes up to `app`; a close_notify (or a bare TCP EOF) is `app`'s
    eof_received, whose answer decides whether the connection stays open for writing.
    `write_eof()` sends a close_notify and keeps reading.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        handshake: asyncio.Future[None] | None = None,
    ) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._context = context
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._app = app
        # The opener awaits the handshake; a listener has nobody waiting, and logs failures.
        self._handshake = handshake
        self._raw: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._established = False
        # Data decrypted before the app asked for it (see write_eof), then the peer's EOF.
        self._pending = bytearray()
        self._pending_eof = False
        self._read_paused = False
        self._read_eof = False
        self._write_eof = False
        self._closing = False
        self._error: Exception | None = None

    # --- the socket's side (asyncio.Protocol) ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)
        self._timer = self._loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timed_out)
        # A client's hello goes out now; a server's first step just waits for it.
        self._advance_handshake()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._incoming.write(data)
        if not self._established:
            self._advance_handshake()
        if self._established:
            self._deliver()

    def eof_received(self) -> bool:
        if not self._established:
            self._fail(ConnectionResetError("the connection closed during the TLS handshake"))
            return True
        # Behind the records not yet read (the app may have paused): _deliver gets to it.
        self._incoming.write_eof()
        self._deliver()
        # Closing is ours to decide (close() sends our close_notify first).
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self._established:
            self._app.connection_lost(exc or self._error)
        elif self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(
                exc or ConnectionResetError("the connection closed during the TLS handshake")
            )

    def pause_writing(self) -> None:
        if self._established:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._established:
            self._app.resume_writing()

    # --- the app's side (asyncio.Transport) --------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        own: dict[str, Callable[[], Any]] = {
            "sslcontext": lambda: self._context,
            "ssl_object": lambda: self._ssl,
            "peercert": self._ssl.getpeercert,
            "cipher": self._ssl.cipher,
            "compression": self._ssl.compression,
        }
        if name in own:
            return own[name]()
        return default if self._raw is None else self._raw.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        # Data and EOFs are handed up: only a streaming protocol can take them.
        assert isinstance(protocol, asyncio.Protocol)
        self._app = protocol

    def get_protocol(self) -> asyncio.Protocol:
        return self._app

    def is_closing(self) -> bool:
        return self._closing or self._raw is None or self._raw.is_closing()

    def is_reading(self) -> bool:
        return not self._read_paused and not self.is_closing()

    def pause_reading(self) -> None:
        if not self._read_paused and self._raw is not None:
            self._read_paused = True
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and self._raw is not None:
            self._read_paused = False
            self._raw.resume_reading()
            # Records already received are not announced again by the socket.
            self._loop.call_soon(self._deliver)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert self._raw is not None
        self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        assert self._raw is not None
        return self._raw.get_write_buffer_limits()

    def get_write_buffer_size(self) -> int:
        return 0 if self._raw is None else self._raw.get_write_buffer_size()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        if self._write_eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        try:
            self._ssl.write(data)
        except ssl.SSLError as e:
            self._fatal(e)
            return
        self._flush()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._write_eof or self._closing:
            return
        self._write_eof = True
        try:
            self._read_ahead()
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # our close_notify is out; the peer's comes when it is done
        except ssl.SSLError as e:
            self._fatal(e)
            return
        self._flush()
        if self._pending or self._pending_eof:
            self._loop.call_soon(self._deliver)

    def close(self) -> None:
        if self._closing or self._raw is None:
            return
        if self._established and not self._write_eof:
            self._write_eof = True
            # The close_notify is queued by unwrap's first step; what follows it (waiting for
            # the peer's, or unread data) does not matter to a connection being closed.
            with contextlib.suppress(ssl.SSLError):
                self._ssl.unwrap()
            self._flush()
        self._closing = True
        self._raw.close()

    def abort(self) -> None:
        self._closing = True
        if self._raw is not None:
            self._raw.abort()

    # --- internals ---------------------------------------------------------------------------

    def _advance_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as e:
            self._fail(e)
            return
        self._flush()
        self._established = True
        if self._timer is not None:
            self._timer.cancel()
        self._app.connection_made(self)
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(None)

    def _handshake_timed_out(self) -> None:
        self._fail(TimeoutError(f"no TLS handshake within {HANDSHAKE_TIMEOUT:.0f}s"))

    def _fail(self, error: Exception) -> None:
        """The handshake failed: the opener hears of it, a listener logs it."""
        if self._timer is not None:
            self._timer.cancel()
        if self._handshake is not None:
            if not self._handshake.done():
                self._handshake.set_exception(error)
        else:
            # A refused certificate matters; a probe that connects and leaves does not.
            log_event(
                log,
                logging.WARNING if isinstance(error, ssl.SSLError) else logging.INFO,
                "tls handshake failed",
                peer=_address(self.get_extra_info("peername")),
                error=str(error) or type(error).__name__,
            )
        # After the log line: a refused client may look for it as soon as the alert arrives.
        self._flush()  # the alert tells the peer why
        self._closing = True
        if self._raw is not None:
            self._raw.close()

    def _fatal(self, error: ssl.SSLError) -> None:
        """The established connection broke (a bad record): the app hears of it on close."""
        self._error = error
        self.abort()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self._raw is not None and not self._raw.is_closing():
            self._raw.write(data)

    def _deliver(self) -> None:
        """Hands decrypted data to the app for as long as it reads."""
        try:
            while not self._read_paused and not self._read_eof and not self._closing:
                chunk = self._next_chunk()
                if chunk is None:
                    break
                if not chunk:
                    self._peer_done()
                    break
                self._app.data_received(chunk)
        except ssl.SSLError as e:
            self._fatal(e)
            return
        # Reading may have produced records to send (a TLS 1.3 key update).
        self._flush()

    def _next_chunk(self) -> bytes | None:
        """Decrypted data, b"" once the peer is done sending, None until more arrives."""
        if self._pending:
            chunk = bytes(self._pending)
            self._pending.clear()
            return chunk
        if self._pending_eof:
            return b""
        try:
            return self._ssl.read(READ_CHUNK)
        except ssl.SSLWantReadError:
            return None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # A TCP EOF without close_notify: the peer is done sending all the same.
            return b""

    def _read_ahead(self) -> None:
        """Decrypts the records already received. OpenSSL fails a close_notify sent over
        unread application data (APPLICATION_DATA_AFTER_CLOSE_NOTIFY)."""
        while not self._pending_eof:
            try:
                chunk = self._ssl.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                chunk = b""
            if not chunk:
                self._pending_eof = True
            self._pending += chunk

    def _peer_done(self) -> None:
        self._read_eof = True
        if not self._app.eof_received():
            self.close()


def _address(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername or "")
