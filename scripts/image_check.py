#!/usr/bin/env python3
"""Helpers of scripts/image-check.sh, which stands in for `docker build` where Docker cannot run.

  image_check.py context SRC DST          copy the build context of SRC to DST, leaving out what
                                          .dockerignore excludes (Docker's rules: patterns are
                                          relative to the context root, `*` stops at `/`, `**`
                                          crosses it, `!` re-includes, the last match wins, and a
                                          pattern matching a directory excludes what is under it)
  image_check.py verify DOCKERFILE CONTEXT ROOT CONFIG
                                          check that every path the Dockerfile names exists: the
                                          sources of its COPY lines in CONTEXT, the staged root it
                                          copies from the builder in ROOT, its USER in ROOT's
                                          /etc/passwd and /etc/group, its VOLUME, ENTRYPOINT and
                                          HEALTHCHECK paths, and that EXPOSE matches the ports of
                                          CONFIG (the example configuration)
"""

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib

# ---------------------------------------------------------------------------------------------
# The build context


def ignore_rules(context):
    """(regex, negated) for each line of CONTEXT/.dockerignore."""
    path = os.path.join(context, ".dockerignore")
    rules = []
    if not os.path.exists(path):
        return rules
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            if negated:
                line = line[1:].strip()
            line = os.path.normpath(line.strip("/")).replace(os.sep, "/")
            rules.append((re.compile(glob_to_regex(line)), negated))
    return rules


def glob_to_regex(pattern):
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i)
            if end < 0:
                out.append(re.escape(c))
            else:
                out.append(pattern[i : end + 1].replace("[!", "[^"))
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


def excluded(rel, rules):
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parents = []
    parts = rel.split("/")
    for n in range(1, len(parts) + 1):
        parents.append("/".join(parts[:n]))
    result = False
    for regex, negated in rules:
        if any(regex.match(p) for p in parents):
            result = not negated
    return result


def copy_context(src, dst):
    src = os.path.abspath(src)
    rules = ignore_rules(src)
    if os.path.exists(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    count = 0
    dst_abs = os.path.abspath(dst)
    # Without `!` rules nothing under an excluded directory comes back: skip it whole (target/).
    prune = not any(negated for _, negated in rules)
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        keep = []
        for d in dirnames:
            full = os.path.abspath(os.path.join(dirpath, d))
            rel = os.path.normpath(os.path.join(rel_dir, d)).replace(os.sep, "/")
            if full == dst_abs or (prune and excluded(rel, rules)):
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            if excluded(rel, rules):
                continue
            out = os.path.join(dst, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            # copy2 keeps modification times, so cargo reuses the previous run's build.
            shutil.copy2(os.path.join(src, rel), out, follow_symlinks=False)
            count += 1
    print(f"build context: {count} files copied to {dst} (.dockerignore applied)")


# ---------------------------------------------------------------------------------------------
# The Dockerfile


def instructions(path):
    """[(stage index, INSTRUCTION, argument text)] with continuations joined, comments dropped."""
    out, stage, pending = [], -1, ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and line.lstrip().startswith("#"):
                continue
            if pending and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = (pending + line).strip()
            pending = ""
            if not line:
                continue
            word, _, rest = line.partition(" ")
            word = word.upper()
            if word == "FROM":
                stage += 1
            out.append((stage, word, rest.strip()))
    return out


def exec_form(text):
    """["a", "b"] (JSON exec form) or a shell string, as a list of words."""
    text = text.strip()
    if text.startswith("["):
        import json

        return json.loads(text)
    return shlex.split(text)


def split_flags(text):
    """COPY/HEALTHCHECK flags (--x=y) and the remaining words."""
    words = shlex.split(text)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


class Report:
    def __init__(self):
        self.failed = 0

    def ok(self, what):
        print(f"  ok    {what}")

    def fail(self, what):
        print(f"  FAIL  {what}")
        self.failed += 1

    def warn(self, what):
        print(f"  warn  {what}")

    def check(self, cond, what):
        (self.ok if cond else self.fail)(what)


def in_root(root, path):
    return os.path.join(root, path.lstrip("/"))


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def verify(dockerfile, context, root, config):
    r = Report()
    ins = instructions(dockerfile)
    args = {}
    stages = {}
    for stage, word, rest in ins:
        if word == "ARG" and stage < 0:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        if word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(stage)
            stages[stage] = name
            print(f"stage {stage} ({name}): FROM {image}")
    final = max(stages)
    builder = {v: k for k, v in stages.items()}.get("builder")
    r.check(builder is not None and builder != final, "a builder stage named 'builder' precedes the runtime stage")

    # The toolchain of the builder image against the one CI builds with.
    want = args.get("RUST_VERSION", "")
    try:
        have = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.split()[1]
    except (OSError, IndexError):
        have = "?"
    if have.startswith(want + ".") or have == want:
        r.ok(f"ARG RUST_VERSION={want} matches the host toolchain {have}")
    else:
        r.warn(f"ARG RUST_VERSION={want}, but CI builds with rustc {have}: update the Dockerfile")

    staged_from = None
    runs = " ; ".join(rest for stage, word, rest in ins if stage == builder and word == "RUN")
    m = re.search(r"scripts/image\.sh (?:stage|all) (\S+)", runs)
    if m:
        staged_from = m.group(1).rstrip("/")
    r.check(re.search(r"scripts/image\.sh (build|all)\b", runs) is not None,
            "the builder RUNs scripts/image.sh build")
    r.check(staged_from is not None, f"the builder stages the runtime root with scripts/image.sh stage ({staged_from})")

    user = volume = entry = health = cmd = None
    exposed = set()
    stopsignal = None
    for stage, word, rest in ins:
        if word == "COPY":
            flags, words = split_flags(rest)
            sources, dest = words[:-1], words[-1]
            if "from" in flags:
                for s in sources:
                    r.check(flags["from"] == "builder" and s.rstrip("/") == staged_from and dest == "/",
                            f"COPY --from={flags['from']} {s} {dest}: the root scripts/image.sh stages, onto /")
                    r.check(os.path.isdir(root) and os.listdir(root), f"  ... staged root {root} is not empty")
            else:
                for s in sources:
                    r.check(os.path.exists(os.path.join(context, s)), f"COPY {s}: present in the build context")
        if stage != final:
            continue
        if word == "USER":
            user = rest
        elif word == "VOLUME":
            volume = exec_form(rest)
        elif word == "ENTRYPOINT":
            entry = exec_form(rest)
        elif word == "CMD":
            cmd = exec_form(rest)
        elif word == "EXPOSE":
            exposed |= {int(p.split("/")[0]) for p in rest.split()}
        elif word == "STOPSIGNAL":
            stopsignal = rest
        elif word == "HEALTHCHECK":
            _, words = split_flags(rest)
            if words and words[0].upper() == "CMD":
                health = exec_form(rest[rest.upper().index("CMD") + 3 :])

    # The user.
    uid, _, gid = (user or "").partition(":")
    passwd = open(in_root(root, "/etc/passwd"), encoding="utf-8").read().splitlines() if os.path.exists(in_root(root, "/etc/passwd")) else []
    group = open(in_root(root, "/etc/group"), encoding="utf-8").read().splitlines() if os.path.exists(in_root(root, "/etc/group")) else []
    r.check(uid.isdigit() and uid != "0", f"USER {user}: numeric and not root")
    r.check(any(l.split(":")[2] == uid for l in passwd if l.count(":") >= 6), f"USER uid {uid} in the staged /etc/passwd")
    r.check(gid != "" and any(l.split(":")[2] == gid for l in group if l.count(":") >= 3), f"USER gid {gid} in the staged /etc/group")

    # Paths in the runtime image.
    for v in volume or []:
        r.check(os.path.isdir(in_root(root, v)), f"VOLUME {v}: a directory in the staged root")
    for what, words in (("ENTRYPOINT", entry), ("HEALTHCHECK CMD", health)):
        if not words:
            r.fail(f"{what}: missing")
            continue
        path = in_root(root, words[0])
        r.check(os.path.isfile(path) and os.stat(path).st_mode & stat.S_IXOTH,
                f"{what} {words[0]}: executable by anyone in the staged root")
    r.check(stopsignal == "SIGTERM", f"STOPSIGNAL {stopsignal}")
    conf_path = None
    if cmd and "--config" in cmd:
        conf_path = cmd[cmd.index("--config") + 1]
    r.check(conf_path is not None and any(conf_path.startswith(v.rstrip("/") + "/") for v in volume or []),
            f"CMD --config {conf_path}: inside the VOLUME")
    if health:
        r.check("--healthcheck" in health, f"HEALTHCHECK runs {' '.join(health)}")

    # Ports against the example configuration.
    with open(config, "rb") as f:
        conf = tomllib.load(f)
    server = conf.get("server", {})
    ports = {port_of(a) for a in server.get("listen", ["0.0.0.0:8080"])}
    ports.add(port_of(server.get("admin_listen", "127.0.0.1:9091")))
    r.check(exposed == ports, f"EXPOSE {sorted(exposed)} = the ports of {os.path.basename(config)} {sorted(ports)}")
    if health:
        target = health[health.index("--healthcheck") + 1] if "--healthcheck" in health[:-1] else ""
        r.check(target.endswith(":" + str(port_of(server.get("admin_listen", "127.0.0.1:9091")))),
                f"HEALTHCHECK targets the admin port ({target})")

    if r.failed:
        print(f"Dockerfile: {r.failed} problem(s)")
        return 1
    print("Dockerfile: every named path exists")
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "context":
        copy_context(argv[2], argv[3])
        return 0
    if len(argv) == 6 and argv[1] == "verify":
        return verify(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
