#!/usr/bin/env python3
"""Distil containerd's API .proto files down to their wire facts.

Keeps package, imports, services, messages, enums, field names, types and
numbers; drops every comment, licence header and gogoproto/fieldpath option,
and rewrites import paths to our tree. Used once to seed proto/; the output is
reviewed and then maintained by hand.
"""
import re, sys, pathlib

SRC = pathlib.Path(sys.argv[1])
DST = pathlib.Path(sys.argv[2])
PREFIX = "github.com/containerd/containerd/api/"

def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)

def strip_options(text):
    # field options like [(gogoproto.nullable) = false, ...]
    text = re.sub(r"\s*\[[^\]]*\(gogoproto[^\]]*\]", "", text)
    text = re.sub(r"\s*\[[^\]]*\(containerd\.plugin[^\]]*\]", "", text)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("import weak"):
            continue
        if s.startswith("option "):
            continue
        out.append(line.rstrip())
    return "\n".join(out)

def tidy(text):
    text = text.replace(PREFIX, "containerd/")
    text = text.replace("\t", "    ")
    text = re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text)
    text = re.sub(r"\{\n\s*\n", "{\n", text)
    text = re.sub(r"\n\s*\n(\s*\})", r"\n\1", text)
    return text.strip() + "\n"

for src in sorted(SRC.rglob("*.proto")):
    rel = src.relative_to(SRC)
    if "ttrpc" in rel.parts:
        continue
    out = DST / "containerd" / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(tidy(strip_options(strip_comments(src.read_text()))))
    print(out)
