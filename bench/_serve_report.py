"""serve_bench.py's figures: latency percentiles, the server's fan-out histogram, the table
printed with each peer's ratio, and the PASS/FAIL lines of issue 15's targets."""

from __future__ import annotations

from collections import Counter
from typing import Any

from _serve_clients import BUCKET_NS

KINDS = ("runcast", "redis", "peer", "nchan")


def percentiles(hist: Counter[int], qs: tuple[float, ...]) -> list[float]:
    total = sum(hist.values())
    out = []
    keys = sorted(hist)
    for q in qs:
        want, acc = q * total, 0
        for k in keys:
            acc += hist[k]
            if acc >= want:
                out.append(k * BUCKET_NS / 1e6)
                break
        else:
            out.append(float("nan"))
    return out


def bucket_quantile(cumulative: Counter[float], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of a cumulative histogram (NaN when
    it is empty: a server without the metric)."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return float("nan")
    want = q * cumulative[bounds[-1]]
    return next(b for b in bounds if cumulative[b] >= want)


COLUMNS = (
    ("deliv/s", "deliveries_per_s", "{:>10,.0f}", True),
    ("p50 ms", "latency_p50_ms", "{:>7.2f}", False),
    ("p99 ms", "latency_p99_ms", "{:>7.2f}", False),
    ("max ms", "latency_max_ms", "{:>8.1f}", False),
    ("creator", "creator_lag_max_ms", "{:>8.1f}", False),
    ("stall", "stall_max_ms", "{:>7.1f}", False),
    ("connect s", "connect_s", "{:>9.2f}", False),
    ("cores", "server_cpu_cores", "{:>5.2f}", False),
    ("srv p50", "server_fanout_p50_ms", "{:>7.1f}", False),
    ("srv p99", "server_fanout_p99_ms", "{:>7.1f}", False),
    ("cli", "client_cpu_cores", "{:>4.2f}", False),
)


CLIENT_KINDS = {
    "native": "native (bench/native/subscribers.c, epoll)",
    "python": "python (_serve_clients.py, uvloop)",
}


def print_table(results: list[dict[str, Any]]) -> None:
    index = {(r["server"], r["transport"], r["n"], r["mode"]): r for r in results}
    kinds = sorted({r.get("clients", "python") for r in results})
    print("subscriber clients: " + ", ".join(CLIENT_KINDS.get(k, k) for k in kinds))
    head = f"{'transport':<9} {'N':>6} {'mode':<6} {'server':<8} " + " ".join(
        f"{name:>{len(fmt.format(0)) if 'f' in fmt else 8}}" for name, _, fmt, _ in COLUMNS
    )
    head += f" {'RSS/sub':>8} {'kept':>7} {'lost':>5} {'dup':>4}"
    print(head)
    print("-" * len(head))
    cases = sorted({(t, n, m) for (_, t, n, m) in index}, key=lambda c: (c[0], c[1], c[2]))
    for t, n, m in cases:
        for kind in KINDS:
            r = index.get((kind, t, n, m))
            if r is None:
                continue
            cells = " ".join(fmt.format(r[key]) for _, key, fmt, _ in COLUMNS)
            print(
                f"{t:<9} {n:>6} {m:<6} {kind:<8} {cells} "
                f"{r['rss_idle_per_subscriber_bytes'] / 1024:>6.1f}Ki "
                f"{r['rss_after_leave_growth_bytes'] / 2**20:>5.1f}Mi {r['lost']:>5} {r['duplicates']:>4}"
            )
        for label, (x, y) in (
            ("x peer", ("runcast", "peer")),
            ("x nchan", ("runcast", "nchan")),
            ("redis/mem", ("redis", "runcast")),
        ):
            a, b = index.get((x, t, n, m)), index.get((y, t, n, m))
            if a and b:
                cells = " ".join(
                    (f"{a[key] / b[key]:>{len(fmt.format(0))}.2f}x" if b[key] else "-").rjust(
                        len(fmt.format(0))
                    )
                    for _, key, fmt, _ in COLUMNS
                )
                print(f"{'':<9} {'':>6} {'':<6} {label:<9}{cells}")
    print()
    for r in results:
        if r["server"] == "redis":
            print(
                f"redis {r['transport']} N={r['n']} {r['mode']}: {r['nodes']} nodes, "
                f"{r['broker_round_trips_per_event']:.2f} broker round trips and "
                f"{r['evalsha_per_event']:.2f} EVALSHA per published event, "
                f"Redis CPU {r['redis_cpu_cores']:.2f} cores (the nodes' CPU is under 'cores')"
            )
    for r in results:
        if r["connected"] < r["n"]:
            late = r["n"] - r["connected"] - r["connect_failures"]
            print(
                f"{r['server']} {r['transport']} N={r['n']} {r['mode']}: {r['connected']:,} of "
                f"{r['n']:,} subscribers connected ({r['connect_failures']} refused or reset, "
                f"{late} not answered in time); its figures are over those connected"
            )
    for name, ok, value in checks(results):
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({value:.2f})")


def checks(results: list[dict[str, Any]]) -> list[tuple[str, bool, float]]:
    """Issue 15's targets (nchan absent: the aiohttp peer stands in for the throughput one)."""
    index = {(r["server"], r["transport"], r["n"], r["mode"]): r for r in results}
    out = []
    for (kind, t, n, m), r in sorted(index.items()):
        if kind != "runcast":
            continue
        out.append((f"{t} N={n} {m}: 0 lost, 0 duplicated", not r["lost"] and not r["duplicates"],
                    float(r["lost"] + r["duplicates"])))  # fmt: skip
        peer = index.get(("peer", t, n, m))
        ceiling = index.get(("nchan", t, n, m))
        if t == "sse" and n == 1000 and m == "burst" and ceiling:
            ratio = r["deliveries_per_s"] / ceiling["deliveries_per_s"]
            out.append(("sse N=1000 burst deliveries/s >= 1.0x nchan", ratio >= 1, ratio))
        elif t == "sse" and n == 1000 and m == "burst" and peer:
            ratio = r["deliveries_per_s"] / peer["deliveries_per_s"]
            out.append(("sse N=1000 burst deliveries/s >= 4x the aiohttp peer", ratio >= 4, ratio))
        if t == "sse" and n == 1000 and m == "paced":
            out.append(
                ("sse N=1000 paced p99 <= 10 ms", r["latency_p99_ms"] <= 10, r["latency_p99_ms"])
            )
        if t == "sse" and n == 1000:
            lag = r["creator_lag_max_ms"]
            out.append((f"sse N=1000 {m}: creator <= 50 ms behind", lag <= 50, lag))
            out.append(
                (f"sse N=1000 {m}: worst stall < 50 ms", r["stall_max_ms"] < 50, r["stall_max_ms"])
            )
        mem = index.get(("runcast", t, n, m))
        redis = index.get(("redis", t, n, m))
        if kind == "runcast" and mem and redis:
            ratio = redis["deliveries_per_s"] / mem["deliveries_per_s"]
            out.append(
                (f"{t} N={n} {m}: Redis mode >= 0.7x memory deliveries/s", ratio >= 0.7, ratio)
            )
            if m == "paced":
                extra = redis["latency_p99_ms"] - mem["latency_p99_ms"]
                out.append(
                    (f"{t} N={n} paced: Redis p99 within memory p99 + 5 ms", extra <= 5, extra)
                )
            out.append(
                (f"{t} N={n} {m}: Redis mode 0 lost, 0 duplicated",
                 not redis["lost"] and not redis["duplicates"], float(redis["lost"] + redis["duplicates"]))
            )  # fmt: skip
        if n >= 10_000:
            ok = r["connect_s"] < 5 and r["connected"] == n
            out.append((f"{t} N={n}: all connect in < 5 s", ok, r["connect_s"]))
    return out


# -- main ---------------------------------------------------------------------------------------
