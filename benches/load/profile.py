#!/usr/bin/env python3
"""Where the CPU of one proxied request goes, for the load harness's systems c (plain Pingora),
f (sessiongate, public route), d (sessiongate, cached session) and e (sessiongate, no cache).

Each system runs alone behind the same nginx upstream and redis-server as in harness.py, under
a light wrk load (1 thread, 8 connections) after a warm-up, while a profiler records it:

  --tool callgrind   valgrind's instruction counts (user space only, deterministic: the figure to
                     compare across runs on a noisy machine). Valgrind hides the CPU's SHA
                     extensions, so SHA-256 runs the portable code here and counts far more than
                     it costs natively.
  --tool perf        perf sampling on the cpu-clock software event (kernel included, real time,
                     but as noisy as the machine).
  --tool strace      system calls per request, by name (strace -c; slows the process down, but
                     the counts are exact).

It prints the cost per request by category (system call, for strace) for each system, then the
functions whose cost per request grew most between two systems (--compare, default c,d). Run it after benches/load/run.sh has installed the tools:

  python3 benches/load/profile.py --tool callgrind
"""

import argparse
import collections
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
import tempfile
import shutil

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402

PERF_HZ = 4999

# First match wins: (category, pattern over the symbol; the kernel is matched by object).
CATEGORIES = [
    ("malloc/free", r"^(_int_malloc|_int_free|malloc|cfree|free|realloc|_int_realloc|malloc_consolidate|unlink_chunk|_?mi_)"),
    ("memcpy/memcmp", r"mem(move|cpy|cmp|set)"),
    ("access log (tracing, formatting)", r"tracing|nu_ansi_term|core::fmt|fmt::Write|pad_integral|flt2dec|grisu|Visit|<str as core::fmt|write_char|Formatter"),
    ("SHA-256, HMAC, base64", r"sha2|hmac|digest|base64"),
    ("sessiongate functions", r"sessiongate::"),
    ("session cache (lru, hashing)", r"lru::|hashbrown|sip::Hasher|hash_one|BuildHasher"),
    ("serde_json, MessagePack", r"serde_json|rmp"),
    ("HTTP headers (http, httparse, pingora_http)", r"^http::|httparse|pingora_http"),
    ("Pingora (other)", r"pingora"),
    ("tokio runtime", r"tokio|mio::|parking_lot|futex|pthread"),
    ("redis client", r"redis::|combine::"),
    ("bytes", r"bytes::"),
]


def category(symbol, kernel=False):
    if kernel:
        return "kernel (syscalls, loopback TCP, scheduling)"
    for name, pattern in CATEGORIES:
        if re.search(pattern, symbol):
            return name
    return "other"


def callgrind_self_costs(path):
    """Self instruction counts per function from a callgrind output file."""
    names, costs = {}, collections.Counter()
    current, after_call = None, False
    for line in open(path, errors="replace"):
        if line.startswith(("fn=", "cfn=")):
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
            if m.group(2):
                names[m.group(1)] = m.group(2)
            if line.startswith("fn="):
                current, after_call = names[m.group(1)], False
        elif line.startswith("calls="):
            after_call = True  # the next cost line is the call's inclusive cost
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) >= 2 and current is not None:
                if not after_call:
                    costs[(current, False)] += int(parts[1])
                after_call = False
    return costs


def perf_self_costs(path):
    """Samples per (symbol, is-kernel) from a perf.data file."""
    out = subprocess.run(
        ["perf", "report", "-i", str(path), "--no-children", "-n", "--sort", "dso,sym", "--stdio", "-g", "none"],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s+[\d.]+%\s+(\d+)\s+(\S+)\s+\[.\]\s+(.*)$", line)
        if m:
            costs[(m.group(3).strip(), "kernel" in m.group(2))] += int(m.group(1))
    return costs


def strace_counts(path):
    """Calls per system call from an `strace -c` summary."""
    costs = collections.Counter()
    for line in Path(path).read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            costs[(m.group(2), True)] += int(m.group(1))
    return costs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", choices=["callgrind", "perf", "strace"], default="callgrind")
    parser.add_argument("--systems", default="c,f,d,e")
    parser.add_argument("--seconds", type=int, default=20, help="measured load per system")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--compare", default="c,d", help="the two systems whose functions are compared")
    parser.add_argument("--keep", action="store_true", help="keep the profiles (the directory is printed)")
    args = parser.parse_args()
    systems = args.systems.split(",")

    exes = h.build()
    workdir = Path(tempfile.mkdtemp(prefix="sessiongate-profile-"))
    procs = h.Processes(workdir)
    costs, requests = {}, {}
    try:
        ports = {k: h.free_port() for k in ("upstream", "redis", "c", "d", "e", "f", "d-admin", "e-admin", "f-admin")}
        procs.start("upstream", ["nginx", "-e", str(workdir / "upstream-error.log"),
                                 "-c", str(h.upstream_conf(workdir, ports["upstream"]))], signal.SIGQUIT)
        procs.start("redis", ["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(workdir)])
        h.wait_port(ports["upstream"], "the nginx upstream")
        h.wait_port(ports["redis"], "redis-server")
        redis = h.Redis(ports["redis"])
        cookies = workdir / "cookies.txt"
        subprocess.run([exes["load_preload"], "--redis", f"redis://127.0.0.1:{ports['redis']}/0",
                        "--sessions", str(args.sessions), "--cookies", str(cookies),
                        "--cookie-key-file", str(h.COOKIE_KEY)], check=True)
        load = h.Load(argparse.Namespace(wrk_threads=1, connections=8), workdir)

        for s in systems:
            if s == "c":
                argv = [exes["load_passthrough"], "--listen", f"127.0.0.1:{ports['c']}",
                        "--upstream", f"127.0.0.1:{ports['upstream']}", "--threads", str(h.THREADS)]
            else:
                conf = h.sessiongate_conf(workdir, f"sessiongate-{s}", ports[s], ports[f"{s}-admin"],
                                          ports["redis"], ports["upstream"], s != "e", args.sessions * 2)
                argv = [exes["sessiongate"], "--config", str(conf)]
            output = workdir / f"{args.tool}.{s}"
            if args.tool == "callgrind":
                argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}"] + argv
            proc = procs.start(s, argv, signal.SIGINT)
            h.wait_port(ports[s], h.SYSTEMS[s], deadline=120)
            cookie_file, path = (None, "/pub") if s == "f" else (cookies, "/")
            if s in "df":
                # The cache serves nothing before its invalidation connection is up.
                end = time.monotonic() + 60
                while "name=sessiongate-invalidation" not in redis.command("CLIENT", "LIST"):
                    if time.monotonic() > end:
                        raise RuntimeError("no invalidation connection")
                    time.sleep(0.2)
                time.sleep(1)
            if s == "d":
                before = redis.calls()
                load.walk_until(ports[s], cookies, lambda: h.session_reads(h.delta(redis.calls(), before))
                                >= args.sessions, limit=600)
            load.run(ports[s], 3, cookie_file, "uniform", path)  # connection pools, first requests
            before = redis.calls()
            if args.tool == "callgrind":
                subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, stdout=subprocess.DEVNULL)
                result = load.run(ports[s], args.seconds, cookie_file, "uniform", path)
                subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, stdout=subprocess.DEVNULL)
                costs[s] = callgrind_self_costs(f"{output}.1")
            elif args.tool == "strace":
                tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(proc.pid), "-o", str(output)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                result = load.run(ports[s], args.seconds, cookie_file, "uniform", path)
                tracer.send_signal(signal.SIGINT)
                tracer.wait()
                costs[s] = strace_counts(output)
            else:
                perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", str(PERF_HZ), "-p", str(proc.pid),
                                         "-o", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                result = load.run(ports[s], args.seconds, cookie_file, "uniform", path)
                perf.send_signal(signal.SIGINT)
                perf.wait()
                costs[s] = perf_self_costs(output)
            requests[s] = result["requests"]
            reads = h.session_reads(h.delta(redis.calls(), before))
            h.log(f"{s}: {result['requests']} requests, {result['status_errors']} non-2xx, "
                  f"{reads / max(1, result['requests']):.3f} Redis reads per request")
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    finally:
        procs.stop_all()
        if args.keep:
            h.log(f"profiles kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    unit, scale = {
        "callgrind": ("k instructions", 1e-3),
        "perf": ("µs CPU", 1e6 / PERF_HZ),
        "strace": ("system calls", 1),
    }[args.tool]
    per_req = {s: {k: v * scale / requests[s] for k, v in costs[s].items()} for s in systems}
    digits = 3 if args.tool == "strace" else 1
    table = collections.defaultdict(lambda: collections.Counter())
    for s in systems:
        for (symbol, kernel), v in per_req[s].items():
            table[symbol if args.tool == "strace" else category(symbol, kernel)][s] += v
    print(f"\nPer request, {unit} ({args.tool}; {' '.join(f'{s}={requests[s]}' for s in systems)} requests):\n")
    print("| category | " + " | ".join(f"{s} {h.SYSTEMS[s]}" for s in systems) + " |")
    print("|---|" + "---:|" * len(systems))
    last = systems[-2] if len(systems) > 1 else systems[0]
    for name, row in sorted(table.items(), key=lambda kv: -kv[1][last]):
        print(f"| {name} | " + " | ".join(f"{row[s]:.{digits}f}" for s in systems) + " |")
    print("| total | " + " | ".join(f"{sum(r[s] for r in table.values()):.{digits}f}" for s in systems) + " |")
    base, other = args.compare.split(",")
    if base in systems and other in systems:
        keys = set(per_req[base]) | set(per_req[other])
        grown = sorted(keys, key=lambda k: per_req[base].get(k, 0) - per_req[other].get(k, 0))
        print(f"\nFunctions whose cost grew most from {base} to {other} ({unit} per request, self cost):\n")
        print(f"| {other} − {base} | {other} | {base} | function |")
        print("|---:|---:|---:|---|")
        for k in grown[: args.top]:
            o, b = per_req[other].get(k, 0), per_req[base].get(k, 0)
            name = ("[kernel] " if k[1] else "") + k[0]
            print(f"| {o - b:+.2f} | {o:.2f} | {b:.2f} | `{name[:110]}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
