#!/usr/bin/env python3
"""Memory a sessiongate process spends per client connection that sends no complete request.

Starts BINARY (a sessiongate build; an older one works too) with the memory store and one
public route, opens COUNT client connections of one kind, waits, and prints the growth of the
process's resident set per connection, with how many connections the proxy still holds.

  idle  connections that send nothing
  half  connections that send half a request head and stop (a slowloris client)
  big   connections that send 1 MiB of one header line without ending the head

  benches/load/idle_connections.py target/release/sessiongate half 4000
  benches/load/idle_connections.py target/release/sessiongate big 150 'header_timeout = "600s"'

The optional last argument is added to [server] (e.g. to lift the limits for a comparison).
Only the standard library is used.
"""
import atexit
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        sys.exit(2)
    binary, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    extra = sys.argv[4] if len(sys.argv) > 4 else ""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, admin = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="sg-idle-")
    with open(f"{workdir}/sessiongate.toml", "w") as f:
        f.write(f"""[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
threads = 2
{extra}

[session]
cookie_name = "sid"
secure = false

[store]
kind = "memory"

[identity]
insecure_signing_key = "0123456789abcdef0123456789abcdef"

[[upstream]]
name = "app"
backends = ["127.0.0.1:9"]

[[route]]
upstream = "app"
auth = "public"
""")
    proc = subprocess.Popen([binary, "--config", f"{workdir}/sessiongate.toml"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(proc.kill)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                sys.exit("sessiongate did not start")
            time.sleep(0.1)
    time.sleep(1)
    base = rss_kb(proc.pid)
    clients = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        try:
            if mode == "half":
                s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
            elif mode == "big":
                s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * (1024 * 1024 - 100))
        except BlockingIOError:
            pass
        clients.append(s)
    time.sleep(3)
    after = rss_kb(proc.pid)
    open_now = 0
    for s in clients:
        try:
            if s.recv(1) != b"":
                pass
        except BlockingIOError:
            open_now += 1
        except OSError:
            pass
    held = "?"
    try:
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read()
        for line in metrics.decode().splitlines():
            if line.startswith("sessiongate_client_connections "):
                held = line.split()[1]
    except OSError:
        pass
    print(f"{mode} x{count}: RSS {base / 1024:.1f} MB -> {after / 1024:.1f} MB, "
          f"{(after - base) / count:.1f} KB per connection; open {open_now}, held by the proxy {held}")


if __name__ == "__main__":
    main()
