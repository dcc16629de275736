"""Tables for JD objects: plain text, rich, and escaped HTML for Jupyter."""

from __future__ import annotations

import datetime as dt
import io
import re
from html.parser import HTMLParser

import pytest
from rich.console import Console

from jdkit._cli._output import Output
from jdkit._dryrun import Journal
from jdkit.display import Detail, Table, show, table
from jdkit.pb import csa, job, label, node

T0 = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
KEY = "ab" * 32


def nodes() -> list[node.Node]:
    return [
        node.Node(
            id=f"node_{i}",
            name=f"node-{i}",
            public_key=KEY,
            is_enabled=i != 1,
            is_connected=i == 0,
            labels=[label.Label(key="env", value="dev"), label.Label(key="canary")],
            created_at=T0,
        )
        for i in range(3)
    ]


def proposal(**kw: object) -> job.Proposal:
    base: dict[str, object] = dict(
        id="prop_1",
        job_id="job_1",
        revision=2,
        status=job.ProposalStatus.APPROVED,
        delivery_status=job.ProposalDeliveryStatus.ACKNOWLEDGED,
        spec='name = "x"\nexternalJobID = "0000"\n',
        updated_at=T0,
    )
    base.update(kw)
    return job.Proposal(**base)  # type: ignore[arg-type]


def rich_text(obj: object, width: int = 200) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(obj)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def test_node_table_text() -> None:
    t = table(node.ListNodesResponse(nodes=nodes(), total_count=3))
    assert isinstance(t, Table) and t.kind is node.Node
    lines = str(t).splitlines()
    assert lines[0].split() == [
        "ID", "NAME", "PUBLIC", "KEY", "ENABLED", "CONNECTED", "LABELS", "CREATED",
    ]  # fmt: skip
    assert re.match(
        r"node_0\s+node-0\s+abababab…abab\s+yes\s+yes\s+env=dev, canary\s+2024-05-06 07:08:09Z",
        lines[1],
    )
    assert re.search(r"\bno\s+no\b", lines[2])
    assert repr(t) == str(t)  # a REPL shows the table, not dataclass dumps
    wide = table(nodes(), wide=True)
    assert KEY in str(wide)


def test_table_is_still_the_list() -> None:
    ns = nodes()
    t = table(ns)
    assert isinstance(t, list) and t == ns and t[1] is ns[1] and len(t) == 3
    assert [n.id for n in t] == ["node_0", "node_1", "node_2"]


def test_paged_listing_title() -> None:
    t = table(node.ListNodesResponse(nodes=nodes()[:2], total_count=10))
    assert str(t).splitlines()[0] == "2 of 10 nodes"


def test_jobs_proposals_keys_chain_configs() -> None:
    j = job.Job(id="job_1", uuid="u-1", node_id="node_1", proposal_ids=["p1", "p2"], created_at=T0)
    text = str(table(job.ListJobsResponse(jobs=[j])))
    assert re.search(r"job_1\s+u-1\s+node_1\s+2\s+p2", text)

    text = str(table(job.ListProposalsResponse(proposals=[proposal()])))
    assert re.search(r"prop_1\s+job_1\s+2\s+APPROVED\s+ACKNOWLEDGED", text)

    text = str(table(csa.ListKeypairsResponse(keypairs=[csa.Keypair(id=1, public_key=KEY)])))
    assert KEY in text  # a keypair table shows the whole key: it is the point

    cc = node.ChainConfig(
        node_id="node_1",
        chain=node.Chain(id="1", type=node.ChainType.EVM),
        account_address="0x" + "12" * 20,
        ocr2_config=node.Ocr2Config(
            enabled=True, p2p_key_bundle=node.Ocr2ConfigP2PKeyBundle(peer_id="peer")
        ),
    )
    text = str(table(node.ListNodeChainConfigsResponse(chain_configs=[cc])))
    assert re.search(r"node_1\s+1\s+EVM\s+0x121212…1212\s+no\s+yes\s+peer", text)


def test_empty() -> None:
    assert str(table([])) == "(none)"
    assert "none" in table(node.ListNodesResponse())._repr_html_()
    assert "none" in rich_text(table([]))


def test_detail_of_one_object() -> None:
    d = table(job.GetProposalResponse(proposal=proposal()))
    assert isinstance(d, Detail) and d.title == "Proposal"
    text = str(d)
    assert re.search(r"status\s+APPROVED", text)
    assert re.search(r'spec\s+name = "x"\n\s+externalJobID = "0000"', text)  # multi-line kept
    assert "acked_at" not in text  # unset fields say nothing
    assert re.search(r"is_enabled\s+no", str(table(node.Node(id="n", is_enabled=False))))


def test_batch_results() -> None:
    resp = job.BatchProposeJobResponse(
        success_responses={"node_b": job.ProposeJobResponse(proposal=proposal(id="prop_b"))},
        failed_responses={"node_a": job.ProposeJobFailure(error_message="node not found")},
    )
    t = table(resp)
    lines = str(t).splitlines()
    assert lines[0] == "1 proposed, 1 failed"
    assert re.match(r"node_b\s+ok\s+prop_b\s+2", lines[2])
    assert re.match(r"node_a\s+failed\s+node not found", lines[3])


def test_journal_table() -> None:
    journal = Journal()
    assert str(table(journal)).endswith("none")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_escapes_every_value() -> None:
    evil = '<script>alert("x")</script>&amp;'
    n = node.Node(
        id="node_<b>",
        name=evil,
        public_key="k",
        labels=[label.Label(key="a'b", value='"><img src=x onerror=alert(1)>')],
    )
    html = table([n], title="<i>title</i>")._repr_html_()
    assert "<script>" not in html and "<img" not in html and "<i>" not in html
    parser = _Collect()
    parser.feed(html)
    assert set(parser.tags) <= {"table", "caption", "thead", "tbody", "tr", "th", "td"}
    text = "".join(parser.text)
    assert evil in text and "node_<b>" in text and "<i>title</i>" in text  # shown, not run

    detail = table(proposal(spec="<b>bold?</b>\nsecond line"))._repr_html_()
    assert "<b>" not in detail and "&lt;b&gt;bold?&lt;/b&gt;" in detail
    assert "<pre>" in detail  # multi-line values keep their lines


def test_rich_rendering() -> None:
    out = rich_text(table(node.ListNodesResponse(nodes=nodes())))
    assert "Public key" in out and "node-2" in out and "env=dev, canary" in out
    out = rich_text(table(proposal()))
    assert "APPROVED" in out and 'externalJobID = "0000"' in out
    many = [node.Node(id=f"node_{i}", name="x") for i in range(12)]
    assert "12 nodes" in rich_text(table(many))  # long tables say how many


def test_show_prints(capsys: pytest.CaptureFixture[str]) -> None:
    show(node.ListNodesResponse(nodes=nodes()))
    out = capsys.readouterr().out  # not a terminal: the plain table, every column
    assert "node-1" in out and "CONNECTED" in out and "CREATED" in out


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_output_rich_on_a_terminal_plain_in_a_pipe() -> None:
    tty, pipe = _TTY(), io.StringIO()
    Output(stdout=tty, stderr=io.StringIO()).result(node.ListNodesResponse(nodes=nodes()))
    Output(stdout=pipe, stderr=io.StringIO()).result(node.ListNodesResponse(nodes=nodes()))
    assert "─" in tty.getvalue()  # rich's rule under the header
    assert "─" not in pipe.getvalue() and pipe.getvalue().startswith("ID ")


def test_cli_progress_draws_only_on_a_terminal() -> None:
    err = _TTY()
    out = Output(stdout=io.StringIO(), stderr=err)
    with out.progress("proposing", 4) as advance:
        advance(2)
        advance(2)
    quiet = io.StringIO()
    with Output(stdout=io.StringIO(), stderr=quiet).progress("x", 3) as advance:
        advance(3)
    assert quiet.getvalue() == ""
    with Output(json_mode=True, stdout=io.StringIO(), stderr=err).progress("x", 1) as advance:
        advance(1)


def test_ids_are_never_cut_in_a_narrow_terminal() -> None:
    from rich.console import Console

    from jdkit import table
    from jdkit.pb import label, node

    nodes = [
        node.Node(
            id=f"node_01m8ef3n4v2fpq2vtdnzpjvrv{i}",
            name=f"a-rather-long-node-name-{i}",
            public_key="ab" * 32,
            labels=[label.Label(key="env", value="dev")],
        )
        for i in range(3)
    ]
    console = Console(width=60, record=True, color_system=None)
    console.print(table(nodes))
    text = console.export_text()
    for n in nodes:
        assert n.id in text
