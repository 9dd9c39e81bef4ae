#!/usr/bin/python3
"""Render a recorded etcdctl transcript as text, normalising only what
legitimately differs between two servers.

A transcript is a directory written by etcdctl_diff.sh: for command number
NNNN (zero padded) the files NNNN.cmd (the command line as shown),
NNNN.mode (simple | protobuf | hash | watch), and when the command ran
NNNN.out, NNNN.err, NNNN.rc; optional NNNN.in (what was fed to stdin),
NNNN.died (the server was found dead after the command), NNNN.skip (not run
because the server was already dead or unresponsive).

Normalised (and nothing else):
  - the server's client and peer host:port          -> <CLIENT>, <PEER>
  - its member ID and cluster ID (decimal or hex)   -> <MEMBER_ID>, <CLUSTER_ID>
  - lease IDs granted during the section            -> <LEASE1>, <LEASE2>, ...
  - raft term in response headers                   -> <TERM>
  - endpoint status: version, db sizes, raft index, raft applied index, term
  - endpoint health: "took" durations
  - lease TTLs counting down from --lease-ttl (only within 10 s of it)
  - client log lines on stderr: timestamps, client UUIDs, the durations
    and sizes of snapshot save's log lines
  - Go panic stack traces (first line kept)
  - the keys attached to a lease are sorted (etcd lists them in map order)
  - tables are re-rendered with single spaces (column widths follow the
    normalised cells)
  - help texts (etcdctl's "NAME:/USAGE:/.../OPTIONS:" help on -h, `help`,
    flag errors; cobra's "Usage:/Flags:" usage a txn prints) are reduced
    to their skeleton: the command name, the USAGE, VERSION and API
    VERSION lines, and the sorted flags of OPTIONS and GLOBAL OPTIONS (or
    Flags:) with short name, type and default; descriptions, command lists
    and other prose are dropped (ikadactl words its help itself)
Revisions, counts, keys, values, error texts and exit codes are never
touched. Bytes that are not printable UTF-8 are shown as \\xNN.

Cluster mode (--member given, once per member, instead of --client, --peer
and --member-id): the commands ran on one follower ("self"); each member's
client and peer host:port, ID and --name are replaced by its role:
  self     <CLIENT> <PEER> <MEMBER_ID> <NAME>
  leader   <LEADER_CLIENT> <LEADER_PEER> <LEADER_ID> <LEADER_NAME>
  other    <OTHER_CLIENT> <OTHER_PEER> <OTHER_ID> <OTHER_NAME>
and `member list` output (every format) is put in that role order: etcd
lists members by ascending ID, and the IDs of two clusters differ. That
they were listed by ascending ID is checked first: if not, the output gets
a line "(members not listed by ascending ID)".

Usage: normalize.py DIR --section NAME --client H:P --peer H:P
                    --member-id N --cluster-id N [--lease-ttl N]
       normalize.py DIR --section NAME --cluster-id N [--lease-ttl N]
                    --member ROLE,NAME,ID,H:P,H:P ...
           (ROLE: self, leader or other; then --name, ID, client and
           peer host:port)
"""

import argparse
import hashlib
import os
import re
import sys

# ---------------------------------------------------------------- helpers


def escape(data):
    """bytes -> str; printable UTF-8 kept, everything else as \\xNN."""
    out = []
    text = data.decode("utf-8", errors="surrogateescape")
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # undecodable byte
            out.append("\\x%02x" % (o - 0xDC00))
        elif ch in "\n\t":
            out.append(ch)
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        else:
            out.append(ch)
    return "".join(out)


def read(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return default


# ------------------------------------------------------- protobuf decoding


class WireError(Exception):
    pass


def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def parse_message(buf):
    """Parse protobuf wire format into [(field, wiretype, value)]; raises
    WireError unless the whole buffer is a well formed message."""
    fields = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise WireError("field 0")
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            if pos + 8 > len(buf):
                raise WireError("truncated fixed64")
            val = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise WireError("truncated bytes")
            val = buf[pos:pos + n]
            pos += n
        elif wt == 5:
            if pos + 4 > len(buf):
                raise WireError("truncated fixed32")
            val = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise WireError("wire type %d" % wt)
        fields.append((field, wt, val))
    return fields


def dump_message(fields, ctx, indent=0):
    """Text dump of a parsed message. A length-delimited field is shown as
    a nested message when it parses as one, else as escaped bytes. A
    nested message whose field 1 is the cluster ID is a response header:
    its field 4 (raft term) is normalised."""
    lines = []
    pad = "  " * indent
    is_header = any(f == 1 and wt == 0 and v == ctx.cluster_id and v != 0
                    for f, wt, v in fields)
    for field, wt, val in fields:
        if wt == 2:
            sub = None
            if val:
                try:
                    sub = parse_message(val)
                except WireError:
                    sub = None
            if sub is not None:
                lines.append("%s%d {" % (pad, field))
                lines.extend(dump_message(sub, ctx, indent + 1))
                lines.append("%s}" % pad)
            else:
                lines.append("%s%d: bytes %r" % (pad, field, escape(val)))
        elif is_header and field == 4 and wt == 0:
            lines.append("%s%d: <TERM>" % (pad, field))
        else:
            lines.append("%s%d: %d" % (pad, field, val))
    return lines


def render_protobuf(data, ctx, member_list=False):
    try:
        fields = parse_message(data)
    except WireError as e:
        return "(not a protobuf message: %s) %s" % (e, escape(data))
    note = ""
    if member_list and ctx.rank:
        fields, note = order_member_fields(fields, ctx)
    return "\n".join(dump_message(fields, ctx)) + "\n" + note


# ------------------------------------------------------------ normalising


ROLE_PREFIX = {"self": "", "leader": "LEADER_", "other": "OTHER_"}
ROLE_RANK = {"self": 0, "leader": 1, "other": 2}


class Ctx:
    def __init__(self, args):
        self.cluster_id = args.cluster_id
        self.subst = []  # (compiled regex, replacement), applied in order
        self.lease_ttl = args.lease_ttl
        self.leases = []
        self.rank = {}  # cluster mode: member ID -> position of its role
        if args.member:
            self._members(args.member)
        if args.client:
            self._literal(args.client, "<CLIENT>")
        if args.peer:
            self._literal(args.peer, "<PEER>")
        self._id(args.member_id, "<MEMBER_ID>")
        self._id(args.cluster_id, "<CLUSTER_ID>")

    def _members(self, specs):
        roles = []
        for spec in specs:
            parts = spec.split(",")
            if len(parts) != 5 or parts[0] not in ROLE_PREFIX:
                sys.exit("normalize.py: bad --member %r" % spec)
            role, name, mid, client, peer = parts
            roles.append(role)
            pre = ROLE_PREFIX[role]
            self.rank[int(mid)] = ROLE_RANK[role]
            self._literal(client, "<%sCLIENT>" % pre)
            self._literal(peer, "<%sPEER>" % pre)
            self._id(int(mid), "<%sMEMBER_ID>" % pre if not pre else
                     "<%sID>" % pre)
            self.subst.append((re.compile(
                r"(?<![0-9A-Za-z_-])%s(?![0-9A-Za-z_-])" % re.escape(name)),
                "<%sNAME>" % pre))
        if roles.count("self") != 1 or roles.count("leader") != 1:
            sys.exit("normalize.py: --member needs one self and one leader")

    def _literal(self, s, rep):
        # not followed by a digit: a port must not match a longer one
        self.subst.append((re.compile(re.escape(s) + r"(?![0-9])"), rep))

    def _id(self, n, rep):
        if not n:
            return
        # Decimal, and hex as etcdctl prints it (%x and %016x), as whole
        # tokens. Forms shorter than 6 characters are left alone: they
        # would also match revisions and counts.
        for form in sorted({str(n), "%x" % n, "%016x" % n}, key=len,
                           reverse=True):
            if len(form) >= 6:
                self.subst.append(
                    (re.compile(r"(?<![0-9A-Za-z])%s(?![0-9A-Za-z])" % form),
                     rep))

    def add_lease(self, hexid):
        n = int(hexid, 16)
        if n in self.leases:
            return
        self.leases.append(n)
        self._id(n, "<LEASE%d>" % len(self.leases))


# Response header / status fields that legitimately differ.
FIELD_RULES = [
    (re.compile(r'"raft_term":\d+'), '"raft_term":<TERM>'),
    (re.compile(r'"RaftTerm" : \d+'), '"RaftTerm" : <TERM>'),
    (re.compile(r'"raftTerm":\d+'), '"raftTerm":<TERM>'),
    (re.compile(r'"raftIndex":\d+'), '"raftIndex":<INDEX>'),
    (re.compile(r'"RaftIndex" : \d+'), '"RaftIndex" : <INDEX>'),
    (re.compile(r'"raftAppliedIndex":\d+'), '"raftAppliedIndex":<INDEX>'),
    (re.compile(r'"RaftAppliedIndex" : \d+'), '"RaftAppliedIndex" : <INDEX>'),
    (re.compile(r'"dbSize":\d+'), '"dbSize":<SIZE>'),
    (re.compile(r'"dbSizeInUse":\d+'), '"dbSizeInUse":<SIZE>'),
    (re.compile(r'"DBSize" : \d+'), '"DBSize" : <SIZE>'),
    # Status "version" is a string; a key's version is a number: only the
    # quoted form is touched.
    (re.compile(r'"version":"[^"]*"'), '"version":"<VERSION>"'),
    (re.compile(r'"Version" : "[^"]*"'), '"Version" : "<VERSION>"'),
    # endpoint health
    (re.compile(r"took = [0-9.]+[a-zµ]+"), "took = <DUR>"),
    (re.compile(r'"took":"[^"]*"'), '"took":"<DUR>"'),
    (re.compile(r'"Took" : [0-9.]+[a-zµ]+'), '"Took" : <DUR>'),
    # client-side log lines
    (re.compile(r'"ts":"[^"]*"'), '"ts":"<TS>"'),
    # zap's production logger (snapshot save): epoch seconds, durations in
    # seconds, humanized sizes
    (re.compile(r'"ts":[0-9][0-9.e+-]*'), '"ts":<TS>'),
    (re.compile(r'"took":[0-9][0-9.e+-]*'), '"took":<DUR>'),
    (re.compile(r'("msg":"fetched snapshot",.*"size":)"[^"]*"'),
     r'\1"<SIZE>"'),
    (re.compile(r"client-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                r"[0-9a-f]{12}"), "client-<UUID>"),
    (re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z? ", re.M),
     "<TIME> "),
]

# `endpoint status` in simple format: endpoint, ID, version, db size,
# leader, learner, term, index, applied index, errors.
STATUS_LINE = re.compile(
    r"^(<CLIENT>), ([^,]*), [^,]*, [^,]*, (true|false), (true|false), "
    r"\d+, \d+, \d+, ", re.M)

TABLE_VARIABLE_COLUMNS = {"VERSION", "DB SIZE", "RAFT TERM", "RAFT INDEX",
                          "RAFT APPLIED INDEX", "TOOK"}


def normalise_ttls(text, ttl):
    if not ttl:
        return text

    def fix(m):
        v = int(m.group(2))
        if ttl - 10 <= v <= ttl:
            return m.group(1) + "<TTL~%d>" % ttl + m.group(3)
        return m.group(0)
    text = re.sub(r"(remaining\()(\d+)(s\))", fix, text)
    text = re.sub(r'("ttl":)(\d+)()', fix, text)
    text = re.sub(r'("TTL" : )(\d+)()', fix, text)
    return text


def sort_lease_keys(text):
    """etcd lists a lease's attached keys in Go map order (random): sort
    them. The set of keys is still compared exactly."""
    def fix_simple(m):
        return "attached keys([%s])" % " ".join(sorted(m.group(1).split()))

    def fix_json(m):
        items = m.group(1).split(",") if m.group(1) else []
        return '"keys":[%s]' % ",".join(sorted(items))
    text = re.sub(r"attached keys\(\[([^\]]*)\]\)", fix_simple, text)
    text = re.sub(r'"keys":\[([^\]]*)\]', fix_json, text)
    return text


def rerender_tables(text):
    """Tables are laid out by etcdctl from cell widths; re-render them with
    single spaces so a normalised cell does not shift the columns, and
    normalise the variable columns of endpoint status/health."""
    lines = text.split("\n")
    out = []
    i = 0
    border = re.compile(r"^\+(-+\+)+$")
    while i < len(lines):
        if not border.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        j = i
        rows = []
        while j < len(lines) and (border.match(lines[j]) or
                                  (lines[j].startswith("|") and
                                   lines[j].endswith("|"))):
            if not border.match(lines[j]):
                rows.append([c.strip() for c in lines[j][1:-1].split("|")])
            j += 1
        header = rows[0] if rows else []
        variable = set()
        if "ENDPOINT" in header:
            variable = {k for k, h in enumerate(header)
                        if h in TABLE_VARIABLE_COLUMNS}
        out.append("+(table)+")
        for r, row in enumerate(rows):
            cells = [("<V>" if (r > 0 and k in variable) else c)
                     for k, c in enumerate(row)]
            out.append("| " + " | ".join(cells) + " |")
        out.append("+(end of table)+")
        i = j
    return "\n".join(out)


HELP_SECTION = re.compile(r"^[A-Z][A-Z ]*:$")
HELP_KEPT = ("USAGE:", "VERSION:", "API VERSION:")
HELP_FLAGS = ("OPTIONS:", "GLOBAL OPTIONS:")
# a flag line of pflag's usage: "  -h, --help           help" or
# "      --lease string   lease ID (default "0")"
PFLAG_LINE = re.compile(r"^ +((?:-\w, )?--[\w-]+(?: \w+)?)(?:   +(.*))?$")


def help_skeleton(text):
    """Reduce the help texts in @text to their skeleton (see the module
    doc). An etcdctl help starts at a "NAME:" line followed by an indented
    line and runs while lines are blank, indented or section headers
    ("OPTIONS:"); it must have a USAGE: section, else it is left alone.
    A cobra usage is "Usage:" + an indented line, then "Flags:" and its
    flag lines."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        if (lines[i] == "NAME:" and i + 1 < len(lines) and
                lines[i + 1].startswith("\t")):
            j = i + 1
            while j < len(lines) and (lines[j] == "" or
                                      lines[j][0] in "\t " or
                                      HELP_SECTION.match(lines[j])):
                j += 1
            # a trailing blank line may belong to what follows
            while j > i + 1 and lines[j - 1] == "" and j < len(lines):
                j -= 1
            block = lines[i:j]
            if "USAGE:" in block:
                out.extend(_etcdctl_help(block))
                i = j
                continue
        if (lines[i] == "Usage:" and i + 1 < len(lines) and
                lines[i + 1].startswith("   ")):
            j = i + 2
            flags = []
            if j + 1 < len(lines) and lines[j] == "" and \
                    lines[j + 1] == "Flags:":
                j += 2
                while j < len(lines) and lines[j].startswith(" "):
                    m = PFLAG_LINE.match(lines[j])
                    if not m:
                        flags.append("(unparsed flag line) " + lines[j])
                    else:
                        d = re.search(r" \(default (.*)\)$", m.group(2) or "")
                        flags.append(m.group(1) +
                                     (" (default %s)" % d.group(1) if d
                                      else ""))
                    j += 1
            out.append("<cobra usage skeleton>")
            out.append("Usage: " + lines[i + 1].strip())
            out.extend("Flag: " + f for f in sorted(
                flags, key=lambda f: f.strip().split("--", 1)[-1]))
            out.append("</cobra usage skeleton>")
            i = j
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def _etcdctl_help(block):
    name = block[1].strip().split(" - ", 1)[0]
    res = ["<help skeleton: %s>" % name]
    section = None
    flags = {}
    for line in block[2:]:
        if HELP_SECTION.match(line):
            section = line
            continue
        if not line.strip():
            continue
        if section in HELP_KEPT:
            res.append("%s %s" % (section, line.strip()))
        elif section in HELP_FLAGS:
            # the flag cell ends at the first tab (tab-aligned layout)
            flags.setdefault(section, []).append(line.split("\t", 1)[0])
    for section in HELP_FLAGS:
        for f in sorted(flags.get(section, []),
                        key=lambda f: f.strip().split("--", 1)[-1]):
            res.append("%s %s" % (section, f.strip()))
    res.append("</help skeleton>")
    return res


MEMBER_ORDER_NOTE = "(members not listed by ascending ID)\n"


def _reorder(entries, ctx):
    """entries: [(member ID, item)] in listing order -> (the items in role
    order, note). The note is MEMBER_ORDER_NOTE unless the IDs ascend."""
    ids = [i for i, _ in entries]
    note = "" if ids == sorted(set(ids)) else MEMBER_ORDER_NOTE
    ordered = sorted(entries, key=lambda e: ctx.rank[e[0]])
    return [item for _, item in ordered], note


def order_members(text, ctx):
    """`member list` output (simple, table, fields or json; escaped, not yet
    normalised) with its members in role order; see the module doc."""
    if not ctx.rank:
        return text
    lines = text.split("\n")
    # simple ("ID, status, ...") and table ("| ID | status | ...") rows
    # (table cells are padded: an ID may be shorter than 16 digits)
    rows = []
    for i, line in enumerate(lines):
        m = re.match(r"(?:([0-9a-f]+), |\| *([0-9a-f]+) +\|)", line)
        mid = m and int(m.group(1) or m.group(2), 16)
        if mid in ctx.rank:
            rows.append((i, mid))
    if rows:
        items, note = _reorder([(mid, lines[i]) for i, mid in rows], ctx)
        for (i, _), item in zip(rows, items):
            lines[i] = item
        return "\n".join(lines) + note
    # fields: a block per member from its "ID" line to the next blank line
    blocks = []
    i = 0
    while i < len(lines):
        m = re.match(r'"ID" : (\d+)$', lines[i])
        if m and int(m.group(1)) in ctx.rank:
            j = i
            while j < len(lines) and lines[j] != "":
                j += 1
            blocks.append((i, min(j + 1, len(lines)), int(m.group(1))))
            i = j
        i += 1
    if blocks:
        items, note = _reorder(
            [(mid, lines[a:b]) for a, b, mid in blocks], ctx)
        out = lines[:blocks[0][0]]
        for k, (a, b, _) in enumerate(blocks):
            out.extend(items[k])
            nxt = blocks[k + 1][0] if k + 1 < len(blocks) else len(lines)
            out.extend(lines[b:nxt])
        return "\n".join(out) + note
    # json: the objects of the "members" array
    m = re.search(r'"members":\[', text)
    if not m:
        return text
    objs = []
    depth = 0
    in_str = esc = False
    start = None
    pos = m.end()
    while pos < len(text):
        ch = text[pos]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = pos
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                objs.append((start, pos + 1))
        elif ch == "]" and depth == 0:
            break
        pos += 1
    entries = []
    for a, b in objs:
        mid = re.match(r'\{"ID":(\d+)', text[a:b])
        if not mid or int(mid.group(1)) not in ctx.rank:
            return text
        entries.append((int(mid.group(1)), text[a:b]))
    if not entries:
        return text
    items, note = _reorder(entries, ctx)
    out = text[:objs[0][0]]
    for k, (a, b) in enumerate(objs):
        out += items[k]
        out += text[b:objs[k + 1][0]] if k + 1 < len(objs) else ""
    out += text[objs[-1][1]:]
    return out + note


def order_member_fields(fields, ctx):
    """The same for a decoded MemberListResponse: its members (field 2)."""
    pos = []
    for k, (field, wt, val) in enumerate(fields):
        if field != 2 or wt != 2:
            continue
        try:
            sub = parse_message(val)
        except WireError:
            return fields, ""
        mid = next((v for f, w, v in sub if f == 1 and w == 0), None)
        if mid not in ctx.rank:
            return fields, ""
        pos.append((k, mid))
    if not pos:
        return fields, ""
    items, note = _reorder([(mid, fields[k]) for k, mid in pos], ctx)
    fields = list(fields)
    for (k, _), item in zip(pos, items):
        fields[k] = item
    return fields, note


def normalise_text(text, ctx):
    for rx, rep in ctx.subst:
        text = rx.sub(rep, text)
    for rx, rep in FIELD_RULES:
        text = rx.sub(rep, text)
    text = STATUS_LINE.sub(
        r"\1, \2, <VERSION>, <SIZE>, \3, \4, <TERM>, <INDEX>, <INDEX>, ",
        text)
    text = normalise_ttls(text, ctx.lease_ttl)
    text = sort_lease_keys(text)
    text = rerender_tables(text)
    return text


def show_block(data, ctx, member_list=False):
    """Escape + normalise one output stream; mark a missing final newline."""
    if not data:
        return ""
    text = help_skeleton(escape(data))
    if member_list:
        text = order_members(text, ctx)
    text = normalise_text(text, ctx)
    if not text.endswith("\n"):
        text += "\n\\ no newline at end\n"
    return text


def show_stderr(data, ctx):
    if data.startswith(b"panic: "):
        first = data.split(b"\n", 1)[0]
        return escape(first) + "\n<go stack trace elided>\n"
    return show_block(data, ctx)


def show_stdin(data, ctx):
    if len(data) > 4096:
        return "<<< stdin: %d bytes, sha256 %s\n" % (
            len(data), hashlib.sha256(data).hexdigest())
    text = escape(data)
    for rx, rep in ctx.subst:  # lease IDs typed into a txn
        text = rx.sub(rep, text)
    lines = text.split("\n")
    trailing = lines and lines[-1] == ""
    if trailing:
        lines = lines[:-1]
    res = "<<< stdin (%d bytes)\n" % len(data)
    res += "".join("< %s\n" % line for line in lines)
    if not trailing:
        res += "\\ no newline at end\n"
    return res


def split_commands(path):
    """Normalised transcript -> list of (header line, block text)."""
    blocks = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("=== ["):
                blocks.append([line.rstrip("\n"), ""])
            elif blocks:
                blocks[-1][1] += line
    return blocks


def compare(ref_path, sut_path):
    """Print which commands differ, grouped by etcdctl subcommand."""
    ref = split_commands(ref_path)
    sut = split_commands(sut_path)
    differ = []
    for i, (hdr, body) in enumerate(ref):
        if i >= len(sut) or sut[i][0] != hdr:
            differ.append(hdr + "   [command line differs or missing]")
        elif sut[i][1] != body:
            differ.append(hdr)
    if len(sut) > len(ref):
        differ.append("(%d extra commands in the server under test's "
                      "transcript)" % (len(sut) - len(ref)))
    groups = {}
    for hdr in differ:
        words = hdr.split("] ", 1)[-1].split()
        sub = next((w for w in words[1:] if not w.startswith("-")), "?")
        groups.setdefault(sub, []).append(hdr)
    print("%d of %d commands differ" % (len(differ), len(ref)))
    for g in sorted(groups):
        print("  %-12s %d" % (g, len(groups[g])))
    for hdr in differ:
        print("    " + hdr)
    return 1 if differ else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--section", required=True)
    ap.add_argument("--client", default="")
    ap.add_argument("--peer", default="")
    ap.add_argument("--member-id", type=int, default=0)
    ap.add_argument("--cluster-id", type=int, default=0)
    ap.add_argument("--lease-ttl", type=int, default=0)
    ap.add_argument("--member", action="append", default=[])
    args = ap.parse_args()
    ctx = Ctx(args)

    nums = sorted({f.split(".")[0] for f in os.listdir(args.dir)
                   if f.endswith(".cmd")})
    # Leases granted anywhere in the section, in order of appearance.
    for n in nums:
        out = read(os.path.join(args.dir, n + ".out"), b"")
        for m in re.finditer(rb"lease ([0-9a-f]+) granted with TTL", out):
            ctx.add_lease(m.group(1).decode())

    w = sys.stdout.write
    for n in nums:
        p = os.path.join(args.dir, n)
        cmd = read(p + ".cmd", b"").decode("utf-8", "replace").rstrip("\n")
        mode = read(p + ".mode", b"simple").decode().strip()
        member_list = re.search(r"(^| )member list( |$)", cmd) is not None
        w("=== [%s %d] %s\n" % (args.section, int(n),
                                normalise_text(cmd, ctx)))
        stdin = read(p + ".in")
        if stdin is not None:
            w(show_stdin(stdin, ctx))
        if os.path.exists(p + ".skip"):
            w("--- not run: %s\n" % read(p + ".skip").decode().strip())
            continue
        out = read(p + ".out", b"")
        err = read(p + ".err", b"")
        rc = read(p + ".rc", b"?").decode().strip()
        if mode == "protobuf" and out:
            w("--- stdout (protobuf, decoded)\n")
            w(normalise_text(render_protobuf(out, ctx, member_list), ctx))
        elif mode == "hash":
            w("--- stdout: %d bytes, sha256 %s\n" % (
                len(out), hashlib.sha256(out).hexdigest()))
        else:
            w("--- stdout\n")
            w(show_block(out, ctx, member_list))
        w("--- stderr\n")
        w(show_stderr(err, ctx))
        w("--- exit %s\n" % rc)
        if os.path.exists(p + ".died"):
            w("--- SERVER NOT RUNNING AFTER THIS COMMAND: %s\n" %
              read(p + ".died").decode().strip())


if __name__ == "__main__":
    main()
