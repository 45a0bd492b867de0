#!/usr/bin/env python3
"""Which crates take the flash: sums symbol sizes of an unstripped re6st
binary (cross/build.sh --symbols TARGET) by crate.

    cross/size-report.py [--nm NM] [--top N] BINARY

With LTO and opt-level "z" much is inlined, so a function is counted in the
crate that owns the symbol it ended up in (generic code instantiated by a
caller counts for the crate that defines the generic: tokio, hyper...).
C functions without a Rust path are counted as SQLite when they lie in
the address range of the sqlite3* functions (the amalgamation is one
object, so its static helpers are contiguous). Sizes are those of
the symbols; the stripped binary is bigger by its headers, .eh_frame,
relocations and the dynamic symbol table (see `size -A`).
"""
import argparse
import collections
import re
import subprocess

# Path segments that are not a crate name.
SKIP = {"dyn", "impl", "mut", "const", "&", "&mut", "*const", "*mut", "unsafe"}


def crate_of(name, addr, is_code, sqlite_range):
    if "::" not in name:
        lo, hi = sqlite_range
        if name.startswith("sqlite3") or (is_code and lo <= addr < hi):
            return "sqlite (libsqlite3-sys bundled, C)"
        if is_code:
            return "C (main, libgcc helpers)"
        return "C data (mostly SQLite's tables)"
    s = name.lstrip("<&*( ")
    for word in ("dyn ", "mut ", "const ", "unsafe ", "impl "):
        while s.startswith(word):
            s = s[len(word):].lstrip("<&*( ")
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", s)
    if not m:
        return "other"
    crate = m.group(0)
    if crate in ("gimli", "addr2line", "object", "rustc_demangle"):
        return "std backtrace symbolization (" + crate + ")"
    if crate in ("core", "alloc", "std", "compiler_builtins", "panic_abort", "std_detect", "hashbrown"):
        return "std (" + crate + ")"
    if crate in ("str", "char", "bool", "u8", "u16", "u32", "u64", "usize", "i32", "i64", "f64"):
        return "std (core, primitive types)"
    return crate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nm", default="nm")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("binary")
    a = ap.parse_args()
    out = subprocess.run([a.nm, "-S", "-C", "--size-sort", a.binary],
                         check=True, capture_output=True, text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            syms.append((int(parts[0], 16), int(parts[1], 16), parts[2], parts[3]))
    sq = [(a, a + n) for a, n, k, name in syms if k in "tT" and name.startswith("sqlite3")]
    sqlite_range = (min(r[0] for r in sq), max(r[1] for r in sq)) if sq else (0, 0)
    by = collections.defaultdict(lambda: [0, 0])  # crate -> [code, data]
    total = [0, 0]
    for addr, size, kind, name in syms:
        col = 0 if kind in "tTwW" else 1
        c = crate_of(name, addr, col == 0, sqlite_range)
        by[c][col] += size
        total[col] += size
    rows = sorted(by.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    print(f"{'crate':<52} {'code':>9} {'data':>9} {'total':>9}  share")
    for c, (code, data) in rows[: a.top]:
        t = code + data
        print(f"{c:<52} {code:>9} {data:>9} {t:>9}  {100 * t / (total[0] + total[1]):5.1f}%")
    rest = rows[a.top:]
    if rest:
        code = sum(v[0] for _, v in rest)
        data = sum(v[1] for _, v in rest)
        print(f"{'(' + str(len(rest)) + ' more)':<52} {code:>9} {data:>9} {code + data:>9}")
    print(f"{'all symbols':<52} {total[0]:>9} {total[1]:>9} {total[0] + total[1]:>9}")


if __name__ == "__main__":
    main()
