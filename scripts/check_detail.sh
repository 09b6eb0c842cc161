#!/usr/bin/env bash
# scripts/check_detail.sh — nothing reaches into another folder's `detail`
# namespace (docs: STYLE.md, "A program" and "The house").
#
# A header of include/nsl/<folder>/ may use the `detail` names defined in its
# own folder; a name another folder needs is made public there (a documented
# name in namespace nsl). Programs (apps/, examples/, bench/) use no library
# `detail` name at all. The CUDA headers (include/nsl/cuda/) are a folder of
# their own like any other: what they share with a CPU op is public there.
#
# Checked: every `detail::name` (with any qualifier, including `using
# detail::name;` and namespace aliases), resolved to the file(s) defining it;
# and every unqualified name used inside a `detail` namespace (or after
# `using namespace ...detail`) that only another folder defines. Comments,
# strings and preprocessor lines are ignored. Names defined nowhere (e.g. by
# a macro) are printed as notes.
#
# Usage: scripts/check_detail.sh [-v]   (from anywhere; needs python3)
# Exit status: 0 when there is no violation, 1 otherwise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec python3 - "$ROOT" "$@" <<'PY'
import os
import re
import sys

root = sys.argv[1]
verbose = "-v" in sys.argv[2:]
LIB = "include/nsl"
PROGRAMS = ["apps", "examples", "bench"]
EXTS = (".hpp", ".h", ".cuh", ".cpp", ".cu")
KEYWORDS = {
    "if", "for", "while", "switch", "return", "sizeof", "static_assert", "decltype", "alignof",
    "template", "typename", "class", "struct", "const", "constexpr", "inline", "static", "auto",
    "void", "int", "bool", "char", "float", "double", "unsigned", "long", "short", "operator",
    "noexcept", "using", "namespace", "new", "delete", "case", "default", "true", "false",
    "nullptr", "this", "std", "extern",
}


def files_under(rel):
    out = []
    base = os.path.join(root, rel)
    for d, _, names in os.walk(base):
        for n in sorted(names):
            if n.endswith(EXTS):
                out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def strip(text):
    """Blanks comments, string/char literals and preprocessor lines, keeping newlines."""
    out = []
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c in " \t":
            out.append(c)
            i += 1
            continue
        if at_line_start and c == "#":  # preprocessor line, with continuations
            while i < n and text[i] != "\n":
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    out.append(" \n")
                    i += 2
                    continue
                out.append(" ")
                i += 1
            continue
        at_line_start = False
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                out.append(" ")
                i += 1
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        m = re.match(r'R"([^(\s]*)\(', text[i:i + 20]) if c == "R" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) else None
        if m:
            end = text.find(")" + m.group(1) + '"', i)
            end = n if end < 0 else end + len(m.group(1)) + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
            continue
        if c in "\"'":
            if c == "'" and i > 0 and (text[i - 1].isalnum()):  # digit separator 1'000
                out.append(" ")
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + (c if j - 1 > i else ""))
            i = j
            continue
        if c == "\n":
            at_line_start = True
        out.append(c)
        i += 1
    return "".join(out)


def strip_template_prefix(head):
    head = head.strip()
    while head.startswith("template"):
        k = head.find("<")
        if k < 0:
            break
        depth, j = 0, k
        while j < len(head):
            if head[j] == "<":
                depth += 1
            elif head[j] == ">":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        head = head[j + 1:].strip()
    return head


def declared_name(head):
    head = strip_template_prefix(re.sub(r"\s+", " ", head))
    if not head:
        return None
    m = re.match(r"(?:\[\[[^\]]*\]\]\s*)?(?:struct|class|union|enum(?:\s+class|\s+struct)?)\s+(?:\[\[[^\]]*\]\]\s*)?(\w+)", head)
    if m:
        return m.group(1)
    m = re.match(r"using\s+(\w+)\s*=", head)
    if m:
        return m.group(1)
    if head.startswith(("using ", "static_assert", "namespace ", "friend ", "extern ")):
        return None
    # the identifier before the first '(', '=' or '[' outside angle brackets
    depth, cut = 0, len(head)
    for j, ch in enumerate(head):
        if ch == "<":
            depth += 1
        elif ch == ">" and depth > 0:
            depth -= 1
        elif ch in "(=[" and depth == 0:
            cut = j
            break
    ids = re.findall(r"[A-Za-z_]\w*", head[:cut])
    ids = [x for x in ids if x not in KEYWORDS]
    return ids[-1] if ids else None


class Parsed:
    """One file: its namespaces, detail definitions, and identifiers with scope."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            self.text = strip(f.read())
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        self.defs = []       # (namespace tuple, name)
        self.namespaces = set()
        self.scopes = []     # (start, end, namespace tuple) of every namespace body
        self.using_dirs = []  # (pos, end of enclosing block, namespace words, ns tuple at pos)
        self.parse()

    def line(self, pos):
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def parse(self):
        t = self.text
        stack = []  # entries: ("ns", names tuple, start) or ("block", None, start)
        ns = ()
        head_start = 0
        for m in re.finditer(r"[{};]", t):
            ch, pos = m.group(), m.start()
            at_ns_scope = not stack or stack[-1][0] == "ns"
            if ch == "{":
                head = t[head_start:pos]
                mm = re.search(r"(?:^|\s)(?:inline\s+)?namespace\s*([\w:]*)\s*$", head)
                if at_ns_scope and mm:
                    names = tuple(x for x in mm.group(1).split("::") if x) if mm.group(1) else ("",)
                    stack.append(("ns", names, pos))
                    ns = ns + names
                    self.namespaces.add(ns)
                    self.scopes.append([pos, None, ns])
                elif at_ns_scope and re.search(r"extern\s+\"\s*\"\s*$", head):
                    stack.append(("ns", (), pos))
                    self.scopes.append([pos, None, ns])
                else:
                    if at_ns_scope and "detail" in ns:
                        name = declared_name(head)
                        if name:
                            self.defs.append((ns, name))
                    stack.append(("block", None, pos))
                head_start = pos + 1
            elif ch == "}":
                if stack:
                    kind, names, start = stack.pop()
                    if kind == "ns":
                        for s in reversed(self.scopes):
                            if s[0] == start:
                                s[1] = pos
                                break
                        ns = ns[: len(ns) - len(names)]
                head_start = pos + 1
            else:  # ';'
                if at_ns_scope:
                    head = t[head_start:pos]
                    if "detail" in ns:
                        name = declared_name(head)
                        if name:
                            self.defs.append((ns, name))
                    mm = re.search(r"using\s+namespace\s+((?:::)?[\w:]*detail[\w:]*)\s*$", head)
                    if mm:
                        self.using_dirs.append((pos, None, mm.group(1), ns))
                    head_start = pos + 1
                else:
                    head = t[head_start:pos]
                    mm = re.search(r"using\s+namespace\s+((?:::)?[\w:]*detail[\w:]*)\s*$", head)
                    if mm:
                        # visible until the enclosing block closes
                        depth, j = 0, pos
                        while j < len(t):
                            if t[j] == "{":
                                depth += 1
                            elif t[j] == "}":
                                if depth == 0:
                                    break
                                depth -= 1
                            j += 1
                        self.using_dirs.append((pos, j, mm.group(1), ns))
                    head_start = pos + 1
        for s in self.scopes:
            if s[1] is None:
                s[1] = len(t)
        # a namespace-scope using-directive lasts to the end of its namespace
        fixed = []
        for pos, end, words, at in self.using_dirs:
            if end is None:
                end = len(t)
                for s in self.scopes:
                    if s[2] == at and s[0] < pos < s[1]:
                        end = min(end, s[1])
            fixed.append((pos, end, words, at))
        self.using_dirs = fixed

    def ns_at(self, pos):
        best = ()
        best_start = -1
        for start, end, ns in self.scopes:
            if start < pos < end and start > best_start:
                best, best_start = ns, start
        return best


def folder_of(path):
    parts = path.split("/")
    if path.startswith(LIB + "/"):
        rest = parts[2:]
        return "/".join(parts[:2] + rest[:1]) if len(rest) > 1 else LIB
    return "/".join(parts[:-1])


lib_files = files_under(LIB)
program_files = [f for d in PROGRAMS for f in files_under(d)]
parsed = {p: Parsed(p) for p in lib_files + program_files}

# definitions: (namespace tuple) + name -> defining files; detail namespaces
defined = {}
for p in parsed.values():
    for ns, name in p.defs:
        defined.setdefault(ns + (name,), set()).add(p.path)
    for ns in p.namespaces:
        if "detail" in ns and ns[-1] != "detail":
            # a namespace nested in detail (detail::checkpoint) is "defined" by the files opening it
            i = ns.index("detail")
            for k in range(i + 1, len(ns)):
                defined.setdefault(ns[: k + 1], set()).add(p.path)
detail_namespaces = {ns for p in parsed.values() for ns in p.namespaces if ns and ns[-1] == "detail"}


def resolve(qualifier, rest, at):
    """Fully qualified candidates for qualifier::detail::rest seen in namespace `at`."""
    absolute = qualifier.startswith("::")
    q = tuple(x for x in qualifier.split("::") if x)
    prefixes = [()] if absolute else [at[:i] for i in range(len(at), -1, -1)]
    for pre in prefixes:
        base = pre + q + ("detail",)
        if base not in detail_namespaces:
            continue
        for k in range(len(rest), 0, -1):
            key = base + tuple(rest[:k])
            if key in defined:
                return key, defined[key]
    return None, set()


violations, allowed, unknown = [], [], []


def judge(p, pos, shown, key, owners):
    user_folder = folder_of(p.path)
    where = f"{p.path}:{p.line(pos)}"
    if not owners:
        unknown.append(f"{where}: {shown}: no definition found")
        return
    if any(folder_of(o) == user_folder for o in owners):
        return
    owners_text = ", ".join(sorted(owners))
    violations.append(f"{where}: {shown} is defined in {owners_text}")


use_re = re.compile(r"((?:::)?(?:\b\w+\s*::\s*)*?)\bdetail\s*::\s*(\w+)((?:\s*::\s*\w+)*)")
for p in parsed.values():
    t = p.text
    # 1. qualified uses
    for m in use_re.finditer(t):
        qualifier = re.sub(r"\s+", "", m.group(1))
        rest = [m.group(2)] + [x for x in re.split(r"\s*::\s*", m.group(3)) if x]
        at = p.ns_at(m.start())
        key, owners = resolve(qualifier, rest, at)
        shown = re.sub(r"\s+", "", m.group(0))
        judge(p, m.start(), shown, key, owners)
    # 2. unqualified names inside a detail namespace or after using namespace detail
    regions = []  # (start, end, visible detail namespace tuples)
    for start, end, ns in p.scopes:
        if "detail" in ns:
            i = len(ns) - 1 - list(reversed(ns)).index("detail")
            visible = [ns[:k] for k in range(len(ns), i, -1)]  # innermost detail-based scopes
            regions.append((start, end, visible))
    for pos, end, words, at in p.using_dirs:
        q = words.lstrip(":")
        parts = tuple(x for x in q.split("::") if x)
        for pre in ([()] if words.startswith("::") else [at[:i] for i in range(len(at), -1, -1)]):
            if pre + parts in detail_namespaces or pre + parts in defined:
                regions.append((pos, end, [pre + parts]))
                break
    if not regions:
        continue
    own = {ns + (name,) for ns, name in p.defs}
    for m in re.finditer(r"[A-Za-z_]\w*", t):
        pos = m.start()
        before = t[max(0, pos - 2):pos]
        if before.endswith(".") or before.endswith("->") or before.endswith("::"):
            continue
        after = t[m.end():m.end() + 3].lstrip()
        if after.startswith("::") and m.group() == "detail":
            continue
        for start, end, visible in regions:
            if not (start < pos < end):
                continue
            for vis in visible:
                key = vis + (m.group(),)
                if key in defined and key not in own:
                    judge(p, pos, "::".join(key) + " (unqualified)", key, defined[key])
                    break
            break

# one report per (place, name)
def unique(xs):
    seen, out = set(), []
    for x in xs:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out

violations, allowed, unknown = unique(violations), unique(allowed), unique(unknown)
for v in violations:
    print(f"{v}")
if verbose:
    for a in allowed:
        print(f"allowed: {a}")
    for u in unknown:
        print(f"note: {u}")
print(f"check_detail: {len(violations)} use(s) of another folder's detail names"
      + (f", {len(allowed)} CUDA use(s) of the same op's CPU detail" if allowed else "")
      + (f", {len(unknown)} unresolved" if unknown else ""), file=sys.stderr)
sys.exit(1 if violations else 0)
PY
