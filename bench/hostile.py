"""Hostile-load benchmark: the gateway's memory and service under body attacks.

The gateway is started exactly as the operator renders it (the harness of
tests/e2e/hostile), with an in-process fake agent that discards bodies and
a fake provider. For `--seconds`, `--bombers` clients post gzip bombs and
oversized bodies to the inbound door while `--callers` clients send small
benign requests; the gateway's RSS is sampled every 0.25 s. The same load
runs twice, prompt guard `block` (bodies read and screened) and `off`
(bodies streamed to the agent unread), and both columns are reported.
Prints a table and writes bench/results/hostile.json. See bench/README.md.

    .venv/bin/python bench/hostile.py [--seconds 60] [--bombers 20] [--callers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness and the fakes live under tests/

from tests.e2e.hostile.harness import (  # noqa: E402
    CLIENT_KEY,
    RSS_LIMIT_MB,
    RecordingUpstream,
    RssWatch,
    SinkAgent,
    exchange,
    gzip_bomb,
    http_request,
    manifest,
    start_gateway,
)

RESULTS = ROOT / "bench" / "results" / "hostile.json"
MIB = 1 << 20
BENIGN = json.dumps(
    {"messages": [{"role": "user", "content": "What is the weather in Paris tomorrow?"}]}
).encode()
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
JSON = {"Content-Type": "application/json"}
MODES = ("block", "off")


def payloads(large_mb: int, bomb_mb: int) -> dict[str, bytes]:
    """The hostile requests, built once: name -> the request's bytes."""
    big = b'{"input": "' + b"x" * (large_mb * MIB) + b'"}'
    piece = 256 * 1024
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(big[i : i + piece]), big[i : i + piece])
        for i in range(0, len(big), piece)
    )
    gzip_head = {**AUTH, **JSON, "Content-Encoding": "gzip"}
    return {
        "gzip_bomb": http_request("POST", "/chat", gzip_head, gzip_bomb(bomb_mb)),
        "large_body": http_request("POST", "/chat", {**AUTH, **JSON}, big),
        "large_chunked": http_request(
            "POST", "/chat", {**AUTH, **JSON, "Transfer-Encoding": "chunked"}, chunks + b"0\r\n\r\n"
        ),
    }


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run_mode(
    mode: str, args: argparse.Namespace, attacks: dict[str, bytes]
) -> dict[str, Any]:
    """One gateway, one load run; the figures of that run."""
    with tempfile.TemporaryDirectory(prefix=f"bench-hostile-{mode}-") as tmp:
        async with RecordingUpstream() as upstream, SinkAgent() as agent:
            body = manifest(upstream.url + "/v1", agent.port, guard=mode)
            async with start_gateway(Path(tmp), body, echo_log=False) as gw:
                async with aiohttp.ClientSession() as warm:
                    for _ in range(20):  # warm-up: first requests allocate pools and caches
                        async with warm.post(
                            gw.inbound_url + "/chat", data=BENIGN, headers={**AUTH, **JSON}
                        ) as r:
                            await r.read()
                await asyncio.sleep(0.5)
                watch = RssWatch(gw.process, interval=0.25, ceiling_mb=args.rss_ceiling_mb)
                async with watch:
                    result = await load(gw.inbound, gw.inbound_url, args, attacks, watch)
                    await asyncio.sleep(2.0)  # settle: what stays after the attack
                result.update(
                    rss_before_mb=round(watch.before, 1),
                    rss_peak_mb=round(watch.peak, 1),
                    rss_after_mb=round(watch.after, 1),
                    killed_at_ceiling=watch.killed,
                    agent_requests=agent.requests,
                    agent_bytes=agent.bytes,
                    gateway_alive=gw.process.poll() is None,
                )
                return result


async def load(
    addr: tuple[str, int],
    url: str,
    args: argparse.Namespace,
    attacks: dict[str, bytes],
    watch: RssWatch,
) -> dict[str, Any]:
    stop_at = time.monotonic() + args.seconds
    answers: dict[str, Counter[str]] = {name: Counter() for name in attacks}
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    names = list(attacks)

    async def bomber(index: int) -> None:
        turn = index
        while time.monotonic() < stop_at and not watch.killed:
            name = names[turn % len(names)]
            turn += 1
            try:
                r = await exchange(addr, attacks[name], timeout=30)
                answers[name][str(r.status) if r.status is not None else "closed"] += 1
            except OSError as exc:
                answers[name][type(exc).__name__] += 1

    async def caller() -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < stop_at and not watch.killed:
                started = time.perf_counter()
                try:
                    async with session.post(
                        url + "/chat", data=BENIGN, headers={**AUTH, **JSON}
                    ) as r:
                        await r.read()
                        status = str(r.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = type(exc).__name__
                if status == "200":
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    failures[status] += 1

    await asyncio.gather(
        *(bomber(i) for i in range(args.bombers)), *(caller() for _ in range(args.callers))
    )
    return {
        "benign_ok": len(latencies),
        "benign_failed": sum(failures.values()),
        "benign_failures": dict(failures),
        "benign_p50_ms": round(percentile(latencies, 0.5) or 0, 2),
        "benign_p99_ms": round(percentile(latencies, 0.99) or 0, 2),
        "benign_mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
        "hostile_answers": {name: dict(c) for name, c in answers.items()},
        "hostile_requests": sum(sum(c.values()) for c in answers.values()),
    }


def table(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = [["", *(f"guard {m}" for m in results)]]

    def row(label: str, key: str, fmt: str = "{}") -> None:
        rows.append([label, *(fmt.format(r.get(key)) for r in results.values())])

    row("RSS before (MB)", "rss_before_mb")
    row("RSS peak (MB)", "rss_peak_mb")
    row("RSS after (MB)", "rss_after_mb")
    row("benign ok", "benign_ok")
    row("benign failed", "benign_failed")
    row("benign p50 (ms)", "benign_p50_ms")
    row("benign p99 (ms)", "benign_p99_ms")
    row("hostile requests", "hostile_requests")
    for name in next(iter(results.values()))["hostile_answers"]:
        rows.append(
            [
                f"  {name} answers",
                *(
                    " ".join(f"{k}:{v}" for k, v in sorted(r["hostile_answers"][name].items()))
                    for r in results.values()
                ),
            ]
        )
    row("agent bytes received", "agent_bytes")
    rows.append(
        [
            f"target: peak < {RSS_LIMIT_MB:.0f} MB, no benign failure",
            *(
                "PASS"
                if r["rss_peak_mb"] < RSS_LIMIT_MB and r["benign_failed"] == 0 and r["benign_ok"]
                else "FAIL"
                for r in results.values()
            ),
        ]
    )
    return rows


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="load per mode (60)")
    parser.add_argument("--bombers", type=int, default=20, help="hostile clients (20)")
    parser.add_argument("--callers", type=int, default=4, help="benign clients (4)")
    parser.add_argument("--large-mb", type=int, default=8, help="oversized body, MiB (8)")
    parser.add_argument("--bomb-mb", type=int, default=60, help="gzip bomb expanded, MB (60)")
    parser.add_argument(
        "--rss-ceiling-mb",
        type=float,
        default=1000.0,
        help="kill the gateway above this RSS: protects the machine (1000)",
    )
    parser.add_argument("--modes", default=",".join(MODES), help="guard modes (block,off)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    attacks = payloads(args.large_mb, args.bomb_mb)
    bomb = gzip_bomb(args.bomb_mb)
    print(
        f"gzip bomb: {len(bomb) / 1024:.0f} KB expanding to {args.bomb_mb} MB; "
        f"large bodies: {args.large_mb} MiB; {args.bombers} hostile + {args.callers} benign "
        f"clients, {args.seconds:g} s per mode"
    )
    results: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        print(f"[guard {mode}] ...", flush=True)
        results[mode] = asyncio.run(run_mode(mode, args, attacks))
    rows = table(results)
    print()
    print_table(rows)
    document = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(
                ["bench/hostile.py", *(argv if argv is not None else sys.argv[1:])]
            ),
            "seconds": args.seconds,
            "bombers": args.bombers,
            "callers": args.callers,
            "gzip_bomb_bytes": len(bomb),
            "gzip_bomb_expanded_mb": args.bomb_mb,
            "large_body_mib": args.large_mb,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
        },
        "target": {"rss_peak_mb": RSS_LIMIT_MB, "benign_failed": 0},
        "results": results,
        "table": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
