"""Keyword forms of the list/get calls: build the request a caller spelled as keywords.

    await jd.list_nodes(selector="env=dev", enabled=True)
    await jd.get_node(public_key=key)

is the same call as building `node.ListNodesRequest(filter=...)` by hand, in the
spirit of google-cloud clients' flattened arguments. A request object and
keywords together are ambiguous (which wins?), so that is a `TypeError`, as
is a bare `str` where a list of ids is meant (iterating it would send one id
per character).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Concatenate, ParamSpec, TypeAlias, TypeVar

import betterproto2

from jdkit import selectors as _selectors
from jdkit._exceptions import ConfigError
from jdkit.pb import job, label, node

#: What a `selector=` keyword accepts: selector text (`"env=dev, !canary"`), a
#: `Selector`, or several of either (all must match).
SelectorLike: TypeAlias = str | label.Selector | Iterable[str | label.Selector]

#: What a `labels=` keyword accepts: `Label`s, `"key=value"` text (a bare `key`
#: is a label without a value) or a mapping `{key: value-or-None}`.
LabelsLike: TypeAlias = Iterable[label.Label | str] | Mapping[str, str | None]

M = TypeVar("M", bound=betterproto2.Message)
P = ParamSpec("P")


def selector_list(value: SelectorLike | None) -> list[label.Selector]:
    """Selectors from text, `Selector` objects or a mix; `ConfigError` names bad text."""
    if value is None:
        return []
    if isinstance(value, str):
        return _selectors.parse(value)
    if isinstance(value, label.Selector):
        return [value]
    out: list[label.Selector] = []
    for item in value:
        if isinstance(item, label.Selector):
            out.append(item)
        elif isinstance(item, str):
            out.extend(_selectors.parse(item))
        else:
            raise TypeError(
                f"selector: expected selector text or a Selector, got {type(item).__name__}"
            )
    return out


def label_list(value: LabelsLike | None) -> list[label.Label]:
    """Labels from `Label`s, `key=value` text or a mapping."""
    if value is None:
        return []
    if isinstance(value, str):
        return _selectors.parse_labels(value)
    if isinstance(value, Mapping):
        return [
            label.Label(key=str(k), value=None if v is None else str(v)) for k, v in value.items()
        ]
    out: list[label.Label] = []
    for item in value:
        if isinstance(item, label.Label):
            out.append(item)
        elif isinstance(item, str):
            out.extend(_selectors.parse_labels(item))
        else:
            raise TypeError(f"labels: expected Label or 'key=value', got {type(item).__name__}")
    return out


def id_list(name: str, value: Sequence[str] | None) -> list[str]:
    """A list of ids; one bare `str` is refused rather than split into characters."""
    if value is None:
        return []
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} takes a list of ids, not one string: use {name}=[{value!r}]")
    out = list(value)
    for item in out:
        if not isinstance(item, str):
            raise TypeError(f"{name}: expected str ids, got {type(item).__name__}")
    return out


def either(method: str, request: M | None, keywords: Mapping[str, object]) -> M | None:
    """The request when given alone; `TypeError` when keywords come with it."""
    if request is None:
        return None
    given = [k for k, v in keywords.items() if v is not None]
    if given:
        raise TypeError(
            f"{method}() takes a request object or keyword filters, not both "
            f"(got a {type(request).__name__} and {', '.join(sorted(given))})"
        )
    return request


def keyword_form(
    method: str,
) -> Callable[[Callable[P, M]], Callable[Concatenate[M | None, P], M]]:
    """`build(**keywords)` as `form(request, **keywords)`: the request when given
    alone, `TypeError` when keywords come with it (`either`), else `build`'s."""

    def wrap(build: Callable[P, M]) -> Callable[Concatenate[M | None, P], M]:
        def form(request: M | None, /, *args: P.args, **keywords: P.kwargs) -> M:
            given = either(method, request, keywords)
            return given if given is not None else build(*args, **keywords)

        return form

    return wrap


@keyword_form("list_nodes")
def list_nodes(
    *,
    selector: SelectorLike | None,
    enabled: bool | None,
    ids: Sequence[str] | None,
    public_keys: Sequence[str] | None,
    page_size: int | None,
    page: int | None,
) -> node.ListNodesRequest:
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected True, False or None, got {enabled!r}")
    state = (
        node.EnableState.UNSPECIFIED
        if enabled is None
        else node.EnableState.ENABLED
        if enabled
        else node.EnableState.DISABLED
    )
    for name, value in (("page_size", page_size), ("page", page)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise ConfigError(name, f"must be a whole number >= 0 or None, got {value!r}")
    flt = node.ListNodesRequestFilter(
        ids=id_list("ids", ids),
        enabled=state,
        selectors=selector_list(selector),
        public_keys=id_list("public_keys", public_keys),
    )
    return node.ListNodesRequest(filter=flt, page_size=page_size or 0, page=page or 0)


@keyword_form("get_node")
def get_node(*, id: str | None, public_key: str | None) -> node.GetNodeRequest:
    if id is None and public_key is None:
        raise TypeError("get_node() needs a request, id= or public_key=")
    if id is not None and public_key is not None:
        # JD's GetNodeRequest is a oneof: it would silently look up by one of them
        raise TypeError("get_node() takes id= or public_key=, not both")
    return node.GetNodeRequest(id=id or "", public_key=public_key)


@keyword_form("list_jobs")
def list_jobs(
    *,
    selector: SelectorLike | None,
    ids: Sequence[str] | None,
    node_ids: Sequence[str] | None,
    uuids: Sequence[str] | None,
    include_deleted: bool | None,
) -> job.ListJobsRequest:
    flt = job.ListJobsRequestFilter(
        ids=id_list("ids", ids),
        node_ids=id_list("node_ids", node_ids),
        selectors=selector_list(selector),
        uuids=id_list("uuids", uuids),
        include_deleted=bool(include_deleted),
    )
    return job.ListJobsRequest(filter=flt)


@keyword_form("get_job")
def get_job(*, id: str | None) -> job.GetJobRequest:
    if id is None:
        raise TypeError("get_job() needs a request or id=")
    return job.GetJobRequest(id=id)


@keyword_form("list_proposals")
def list_proposals(
    *, ids: Sequence[str] | None, job_ids: Sequence[str] | None
) -> job.ListProposalsRequest:
    flt = job.ListProposalsRequestFilter(
        ids=id_list("ids", ids), job_ids=id_list("job_ids", job_ids)
    )
    return job.ListProposalsRequest(filter=flt)


@keyword_form("get_proposal")
def get_proposal(*, id: str | None) -> job.GetProposalRequest:
    if id is None:
        raise TypeError("get_proposal() needs a request or id=")
    return job.GetProposalRequest(id=id)


@keyword_form("list_node_chain_configs")
def list_node_chain_configs(*, node_ids: Sequence[str] | None) -> node.ListNodeChainConfigsRequest:
    return node.ListNodeChainConfigsRequest(
        filter=node.ListNodeChainConfigsRequestFilter(node_ids=id_list("node_ids", node_ids))
    )
