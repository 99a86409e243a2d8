#!/usr/bin/env python3
"""Import circles between the files of src/: which file refers to which (through `use`
items and `crate::`/`super::`/`self::` paths in code), then every strongly connected
group of more than one file. Prints the groups and exits 1 when there is one.

    python3 scripts/import-cycles.py            # the whole crate
    python3 scripts/import-cycles.py --edges    # also print every file's imports

A reference names a module file when a path prefix resolves to `<module>.rs` or
`<module>/mod.rs`; a parent's `mod.rs` reached only through a re-export counts as the
parent. Comments and strings are skipped roughly (lines starting with `//`).
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def file_of(parts):
    """The file of the longest module prefix of `parts` (a list of names)."""
    for n in range(len(parts), -1, -1):
        base = os.path.join(SRC, *parts[:n])
        for cand in (base + ".rs", os.path.join(base, "mod.rs")):
            if n == 0:
                cand = os.path.join(SRC, "lib.rs")
            if os.path.isfile(cand):
                return os.path.normpath(cand)
    return None


def expand(tree):
    """`a::{b, c::{d}}` -> ['a::b', 'a::c::d']."""
    tree = tree.strip()
    m = re.match(r"^(.*?)\{(.*)\}$", tree, re.S)
    if not m:
        return [tree]
    head, body = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    out = []
    for it in items:
        if it.strip():
            out.extend(head + x for x in expand(it.strip()))
    return out


def references(path):
    text = "\n".join(
        l for l in open(path, encoding="utf-8").read().split("\n") if not l.strip().startswith("//")
    )
    text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
    refs = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        refs.extend(expand(m.group(1)))
    refs.extend(re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", text))
    return refs


def resolve(path, ref):
    ref = re.sub(r"\s+as\s+\w+$", "", ref.strip())
    parts = [p for p in ref.split("::") if p]
    here = module_of(path)
    if not parts:
        return None
    if parts[0] == "crate":
        base, rest = [], parts[1:]
    elif parts[0] in ("super", "self"):
        base, rest = list(here), parts
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    else:
        return None
    return file_of(base + rest)


def main():
    files = []
    for root, _, names in os.walk(SRC):
        files.extend(os.path.normpath(os.path.join(root, n)) for n in names if n.endswith(".rs"))
    edges = {}
    for f in files:
        targets = {resolve(f, r) for r in references(f)}
        edges[f] = sorted(t for t in targets if t and t != f)
    if "--edges" in sys.argv:
        for f in sorted(edges):
            print(os.path.relpath(f, SRC), "->", ", ".join(os.path.relpath(t, SRC) for t in edges[f]))
    # Tarjan's strongly connected components.
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    for comp in out:
        print("circle:", " <-> ".join(os.path.relpath(c, SRC) for c in comp))
    print(f"{len(out)} import circle(s) among {len(files)} files")
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
