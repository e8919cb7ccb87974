#!/usr/bin/env python3
"""Writes benches/results/latest.md from compare.sh's raw runs (one JSON line per run).

Usage: compare_report.py RESULTS.jsonl COMMANDS.tsv CALLGRIND.txt > latest.md
The run's circumstances (date, machine, pinning, load averages, commits) come from the
environment, set by compare.sh: REPORT_DATE, REPORT_MACHINE, REPORT_THREADS, REPORT_RUNS,
REPORT_DURATION, REPORT_WARMUP, REPORT_PINNING, REPORT_LOADAVG_START, REPORT_LOADAVG_END,
REPORT_COMMIT, REPORT_COTURN, REPORT_BASELINE (the build behind the `tern-base` runs, if any),
REPORT_HOLD, REPORT_HOLD_ASKED, REPORT_HARD_NOFILE (the TLS hold's size and what bounded it),
REPORT_TLS12 (1 when the generator offered TLS 1.2 only).
"""

import json
import os
import statistics
import sys

# A run is generator-limited when the generator used at least this share of its CPU while the
# server stayed below SERVER_BELOW; server-limited when the server used at least SERVER_FULL.
GENERATOR_FULL = 0.95
SERVER_BELOW = 0.90
SERVER_FULL = 0.95
# A run shared its CPUs with other work when everything else took at least this share of a CPU.
OTHERS_BUSY = 0.25
KINDS = ("tern", "tern-base", "coturn", "bare", "bare-uring")
# The targets for TURN over TCP and TLS, tern/coturn: relayed pkt/s at least, CPU per
# packet and p99 at most; held TLS allocations: KiB of server RSS each at most.
TARGET_PPS = 1.5
TARGET_CPU = 0.6
TARGET_P99 = 1.0
TARGET_RSS_KIB = 32

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
cmds = [line.rstrip("\n").split("\t") for line in open(sys.argv[2]) if line.strip()]
callgrind = open(sys.argv[3]).read().splitlines() if len(sys.argv) > 3 else []
env = os.environ.get

loads = []
for r in rows:
    if r["label"] not in loads:
        loads.append(r["label"])


def is_alloc(load):
    return load.startswith("alloc")


def is_stream(load):
    return load.startswith(("tcp:", "tls:"))


def section(load):
    if is_alloc(load):
        return "alloc"
    if is_stream(load):
        return "hold" if " hold " in load else "stream"
    if load.startswith("bursty"):
        return "bursty"
    if "allocations" in load:
        return "real"
    return "browser"


def valid(r):
    # A run counts when the generator finished, the server's CPU could be read at both ends
    # of the window (it was alive throughout) and no session failed to set up.
    return (
        not r.get("error")
        and r.get("server_cpu_s") is not None
        and (is_alloc(r["label"]) or section(r["label"]) == "hold" or r.get("failures") == 0)
    )


def runs(load, kind):
    return [r for r in rows if r["label"] == load and r["kind"] == kind]


def med(load, kind, f):
    xs = [r[f] for r in runs(load, kind) if valid(r) and r.get(f) is not None]
    return statistics.median(xs) if xs else None


def share(load, kind, f):
    """Median share of one CPU over the window (server_cpu_s or generator_cpu_s)."""
    xs = [r[f] / r["seconds"] for r in runs(load, kind) if valid(r) and r.get(f) is not None and r.get("seconds")]
    return statistics.median(xs) if xs else None


def capacity(load, kind):
    """Per-core capacity: relayed packets/s one core would carry at the measured CPU per packet."""
    us = med(load, kind, "cpu_s_per_million")
    return None if not us else 1e6 / us


def limit(load, kind):
    g, s = share(load, kind, "generator_cpu_s"), share(load, kind, "server_cpu_s")
    o = share(load, kind, "other_cpu_s")
    if g is None or s is None:
        return "-"
    if g >= GENERATOR_FULL and s < SERVER_BELOW:
        return "**generator**"
    if s >= SERVER_FULL:
        return "server"
    if g >= GENERATOR_FULL:
        return "both"
    if o is not None and o >= OTHERS_BUSY:
        return "*other work*"
    modes = {r.get("mode") for r in runs(load, kind)}
    if modes == {"open"}:
        return "offered rate"
    return "neither"


def n(load, kind):
    ok = sum(1 for r in runs(load, kind) if valid(r))
    total = len(runs(load, kind))
    return f"{ok}/{total}" if ok else 0


def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"


def pct(x):
    return "-" if x is None else f"{x * 100:.0f} %"


def ratio(a, b):
    return "-" if a is None or b in (None, 0) else f"{a / b:.2f}"


def per_round(load, a, b, f):
    # Ratio of each run of a to the run of b in the same round (adjacent in time, so under
    # the same background load), in run order.
    out = [
        ratio(x.get(f), y.get(f)) if valid(x) and valid(y) else "-"
        for x, y in zip(runs(load, a), runs(load, b))
    ]
    return " / ".join(out) if out else "-"


def relay_table(sec):
    print(
        "| load | server | relayed pkt/s | per-core capacity, pkt/s | payload Mbit/s | "
        "RTT p50 / p99 / p99.9 (µs) | loss | server CPU | CPU µs per pkt | generator CPU | everything else | limit | runs |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for load in loads:
        if section(load) != sec:
            continue
        for kind in KINDS:
            if n(load, kind) == 0:
                continue
            loss = med(load, kind, "loss")
            print(
                f"| {load} | {kind} | {fmt(med(load, kind, 'relayed_pps'))} | {fmt(capacity(load, kind))} | "
                f"{fmt(med(load, kind, 'mbit_per_s'), 1)} | "
                f"{fmt(med(load, kind, 'p50_us'))} / {fmt(med(load, kind, 'p99_us'))} / {fmt(med(load, kind, 'p999_us'))} | "
                f"{'-' if loss is None else f'{loss * 100:.3f} %'} | {pct(share(load, kind, 'server_cpu_s'))} | "
                f"{fmt(med(load, kind, 'cpu_s_per_million'), 2)} | {pct(share(load, kind, 'generator_cpu_s'))} | "
                f"{pct(share(load, kind, 'other_cpu_s'))} | {limit(load, kind)} | {n(load, kind)} |"
            )
    print()


print("# tern vs coturn vs bare forwarder (loopback)")
print()
print(
    f"Generated by `benches/compare.sh` on {env('REPORT_DATE', '?')}. Machine: {env('REPORT_MACHINE', '?')}."
)
print(
    f"Relay threads: {env('REPORT_THREADS', '?')}. Runs per server and load: {env('REPORT_RUNS', '?')} (medians shown), "
    "interleaved tern, coturn, bare (and bare-uring in the open 100 B loads). "
    f"Measured window {env('REPORT_DURATION', '?')} s after {env('REPORT_WARMUP', '?')} s warm-up. "
    f"Pinning: {env('REPORT_PINNING', '?')}."
)
print(
    f"Load average (1/5/15 min) before: {env('REPORT_LOADAVG_START', '?')}, after: {env('REPORT_LOADAVG_END', '?')}. "
    "Other processes on the machine share both CPUs; a run where neither the server nor the generator "
    "is near 100 % CPU was held back by them (see the everything-else column)."
)
print(f"tern at commit {env('REPORT_COMMIT', '?')}, coturn {env('REPORT_COTURN', '?')}.")
print()
print("How to read the tables:")
print()
print(
    "- **Browser-like** (`tern-load --shape browser`, the default): every datagram reaches the server as its "
    "own datagram, as WebRTC clients (libwebrtc, Firefox, aioice) send media, one datagram per system call. "
    "The generator hands a session's packets to one `sendmmsg` as separate messages, so the server's "
    "listening socket receives them one per receive entry. This is the case users have."
)
print(
    "- **Bursty (GSO)** (`--shape bursty`): a session's window of 8 leaves as one UDP GSO send and reaches a "
    "listening socket with UDP GRO on (tern's, the bare forwarder's) as one buffer; coturn's socket gets "
    "8 datagrams. Few real clients send like this."
)
print(
    "- Relayed packets = packets the server forwarded (arrivals at the peer + arrivals back at the client; "
    "a round trip is 2). Server CPU = utime + stime of the server process over the window; 100 % = one "
    "core busy. CPU µs per pkt = server CPU seconds per million relayed packets. Everything else = the "
    "machine's busy CPU time (`/proc/stat`) over the window beyond the server and the generator, in CPUs: "
    "other processes, interrupt and softirq time charged to no process, steal. A high value means the run "
    "shared its CPUs; its latency and CPU per packet are then not the servers' alone."
)
print(
    "- **Per-core capacity** = 10⁶ ÷ CPU µs per packet: the relayed packets/s one core of this server "
    "would carry at the cost per packet measured here. It compares the servers even when the generator "
    "held the rate; at a fixed offered rate it understates the capacity (batches grow with load)."
)
print(
    f"- **limit**: *generator* = the generator used ≥ {GENERATOR_FULL:.0%} of its CPU while the server used "
    f"< {SERVER_BELOW:.0%}, so the measured pkt/s is the generator's, not the server's: compare per-core "
    f"capacity. *server* = the server used ≥ {SERVER_FULL:.0%}. *both* = the generator used "
    f"≥ {GENERATOR_FULL:.0%} and the server {SERVER_BELOW:.0%}–{SERVER_FULL:.0%}. *other work* = neither was "
    f"saturated and everything else took ≥ {OTHERS_BUSY:.0%} of a CPU: the run was held back by other "
    "processes and says little about the server. *offered rate* = an open load that saturated neither, "
    "on otherwise quiet CPUs. *neither* = a closed load where neither was near 100 % and nothing else was busy."
)
print()
SECTIONS = (
    (
        "browser",
        "Browser-like clients: each datagram its own datagram",
        "Closed: each session keeps 8 packets in flight. Open: a paced total rate; the sessions take turns.",
    ),
    (
        "real",
        "Closer to a real relay (browser-like)",
        "Each allocation has its own peer address (its own echo socket on 127.0.0.1), 1200-byte payloads, "
        "a modest paced rate per session, open loop. The mix puts half the sessions on Send/Data indications "
        "(permission only) and half on ChannelData. The bare forwarder has no Send indications.",
    ),
    (
        "stream",
        "TURN over TCP and TLS (browser-like)",
        "Each session is its own TCP (or TLS) connection to the server: Allocate, CreatePermission and "
        "ChannelBind over the stream, then ChannelData padded to four bytes (RFC 8656 §12.5), each packet "
        "its own `write` and, over TLS, its own record, as a browser's TURN/TCP sends; the server sends "
        "the peers' packets back on the stream. Peers are UDP. Closed: 8 in flight per session. The "
        "1000-allocation load is paced as the UDP one. Over TCP the bare forwarder runs too: the same path "
        "(client leg TCP with the same padded framing, peer leg UDP) with no TURN (a hello instead of "
        "Allocate, CreatePermission and ChannelBind), as tern's TCP path is built (epoll, one read of up "
        "to 64 KiB per ready connection, a `sendmmsg` per read towards the peer, one write per connection "
        "per turn): the kernel's ceiling for these loads. It has no TLS. The generator is one "
        "epoll thread with nonblocking sockets on its own CPU (as the server is on its): a row marked "
        "*generator* measured the generator's ceiling, so compare per-core capacity there.",
    ),
    (
        "bursty",
        "Bursty clients (GSO)",
        "Closed, 8 in flight per session; each session's window of 8 leaves as one UDP GSO send.",
    ),
)
for sec, title, text in SECTIONS:
    if not any(section(load) == sec for load in loads):
        continue
    print(f"## {title}")
    print()
    print(text)
    print()
    relay_table(sec)
    if sec == "stream":
        tls = sorted({(r["kind"], r.get("tls")) for r in rows if is_stream(r["label"]) and r.get("tls")})
        if tls:
            print("TLS negotiated: " + "; ".join(f"{k}: {t}" for k, t in tls) + ".")
            print()


def stream_targets():
    stream = [load for load in loads if section(load) == "stream"]
    if not stream:
        return
    print("## TURN over TCP and TLS against the targets (tern/coturn, medians)")
    print()
    print(
        f"Targets: relayed pkt/s ≥ {TARGET_PPS:.2f}× coturn's, CPU per packet ≤ {TARGET_CPU:.2f}× coturn's, "
        f"RTT p99 ≤ coturn's. Where the generator held a rate, compare per-core capacity instead of pkt/s. "
        "The bare forwarder (TCP only) is the kernel's ceiling: tern/bare and coturn/bare say how close each "
        "server comes to it (pkt/s: 1.00 is the ceiling; CPU per packet: 1.00 is the floor)."
    )
    print()
    print(
        "| load | relayed pkt/s | per-core capacity | CPU µs per pkt | per round | RTT p99 | "
        "limit tern / coturn | targets met | pkt/s tern/bare | coturn/bare | "
        "CPU µs per pkt tern/bare | coturn/bare | limit bare |"
    )
    print("|---|---:|---:|---:|---|---:|---|---|---:|---:|---:|---:|---|")
    for load in stream:
        def m(k, f, load=load):
            return med(load, k, f)

        pps = (m("tern", "relayed_pps"), m("coturn", "relayed_pps"))
        cap = (capacity(load, "tern"), capacity(load, "coturn"))
        cpu = (m("tern", "cpu_s_per_million"), m("coturn", "cpu_s_per_million"))
        p99 = (m("tern", "p99_us"), m("coturn", "p99_us"))
        open_load = {r.get("mode") for r in runs(load, "tern")} == {"open"}

        def met(pair, target, at_least):
            a, b = pair
            if a is None or not b:
                return None
            return a / b >= target if at_least else a / b <= target

        # A paced load offers the same rate to both: its pkt/s says nothing, capacity does.
        rate_ok = met(cap, TARGET_PPS, True) if open_load or "generator" in limit(load, "tern") else met(pps, TARGET_PPS, True)
        checks = [("pkt/s" if not open_load else "capacity", rate_ok), ("CPU", met(cpu, TARGET_CPU, False)), ("p99", met(p99, TARGET_P99, False))]
        verdict = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in checks if ok is not None) or "-"
        bare_pps, bare_cpu = m("bare", "relayed_pps"), m("bare", "cpu_s_per_million")
        print(
            f"| {load} | {ratio(*pps)} | {ratio(*cap)} | {ratio(*cpu)} | "
            f"{per_round(load, 'tern', 'coturn', 'cpu_s_per_million')} | {ratio(*p99)} | "
            f"{limit(load, 'tern')} / {limit(load, 'coturn')} | {verdict} | "
            f"{ratio(pps[0], bare_pps)} | {ratio(pps[1], bare_pps)} | "
            f"{ratio(cpu[0], bare_cpu)} | {ratio(cpu[1], bare_cpu)} | "
            f"{limit(load, 'bare') if n(load, 'bare') else '-'} |"
        )
    print()


def per_run(load, kind, f):
    xs = [f(r) for r in runs(load, kind) if valid(r)]
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def hold_table():
    holds = [load for load in loads if section(load) == "hold"]
    if not holds:
        return
    asked, held = env("REPORT_HOLD_ASKED", "?"), env("REPORT_HOLD", "?")
    print("## Idle TLS allocations: handshakes/s and memory per allocation")
    print()
    print(
        f"Each server gets {held} TLS connections, at most {env('REPORT_HOLD_CONCURRENCY', '?')} opening at once, each "
        "a full handshake (no resumption) and its own Allocate (REST credentials, the 401 round). "
        "Connections/s = allocations ÷ wall time of that phase; per server CPU second = allocations ÷ the "
        "server's CPU seconds over it. The connections are then held idle; RSS = the server's VmRSS "
        "(`/proc/PID/status`) before the first connection and at the end of the hold, per allocation = the "
        "growth ÷ the allocations still answering. Lost = allocated but not answering the signed Refresh "
        f"sent on every connection after the hold. Target: none lost, ≤ {TARGET_RSS_KIB} KiB each and below coturn's."
    )
    if asked != held:
        print()
        print(
            f"**HOLD={asked} was asked for, {held} were held**: each held allocation takes two descriptors in "
            f"the server (its connection and its relay socket) and this machine's hard RLIMIT_NOFILE is "
            f"{env('REPORT_HARD_NOFILE', '?')}."
        )
    if env("REPORT_TLS12") == "1":
        print()
        print("The generator offered TLS 1.2 only (TLS12=1).")
    print()
    print(
        "| load | server | allocated / asked | lost | connections/s | per server CPU s | setup p50 / p99 (ms) | "
        "server CPU | generator CPU | RSS before → after (MiB) | KiB per allocation | TLS | runs |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for load in holds:
        for kind in ("tern", "coturn"):
            if n(load, kind) == 0:
                continue
            m = lambda f, k=kind: med(load, k, f)  # noqa: E731
            per_cpu = per_run(load, kind, lambda r: r["allocations"] / r["server_cpu_s"] if r.get("server_cpu_s") else None)
            before, after = m("rss_before_kib"), m("rss_after_kib")
            rss = "-" if before is None or after is None else f"{before / 1024:,.1f} → {after / 1024:,.1f}"
            tls = next((r.get("tls") for r in runs(load, kind) if r.get("tls")), "-")
            p50, p99 = m("p50_us"), m("p99_us")
            print(
                f"| {load} | {kind} | {fmt(m('allocations'))} / {fmt(m('sessions'))} | {fmt(m('lost'))} | "
                f"{fmt(m('allocations_per_s'))} | {fmt(per_cpu)} | "
                f"{fmt(None if p50 is None else p50 / 1e3, 1)} / {fmt(None if p99 is None else p99 / 1e3, 1)} | "
                f"{pct(share(load, kind, 'server_cpu_s'))} | {pct(share(load, kind, 'generator_cpu_s'))} | {rss} | "
                f"{fmt(m('rss_per_allocation_kib'), 1)} | {tls} | {n(load, kind)} |"
            )
        t, c = med(load, "tern", "rss_per_allocation_kib"), med(load, "coturn", "rss_per_allocation_kib")
        lost = med(load, "tern", "lost")
        print()
        print(
            f"- {load}: tern/coturn connections/s {ratio(med(load, 'tern', 'allocations_per_s'), med(load, 'coturn', 'allocations_per_s'))}, "
            f"KiB per allocation {ratio(t, c)}; tern {'meets' if t is not None and t <= TARGET_RSS_KIB and (c is None or t < c) and lost == 0 else 'misses'} "
            f"the target (≤ {TARGET_RSS_KIB} KiB, below coturn, none lost)."
        )
    print()


stream_targets()
hold_table()

print("## Ratios (medians)")
print()
print(
    "| load | relayed pkt/s tern/coturn | tern/bare | per-core capacity tern/coturn | tern/bare | "
    "CPU µs per pkt tern/coturn | per round | bare/coturn | bare-uring/coturn | "
    "RTT p50 tern/coturn | p99 | p99.9 | limit tern / coturn / bare |"
)
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for sec in ("browser", "real", "stream", "bursty"):
    for load in loads:
        if section(load) != sec:
            continue

        def g(k, f, load=load):
            return med(load, k, f)

        limits = " / ".join(limit(load, k) if n(load, k) else "-" for k in ("tern", "coturn", "bare"))
        print(
            f"| {load} | {ratio(g('tern', 'relayed_pps'), g('coturn', 'relayed_pps'))} | "
            f"{ratio(g('tern', 'relayed_pps'), g('bare', 'relayed_pps'))} | "
            f"{ratio(capacity(load, 'tern'), capacity(load, 'coturn'))} | {ratio(capacity(load, 'tern'), capacity(load, 'bare'))} | "
            f"{ratio(g('tern', 'cpu_s_per_million'), g('coturn', 'cpu_s_per_million'))} | "
            f"{per_round(load, 'tern', 'coturn', 'cpu_s_per_million')} | "
            f"{ratio(g('bare', 'cpu_s_per_million'), g('coturn', 'cpu_s_per_million'))} | "
            f"{ratio(g('bare-uring', 'cpu_s_per_million'), g('coturn', 'cpu_s_per_million'))} | "
            f"{ratio(g('tern', 'p50_us'), g('coturn', 'p50_us'))} | {ratio(g('tern', 'p99_us'), g('coturn', 'p99_us'))} | "
            f"{ratio(g('tern', 'p999_us'), g('coturn', 'p999_us'))} | {limits} |"
        )
print()
limited = [
    (load, [k for k in KINDS if n(load, k) and limit(load, k) == "**generator**"])
    for load in loads
    if not is_alloc(load)
]
limited = [(load, ks) for load, ks in limited if ks]
if limited:
    print("**Generator-limited** (the measured pkt/s is the load generator's ceiling, not the server's; compare per-core capacity):")
    print()
    for load, ks in limited:
        print(f"- {load}: {', '.join(ks)}")
else:
    print("No run was generator-limited.")
print()
baseline_loads = [load for load in loads if n(load, "tern-base")]
if baseline_loads:
    print(f"## tern against a baseline build ({env('REPORT_BASELINE', '?')})")
    print()
    print(
        "`tern-base` ran interleaved with the others in every round of these loads, on the same "
        "pinning. A CPU ratio below 1.00 means this build spends less CPU per relayed packet than "
        "the baseline; per round compares runs adjacent in time."
    )
    print()
    print(
        "| load | CPU µs per pkt tern / tern-base | tern/tern-base | per round | "
        "relayed pkt/s tern/tern-base | RTT p99 tern/tern-base | limit tern / tern-base |"
    )
    print("|---|---|---:|---|---:|---:|---|")
    for load in baseline_loads:
        def b(k, f, load=load):
            return med(load, k, f)

        print(
            f"| {load} | {fmt(b('tern', 'cpu_s_per_million'), 2)} / {fmt(b('tern-base', 'cpu_s_per_million'), 2)} | "
            f"{ratio(b('tern', 'cpu_s_per_million'), b('tern-base', 'cpu_s_per_million'))} | "
            f"{per_round(load, 'tern', 'tern-base', 'cpu_s_per_million')} | "
            f"{ratio(b('tern', 'relayed_pps'), b('tern-base', 'relayed_pps'))} | "
            f"{ratio(b('tern', 'p99_us'), b('tern-base', 'p99_us'))} | "
            f"{limit(load, 'tern')} / {limit(load, 'tern-base')} |"
        )
    print()
print(
    "## Allocation rate (16 cycles in flight: Allocate, 401, signed Allocate, Refresh LIFETIME 0; a new client port each cycle)"
)
print()
print(
    "| load | server | allocations/s | failures/s | 508/s | latency p50 / p99 (µs) | server CPU | "
    "CPU s per M allocations | generator CPU | runs |"
)
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for load in loads:
    if not is_alloc(load):
        continue
    for kind in ("tern", "coturn"):
        if n(load, kind) == 0:
            continue
        secs = med(load, kind, "seconds") or 1
        f = med(load, kind, "failures")
        e = med(load, kind, "e508")
        print(
            f"| {load} | {kind} | {fmt(med(load, kind, 'allocations_per_s'))} | {fmt(None if f is None else f / secs, 1)} | "
            f"{fmt(None if e is None else e / secs, 1)} | {fmt(med(load, kind, 'p50_us'))} / {fmt(med(load, kind, 'p99_us'))} | "
            f"{pct(share(load, kind, 'server_cpu_s'))} | {fmt(med(load, kind, 'cpu_s_per_million'), 2)} | "
            f"{pct(share(load, kind, 'generator_cpu_s'))} | {n(load, kind)} |"
        )
print()
print("## Core instruction count (callgrind, `benches/callgrind.sh`)")
print()
for line in callgrind:
    print(f"- {line}")
print()
print("## Command lines")
print()
print(
    "Raw per-run JSON lines of the generator: `benches/results/latest.jsonl`. Runs column: valid/total; "
    "a run is discarded when the server died during it or a session failed to set up."
)
print()
print("SECRET, ports and ranges as in `benches/compare.sh`; PID is the server's pid.")
print()
for key, srv, gen in sorted(cmds):
    print(f"- **{key}**")
    print(f"  - server: `{srv.strip()}`")
    print(f"  - generator: `{gen.strip()}`")
