"""Every error jdkit raises, in one hierarchy.

    JDError
    ├── ConfigError (ValueError)         bad address, option or config field; names it
    ├── AuthError                         a token source could not produce a token
    │   └── ChallengeRequiredError        Cognito answered with a challenge, not tokens
    ├── ProtocolError                     the server answered, but not as JD must
    │                                     (e.g. ProposeJob without a proposal)
    ├── DryRunError                       a dry-run cannot synthesize what was asked
    ├── ClientClosedError                 the client (or its parent) was closed
    ├── WrongEventLoopError (RuntimeError) the client belongs to another event loop
    ├── VersionError                      the JD is older than min_version
    └── RPCError                          a call failed; .code, .method, .message
        ├── CancelledError                CANCELLED
        ├── InvalidArgumentError          INVALID_ARGUMENT (also OUT_OF_RANGE)
        ├── DeadlineExceededError         DEADLINE_EXCEEDED, or the local deadline ran out
        │                                 (also a TimeoutError)
        ├── NotFoundError                 NOT_FOUND
        ├── AlreadyExistsError            ALREADY_EXISTS
        ├── PermissionDeniedError         PERMISSION_DENIED
        ├── ResourceExhaustedError        RESOURCE_EXHAUSTED
        ├── FailedPreconditionError       FAILED_PRECONDITION (also ABORTED)
        ├── UnimplementedError            UNIMPLEMENTED
        ├── InternalError                 INTERNAL, UNKNOWN, DATA_LOSS
        ├── UnavailableError              UNAVAILABLE, or the transport failed
        │                                 (.reached_server says if the request may
        │                                 have arrived: False only when provably not)
        └── UnauthenticatedError          UNAUTHENTICATED

grpclib raises `GRPCError`, `ConnectionRefusedError`/`OSError`,
`StreamTerminatedError` and plain `TimeoutError`; `map_error` turns each into
the class above so callers catch one family.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, ClassVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.exceptions import ProtocolError as _H2ProtocolError


class JDError(Exception):
    """Base of every jdkit error."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without calling __init__, whose arguments a subclass chooses
        # (ConfigError(field, problem)): so every error pickles, and crosses
        # process boundaries (multiprocessing, pytest-xdist) with its fields.
        return (_restore, (type(self), self.args), self.__dict__)


def _restore(cls: type[JDError], args: tuple[Any, ...]) -> JDError:
    exc = cls.__new__(cls, *args)
    exc.args = args
    return exc


class ConfigError(JDError, ValueError):
    """A configuration value is invalid; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class AuthError(JDError):
    """A token source failed to produce a token."""


class ChallengeRequiredError(AuthError):
    """Cognito wants the user to answer a challenge (e.g. set a new password)."""

    def __init__(self, challenge: str) -> None:
        self.challenge = challenge
        super().__init__(
            f"Cognito answered with challenge {challenge!r} instead of tokens; "
            "complete it for this user (e.g. in the Cognito console) and try again"
        )


class ProtocolError(JDError):
    """The server answered in a way a JD never should."""


class DryRunError(JDError):
    """A dry run was asked for something it cannot answer without writing."""


class ClientClosedError(JDError):
    """The client, or the client a dry-run view was made from, is closed."""


class WrongEventLoopError(JDError, RuntimeError):
    """A client was used outside the event loop it was connected in."""


class VersionError(JDError):
    """The JD is older than the client's `min_version`, or reports no comparable version."""

    def __init__(self, message: str, *, reported: str, minimum: str) -> None:
        super().__init__(message)
        self.reported = reported
        self.minimum = minimum


class RPCError(JDError):
    """A JD call failed with a gRPC status."""

    code: Status
    default_code: ClassVar[Status] = Status.UNKNOWN
    #: How many times the call was tried (more than 1 after retries).
    attempts: int = 1

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        code: Status | None = None,
        details: Any = None,
    ) -> None:
        self.code = code if code is not None else self.default_code
        self.method = method
        self.message = message
        self.details = details
        where = f" on {method}" if method else ""
        super().__init__(f"{self.code.name}{where}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.method, self.code))


def _rebuild(cls: type[RPCError], message: str, method: str, code: Status) -> RPCError:
    return cls(message, method=method, code=code)


class CancelledError(RPCError):
    """The call was cancelled (CANCELLED), by the server or the caller."""

    default_code = Status.CANCELLED


class InvalidArgumentError(RPCError):
    """The request was refused as malformed (INVALID_ARGUMENT, OUT_OF_RANGE); not retried."""

    default_code = Status.INVALID_ARGUMENT


class DeadlineExceededError(RPCError, TimeoutError):
    """The call's deadline passed, here or at the server; also a `TimeoutError`."""

    default_code = Status.DEADLINE_EXCEEDED


class NotFoundError(RPCError):
    """What the request names does not exist (NOT_FOUND)."""

    default_code = Status.NOT_FOUND


class AlreadyExistsError(RPCError):
    """A write would duplicate what exists, e.g. a node's public key (ALREADY_EXISTS)."""

    default_code = Status.ALREADY_EXISTS


class PermissionDeniedError(RPCError):
    """The caller is known but not allowed (PERMISSION_DENIED)."""

    default_code = Status.PERMISSION_DENIED


class ResourceExhaustedError(RPCError):
    """A limit was hit (RESOURCE_EXHAUSTED), e.g. a message larger than allowed."""

    default_code = Status.RESOURCE_EXHAUSTED
    #: True when this client refused the message itself (its own size limit);
    #: the same call would be refused again, so it is not retried.
    local: bool = False


class FailedPreconditionError(RPCError):
    """The request is valid but the state forbids it (FAILED_PRECONDITION, ABORTED)."""

    default_code = Status.FAILED_PRECONDITION


class UnimplementedError(RPCError):
    """The server does not have this method (UNIMPLEMENTED)."""

    default_code = Status.UNIMPLEMENTED


class InternalError(RPCError):
    """The server failed (INTERNAL, UNKNOWN, DATA_LOSS): not the caller's mistake."""

    default_code = Status.INTERNAL


class UnavailableError(RPCError):
    """The server could not be reached or answered UNAVAILABLE; see `reached_server`."""

    default_code = Status.UNAVAILABLE

    def __init__(self, message: str, *, reached_server: bool | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        #: False only when the request provably never reached the server.
        self.reached_server = reached_server


class UnauthenticatedError(RPCError):
    """The server refused the call's credentials (UNAUTHENTICATED)."""

    default_code = Status.UNAUTHENTICATED


_BY_CODE: dict[Status, type[RPCError]] = {
    Status.CANCELLED: CancelledError,
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.OUT_OF_RANGE: InvalidArgumentError,
    Status.DEADLINE_EXCEEDED: DeadlineExceededError,
    Status.NOT_FOUND: NotFoundError,
    Status.ALREADY_EXISTS: AlreadyExistsError,
    Status.PERMISSION_DENIED: PermissionDeniedError,
    Status.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    Status.FAILED_PRECONDITION: FailedPreconditionError,
    Status.ABORTED: FailedPreconditionError,
    Status.UNIMPLEMENTED: UnimplementedError,
    Status.INTERNAL: InternalError,
    Status.UNKNOWN: InternalError,
    Status.DATA_LOSS: InternalError,
    Status.UNAVAILABLE: UnavailableError,
    Status.UNAUTHENTICATED: UnauthenticatedError,
}


def error_for_status(
    code: Status, message: str, *, method: str = "", details: Any = None
) -> RPCError:
    cls = _BY_CODE.get(code, RPCError)
    return cls(message, method=method, code=code, details=details)


def map_error(exc: BaseException, method: str = "") -> BaseException:
    """Translate a grpclib or transport failure into the jdkit hierarchy.

    Anything that is not a transport or gRPC failure is returned unchanged.
    """
    if isinstance(exc, JDError):
        return exc
    if isinstance(exc, GRPCError):
        return error_for_status(
            exc.status, exc.message or exc.status.name, method=method, details=exc.details
        )
    if isinstance(exc, ConnectionRefusedError):
        return UnavailableError(
            f"connection refused ({exc.strerror or exc})", method=method, reached_server=False
        )
    if isinstance(exc, ssl.SSLError):
        # a rejected certificate is refused before any request byte; other TLS
        # failures may come after the request was written, so nothing is promised
        reached = False if isinstance(exc, ssl.SSLCertVerificationError) else None
        return UnavailableError(
            f"TLS handshake failed: {exc.reason or exc}", method=method, reached_server=reached
        )
    if isinstance(exc, StreamTerminatedError | _H2ProtocolError):
        return UnavailableError(f"stream terminated: {exc}", method=method, reached_server=None)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return DeadlineExceededError("deadline exceeded before the server answered", method=method)
    if isinstance(exc, OSError):
        # socket.gaierror and friends: name resolution and connect failures
        # happen before any byte of the request is written.
        reached = None if isinstance(exc, ConnectionResetError | BrokenPipeError) else False
        return UnavailableError(f"transport failed: {exc}", method=method, reached_server=reached)
    return exc
