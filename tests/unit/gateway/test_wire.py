from __future__ import annotations

from multidict import CIMultiDict

from agent_operator.gateway.wire import HOP_BY_HOP, copy_headers, drop_set


def test_copy_headers_drops_hop_by_hop_and_what_connection_names() -> None:
    headers: CIMultiDict[str] = CIMultiDict(
        [
            ("Connection", "keep-alive, X-Internal-Hop"),
            ("X-Internal-Hop", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "5"),
            ("Accept", "a"),
            ("Accept", "b"),
        ]
    )
    out = copy_headers(headers, drop_set(HOP_BY_HOP))
    assert list(out.items()) == [("Accept", "a"), ("Accept", "b")]
