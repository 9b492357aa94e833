"""The package's hand-written ctypes mirrors of the public C structs
(emdpo/_lib.py) against the C compiler and the headers: every mirrored
struct has the C struct's members, by name and in order (read from
include/emdpo/*.h, so a member added to a header fails here even where it
fits in the struct's tail padding), and every member's offset and size and
every struct's size are the ones the compiler gives (a C program printing
offsetof and sizeof, built and run by the test). Skips without the headers
or a C compiler ($CC, else cc).
"""
import ctypes
import os
import re
import shutil
import subprocess

import pytest

from emdpo import _lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INCLUDE = os.path.join(ROOT, "include")
CC = os.environ.get("CC", "cc").split()
need_headers = pytest.mark.skipif(not os.path.isdir(os.path.join(INCLUDE, "emdpo")), reason="no include/emdpo")
need_cc = pytest.mark.skipif(shutil.which(CC[0]) is None, reason="no C compiler %s" % CC[0])


def c_struct_members():
    """{typedef name: [member names in order]} of every `typedef struct X {
    ... } X;` of the public headers (no nested braces there)."""
    out = {}
    for name in sorted(os.listdir(os.path.join(INCLUDE, "emdpo"))):
        if not name.endswith(".h"):
            continue
        with open(os.path.join(INCLUDE, "emdpo", name)) as f:
            text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        for m in re.finditer(r"typedef\s+struct\s+\w+\s*\{([^{}]*)\}\s*(\w+)\s*;", text):
            members = []
            for decl in m.group(1).split(";"):
                decl = " ".join(decl.split())
                if not decl:
                    continue
                fn = re.search(r"\(\s*\*\s*(\w+)\s*\)", decl)  # a function pointer member
                if fn:
                    members.append(fn.group(1))
                    continue
                decl = re.sub(r"\[[^\]]*\]", "", decl)  # array bounds
                members += [re.search(r"(\w+)\s*$", part).group(1) for part in decl.split(",")]
            out[m.group(2)] = members
    return out


def test_every_mirror_is_checked():
    structs = {v for v in vars(_lib).values()
               if isinstance(v, type) and issubclass(v, ctypes.Structure) and v is not ctypes.Structure}
    assert structs == set(_lib.MIRRORS), "add new mirrors to _lib.MIRRORS"
    assert all(getattr(s, "_c_name_", None) for s in _lib.MIRRORS)


@need_headers
def test_mirrors_name_every_c_member_in_order():
    c = c_struct_members()
    assert "emdpo_train_opts" in c and "emdpo_diag" in c, "the header parser found no structs"
    for s in _lib.MIRRORS:
        assert s._c_name_ in c, "%s mirrors %s, which no public header defines" % (s.__name__, s._c_name_)
        assert [f[0] for f in s._fields_] == c[s._c_name_], \
            "%s: the C struct %s has members %s" % (s.__name__, s._c_name_, c[s._c_name_])


@need_headers
@need_cc
def test_offsets_and_sizes_are_the_compilers(tmp_path):
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include \"emdpo.h\"", "int main(void) {"]
    want = []
    for s in _lib.MIRRORS:
        t = s._c_name_
        lines.append('    printf("%s %%zu %%zu\\n", sizeof(%s), _Alignof(%s));' % (t, t, t))
        want.append("%s %d %d" % (t, ctypes.sizeof(s), ctypes.alignment(s)))
        for name, ctype in s._fields_:
            lines.append('    printf("%s.%s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                         % (t, name, t, name, t, name))
            want.append("%s.%s %d %d" % (t, name, getattr(s, name).offset, ctypes.sizeof(ctype)))
    lines += ["    return 0;", "}"]
    src, exe = tmp_path / "layout.c", tmp_path / "layout"
    src.write_text("\n".join(lines) + "\n")
    cc = subprocess.run(CC + ["-std=c11", "-I", INCLUDE, str(src), "-o", str(exe)], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    got = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
    wrong = ["C: %-40s ctypes: %s" % (g, w) for g, w in zip(got, want) if g != w]
    assert len(got) == len(want) and not wrong, "mirrors that differ from the C layout (offset/size):\n" + \
        "\n".join(wrong)
