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

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias, TypeVar

import betterproto2

from jdkit import selectors as _selectors
from jdkit.pb import job, label, node

#: What a `selector=` keyword accepts: selector text (`"env=dev, !canary"`), a
#: `Selector`, or several of either (all must match).
SelectorLike: TypeAlias = str | label.Selector | Iterable[str | label.Selector]

#: What a `labels=` keyword accepts: `Label`s, `"key=value"` text (a bare `key`
#: is a label without a value) or a mapping `{key: value-or-None}`.
LabelsLike: TypeAlias = Iterable[label.Label | str] | Mapping[str, str | None]

M = TypeVar("M", bound=betterproto2.Message)


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
    given = sorted(k for k, v in keywords.items() if v is not None)
    if request is not None and given:
        raise TypeError(
            f"{method}() takes a request object or keyword filters, not both "
            f"(got a {type(request).__name__} and {', '.join(given)})"
        )
    return request


def list_nodes(
    request: node.ListNodesRequest | None,
    *,
    selector: SelectorLike | None,
    enabled: bool | None,
    ids: Sequence[str] | None,
    public_keys: Sequence[str] | None,
    page_size: int | None,
    page: int | None,
) -> node.ListNodesRequest:
    kw = dict(
        selector=selector,
        enabled=enabled,
        ids=ids,
        public_keys=public_keys,
        page_size=page_size,
        page=page,
    )
    given = either("list_nodes", request, kw)
    if given is not None:
        return given
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected True, False or None, got {enabled!r}")
    state = (
        node.EnableState.UNSPECIFIED
        if enabled is None
        else node.EnableState.ENABLED
        if enabled
        else node.EnableState.DISABLED
    )
    flt = node.ListNodesRequestFilter(
        ids=id_list("ids", ids),
        enabled=state,
        selectors=selector_list(selector),
        public_keys=id_list("public_keys", public_keys),
    )
    return node.ListNodesRequest(filter=flt, page_size=page_size or 0, page=page or 0)


def get_node(
    request: node.GetNodeRequest | None, *, id: str | None, public_key: str | None
) -> node.GetNodeRequest:
    given = either("get_node", request, {"id": id, "public_key": public_key})
    if given is not None:
        return given
    if id is None and public_key is None:
        raise TypeError("get_node() needs a request, id= or public_key=")
    if id is not None and public_key is not None:
        # JD's GetNodeRequest is a oneof: it would silently look up by one of them
        raise TypeError("get_node() takes id= or public_key=, not both")
    return node.GetNodeRequest(id=id or "", public_key=public_key)


def list_jobs(
    request: job.ListJobsRequest | None,
    *,
    selector: SelectorLike | None,
    ids: Sequence[str] | None,
    node_ids: Sequence[str] | None,
    uuids: Sequence[str] | None,
    include_deleted: bool | None,
) -> job.ListJobsRequest:
    kw = dict(
        selector=selector, ids=ids, node_ids=node_ids, uuids=uuids, include_deleted=include_deleted
    )
    given = either("list_jobs", request, kw)
    if given is not None:
        return given
    flt = job.ListJobsRequestFilter(
        ids=id_list("ids", ids),
        node_ids=id_list("node_ids", node_ids),
        selectors=selector_list(selector),
        uuids=id_list("uuids", uuids),
        include_deleted=bool(include_deleted),
    )
    return job.ListJobsRequest(filter=flt)


def get_job(request: job.GetJobRequest | None, *, id: str | None) -> job.GetJobRequest:
    given = either("get_job", request, {"id": id})
    if given is not None:
        return given
    if id is None:
        raise TypeError("get_job() needs a request or id=")
    return job.GetJobRequest(id=id)


def list_proposals(
    request: job.ListProposalsRequest | None,
    *,
    ids: Sequence[str] | None,
    job_ids: Sequence[str] | None,
) -> job.ListProposalsRequest:
    given = either("list_proposals", request, {"ids": ids, "job_ids": job_ids})
    if given is not None:
        return given
    flt = job.ListProposalsRequestFilter(
        ids=id_list("ids", ids), job_ids=id_list("job_ids", job_ids)
    )
    return job.ListProposalsRequest(filter=flt)


def get_proposal(
    request: job.GetProposalRequest | None, *, id: str | None
) -> job.GetProposalRequest:
    given = either("get_proposal", request, {"id": id})
    if given is not None:
        return given
    if id is None:
        raise TypeError("get_proposal() needs a request or id=")
    return job.GetProposalRequest(id=id)


def list_node_chain_configs(
    request: node.ListNodeChainConfigsRequest | None, *, node_ids: Sequence[str] | None
) -> node.ListNodeChainConfigsRequest:
    given = either("list_node_chain_configs", request, {"node_ids": node_ids})
    if given is not None:
        return given
    return node.ListNodeChainConfigsRequest(
        filter=node.ListNodeChainConfigsRequestFilter(node_ids=id_list("node_ids", node_ids))
    )
