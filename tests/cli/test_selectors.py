"""`jdkit.selectors`: the text form of label selectors and labels (used by the CLI)."""

from __future__ import annotations

import pytest

from jdkit import ConfigError, selectors
from jdkit._server import selector_matches
from jdkit.pb import label

Op = label.SelectorOp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("env=prod", [("env", Op.EQ, "prod")]),
        ("env==prod", [("env", Op.EQ, "prod")]),
        ("env = prod", [("env", Op.EQ, "prod")]),
        ("env=", [("env", Op.EQ, "")]),
        ("env!=prod", [("env", Op.NOT_EQ, "prod")]),
        ("region in (eu, us)", [("region", Op.IN, "eu,us")]),
        ("region notin (eu,us ,ap)", [("region", Op.NOT_IN, "eu,us,ap")]),
        ("canary", [("canary", Op.EXIST, None)]),
        ("!canary", [("canary", Op.NOT_EXIST, None)]),
        ("! canary", [("canary", Op.NOT_EXIST, None)]),
        ("team/owner=a.b-c_d", [("team/owner", Op.EQ, "a.b-c_d")]),
        (
            "env=prod, region in (eu,us),!deprecated ,tier",
            [
                ("env", Op.EQ, "prod"),
                ("region", Op.IN, "eu,us"),
                ("deprecated", Op.NOT_EXIST, None),
                ("tier", Op.EXIST, None),
            ],
        ),
        ("", []),
        ("   ", []),
    ],
)
def test_parse(text: str, expected: list[tuple[str, label.SelectorOp, str | None]]) -> None:
    got = selectors.parse(text)
    assert [(s.key, s.op, s.value) for s in got] == expected
    # and back: format then parse gives the same selectors
    again = selectors.parse(selectors.format(got))
    assert [(s.key, s.op, s.value) for s in again] == expected


def test_repeated_expressions_are_anded() -> None:
    got = selectors.parse(["env=prod", "region in (eu,us)", ""])
    assert [s.key for s in got] == ["env", "region"]


def test_format() -> None:
    sels = selectors.parse("a=1,b!=2,c in (x,y),d notin (z),e,!f")
    assert selectors.format(sels) == "a=1, b!=2, c in (x,y), d notin (z), e, !f"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("env in prod", "go in ( )"),
        ("env in ()", "empty set"),
        ("env in (a,,b)", "empty item"),
        ("env in (a", "never closed"),
        ("env=a)", "without '('"),
        ("env in ((a))", "nested"),
        ("a,,b", "position 3"),
        ("a,", "stray comma"),
        ("env=a b", "bad value"),
        ("env=a=b", "bad value"),
        ("env ~ prod", "unknown operator '~'"),
        ("env is prod", "unknown operator 'is'"),
        ("!", "cannot parse"),
        ("=prod", "cannot parse"),
    ],
)
def test_parse_errors_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        selectors.parse(text)
    assert info.value.field == "selector"
    assert problem in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("labels", "text", "matches"),
    [
        ({"env": "prod"}, "env=prod", True),
        ({"env": "dev"}, "env=prod", False),
        ({"env": "dev"}, "env!=prod", True),
        ({}, "env!=prod", False),  # a missing key only satisfies NOT_EXIST
        ({"region": "us"}, "region in (eu, us)", True),
        ({"region": "ap"}, "region notin (eu,us)", True),
        ({"region": None}, "region in (eu)", False),  # a label without a value
        ({"canary": None}, "canary", True),
        ({"canary": None}, "!canary", False),
        ({"env": "prod", "tier": "1"}, "env=prod,tier in (1,2),!deprecated", True),
        ({"env": "prod", "deprecated": "yes"}, "env=prod,!deprecated", False),
    ],
)
def test_parsed_selectors_mean_what_the_server_does(
    labels: dict[str, str | None], text: str, matches: bool
) -> None:
    sels = selectors.parse(text)
    assert selector_matches(labels, sels) is matches  # the server's matcher (a list)


def test_parse_labels() -> None:
    got = selectors.parse_labels(["env=prod", "canary", "empty=", "url=http://x?a=b,c"])
    assert [(lb.key, lb.value) for lb in got] == [
        ("env", "prod"),
        ("canary", None),
        ("empty", ""),
        ("url", "http://x?a=b,c"),
    ]
    assert selectors.format_labels(got) == "env=prod, canary, empty=, url=http://x?a=b,c"
    assert [lb.key for lb in selectors.parse_labels("single=1")] == ["single"]


@pytest.mark.parametrize(
    ("items", "problem"),
    [(["=v"], "bad key"), (["a b=c"], "bad key"), (["k=1", "k=2"], "given twice"), ([""], "bad")],
)
def test_parse_labels_errors(items: list[str], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        selectors.parse_labels(items)
    assert info.value.field == "label" and problem in str(info.value)
