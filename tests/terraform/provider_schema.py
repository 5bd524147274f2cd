"""The google provider's schema, offline, from the npm package generated from it.

`terraform validate` needs the provider binary, which cannot be downloaded here. The npm package
`@cdktf/provider-google` is generated from the provider's schema: each `lib/<resource>/index.js`
lists every argument and nested block of one resource (`synthesizeHclAttributes`, with
`isBlock`) and every readable attribute (`get<Type>Attribute('name')` getters). This module

- downloads ONE pinned version of it with `npm pack` (checked against the registry's sha512),
  once, into `<venv>/tools/provider-google-schema/<version>/`;
- reads from the tarball only the `index.js` of the resource types the configuration uses, and
  keeps a small JSON digest of each next to it, so later runs never open the tarball;
- checks a directory of .tf files against the digests: resource and data source types,
  argument and nested block names (also inside `dynamic` blocks), the provider block, and the
  attributes that references read (`google_x.name.attr`, `data.google_x.name.attr`).

Measured here (2 shared cores, other work running): the tarball is 31.7 MB (309 MB unpacked,
2,969 files, 1,472 resource, data source and provider modules). `npm pack` took 15 s the first
time (peak RSS 447 MB) and 3.5 s when npm's own cache already held it. The one pass over the
tarball that digests the 18 modules terraform/ uses took 1.0-4.5 s (gzip has no index: every
pass reads the whole stream); a warm run reads 19 KB of digests in about 3 ms.

`python -m tests.terraform.provider_schema` fills the cache (`make provider-schema`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

PACKAGE = "@cdktf/provider-google"
# 16.12.1 is generated from hashicorp/google 6.50.0 (its package.json `cdktf.provider`), inside
# the module's `>= 6.0, < 8.0` constraint.
VERSION = "16.12.1"
PROVIDER_VERSION = "6.50.0"
INTEGRITY = (
    "sha512-KqNA/5RiFT07r0PSZ6/07cJ2zESUgbj1JchVj21iBFBZVUbD+578xA/k8eq/"
    "r0cbyEgLmg9eYWeVslaYah4DCQ=="
)
TARBALL = "package.tgz"
# Bumped whenever parse_index_js changes what it extracts: digests of an older parser are then
# rebuilt instead of trusted.
DIGEST_FORMAT = 1

NPM_MISSING = (
    "npm is not on PATH; it downloads the google provider's schema package "
    f"({PACKAGE}@{VERSION}) once. Install Node.js and npm (Debian: `apt-get install npm`), "
    "then run `make provider-schema` (or just the tests again)."
)

# Meta-arguments and meta-blocks Terraform itself handles in every resource block.
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
META_BLOCKS = {"lifecycle", "provisioner", "connection"}

_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=True, strip_string_quotes=True)


def cache_dir() -> Path:
    return Path(sys.prefix) / "tools" / "provider-google-schema" / VERSION


# -- download ---------------------------------------------------------------------------------


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def tarball(cache: Path | None = None) -> Path:
    """The pinned package's tarball, downloaded with `npm pack` on first use."""
    cache = cache or cache_dir()
    target = cache / TARBALL
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if not npm:
        raise RuntimeError(NPM_MISSING)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        result = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        packed = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or len(packed) != 1:
            raise RuntimeError(
                f"`npm pack {PACKAGE}@{VERSION}` failed (exit {result.returncode}):\n"
                f"{result.stderr[-2000:]}"
            )
        actual = _integrity(packed[0])
        if actual != INTEGRITY:
            raise RuntimeError(f"{packed[0].name}: integrity {actual}, expected {INTEGRITY}")
        packed[0].replace(target)  # atomic: a half-written tarball is never the cached one
    return target


# -- the schema of one resource, from its generated index.js ----------------------------------


@dataclass
class Node:
    """One resource, data source, provider or nested block."""

    arguments: set[str] = field(default_factory=set)
    blocks: dict[str, Node] = field(default_factory=dict)
    # Everything an expression may read: the arguments, nested blocks and computed attributes.
    attributes: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "arguments": sorted(self.arguments),
            "blocks": {name: node.to_json() for name, node in sorted(self.blocks.items())},
            "attributes": sorted(self.attributes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        return cls(
            arguments=set(data["arguments"]),
            blocks={name: cls.from_json(node) for name, node in data["blocks"].items()},
            attributes=set(data["attributes"]),
        )


_HCL_FUNCTION = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{$", re.M)
_HCL_ENTRY = re.compile(r"(\w+): \{\s*value: ([^\n]*),\s*isBlock: (true|false),")
_NESTED = re.compile(r"(?<![.\w])([a-z]\w*?)ToHclTerraform\b")
_GETTER = re.compile(r"this\.get\w*Attribute\('(\w+)'\)|new \w+\(this, \"(\w+)\"")
_TOP_CLASS = re.compile(
    r"^class (\w+) extends cdktf\.(?:TerraformResource|TerraformDataSource|TerraformProvider) \{$",
    re.M,
)


def _body(text: str, start: int) -> str:
    """From `start` to the end of that top-level declaration (the next `}` in column 0)."""
    end = text.find("\n}\n", start)
    return text[start : end if end >= 0 else len(text)]


def _class_body(text: str, name: str) -> str:
    match = re.search(rf"^class {re.escape(name)} extends ", text, re.M)
    return _body(text, match.start()) if match else ""


def _getters(body: str) -> set[str]:
    return {a or b for a, b in _GETTER.findall(body)}


def parse_index_js(text: str) -> Node:
    """The schema of the resource a cdktf-generated index.js defines."""
    functions = {m.group(1): _body(text, m.start()) for m in _HCL_FUNCTION.finditer(text)}

    def node(entries_source: str, getters: set[str], seen: frozenset[str]) -> Node:
        result = Node(attributes=set(getters))
        for name, value, is_block in _HCL_ENTRY.findall(entries_source):
            result.attributes.add(name)
            if is_block == "false":
                result.arguments.add(name)
                continue
            nested = [n for n in _NESTED.findall(value) if n in functions and n not in seen]
            struct = nested[0] if nested else ""
            class_name = struct[:1].upper() + struct[1:] + "OutputReference"
            result.blocks[name] = node(
                functions.get(struct, ""),
                _getters(_class_body(text, class_name)),
                seen | {struct},
            )
        return result

    top = _TOP_CLASS.search(text)
    if not top:
        raise ValueError("no resource, data source or provider class in this index.js")
    body = _body(text, top.start())
    synth = body.find("synthesizeHclAttributes()")
    if synth < 0:
        raise ValueError(f"{top.group(1)}: no synthesizeHclAttributes()")
    return node(body[synth:], _getters(body), frozenset())


# -- which index.js describes a type ----------------------------------------------------------


def module_name(kind: str, type_name: str) -> str:
    """`resource google_pubsub_topic` -> `pubsub-topic`; data sources get a `data-` prefix."""
    if kind == "provider":
        return "provider"
    slug = type_name.replace("_", "-")
    if kind == "data":
        return f"data-{slug}"
    return slug.removeprefix("google-")


def schemas(modules: Iterable[str], cache: Path | None = None) -> dict[str, Node | None]:
    """Schema per package module name; None when the package has no such module."""
    cache = cache or cache_dir()
    digests = cache / f"digests-v{DIGEST_FORMAT}"
    wanted = set(modules)
    found: dict[str, Node | None] = {}
    for name in wanted:
        digest = digests / f"{name}.json"
        if digest.is_file():
            data = json.loads(digest.read_text())
            found[name] = None if data is None else Node.from_json(data)
    # The package's module names, listed during the first pass over the tarball: an unknown
    # type is then answered without reading the tarball again.
    listing = cache / "modules.txt"
    if listing.is_file():
        modules_in_package = set(listing.read_text().split())
        for name in wanted - set(found) - modules_in_package:
            found[name] = None
    missing = wanted - set(found)
    if missing:
        members = {f"package/lib/{name}/index.js": name for name in missing}
        listed: set[str] = set()
        digests.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball(cache), "r:gz") as archive:
            for member in archive:
                if member.name.endswith("/index.js"):
                    listed.add(member.name.split("/")[-2])
                name = members.pop(member.name, None)
                if name is not None:
                    stream = archive.extractfile(member)
                    assert stream is not None
                    schema = parse_index_js(stream.read().decode())
                    found[name] = schema
                    (digests / f"{name}.json").write_text(json.dumps(schema.to_json()))
                if not members and listing.is_file():
                    break
        if not listing.is_file():
            listing.write_text("\n".join(sorted(listed)) + "\n")
        for name in members.values():  # not in the package: an unknown type
            found[name] = None
    return found


# -- checking a configuration -----------------------------------------------------------------


@dataclass(frozen=True)
class Use:
    """One block of the configuration that the provider's schema governs."""

    kind: str  # "resource", "data" or "provider"
    type_name: str
    name: str
    body: dict[str, Any]
    where: str


def parse_tf(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = hcl2.loads(text, serialization_options=_OPTIONS)
    return parsed


def uses(parsed: dict[str, Any], where: str) -> Iterator[Use]:
    for kind in ("resource", "data"):
        for entry in parsed.get(kind, []):
            for type_name, named in entry.items():
                if type_name.startswith("google"):
                    for name, body in named.items():
                        if name != "__is_block__":
                            yield Use(kind, type_name, name, body, where)
    for entry in parsed.get("provider", []):
        for type_name, body in entry.items():
            if type_name in {"google", "google-beta"}:
                yield Use("provider", type_name, type_name, body, where)


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, dict) and item.get("__is_block__") for item in value
    )


def check_body(body: dict[str, Any], schema: Node, path: str, top: bool) -> list[str]:
    problems: list[str] = []
    for key, value in body.items():
        if key == "__is_block__":
            continue
        here = f"{path}.{key}"
        # python-hcl2 gives `dynamic "label" {...}` as [{"label": {..., "__is_block__": true}}].
        if key == "dynamic" and isinstance(value, list):
            for item in value:
                for label, dynamic in item.items():
                    if label == "__is_block__":
                        continue
                    nested = schema.blocks.get(label)
                    if nested is None:
                        problems.append(f"{path}: dynamic block `{label}` is not a block here")
                        continue
                    for content in dynamic.get("content", []):
                        problems += check_body(content, nested, f"{path}.{label}", top=False)
            continue
        if top and (key in META_ARGUMENTS or (key in META_BLOCKS and _is_block(value))):
            continue
        if _is_block(value):
            nested = schema.blocks.get(key)
            if nested is None:
                kind = "an argument" if key in schema.arguments else "unknown"
                problems.append(f"{here}: block `{key}` is {kind} here")
                continue
            for item in value:
                problems += check_body(item, nested, here, top=False)
        elif key not in schema.arguments:
            kind = "a block" if key in schema.blocks else "unknown"
            problems.append(f"{here}: argument `{key}` is {kind} here")
    return problems


_REFERENCE = re.compile(
    r"(?<![\w.])(data\.)?(google_[a-z0-9_]+)\.([a-zA-Z_][\w-]*)"
    r"((?:\[[^\]]*\]|\.[a-zA-Z_]\w*)*)"
)
_STEP = re.compile(r"\[[^\]]*\]|\.([a-zA-Z_]\w*)")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def references(parsed: dict[str, Any]) -> Iterator[tuple[str, str, str, list[str]]]:
    """(kind, type, name, attribute path) of every `google_x.name...` an expression reads."""
    for text in _strings(parsed):
        for data, type_name, name, rest in _REFERENCE.findall(text):
            steps = [m.group(1) for m in _STEP.finditer(rest) if m.group(1)]
            yield ("data" if data else "resource", type_name, name, steps)


def check_directory(directory: Path) -> list[str]:
    """Every name in the directory's .tf files the pinned provider schema does not know."""
    files = {path.name: parse_tf(path.read_text()) for path in sorted(directory.glob("*.tf"))}
    return check_parsed(files)


def check_parsed(files: dict[str, dict[str, Any]], cache: Path | None = None) -> list[str]:
    found = [use for where, parsed in files.items() for use in uses(parsed, where)]
    refs = [(where, *ref) for where, parsed in files.items() for ref in references(parsed)]
    wanted = {module_name(u.kind, u.type_name) for u in found}
    wanted |= {module_name(kind, type_name) for _, kind, type_name, _, _ in refs}
    known = schemas(wanted, cache)
    declared = {(u.kind, u.type_name, u.name) for u in found}

    problems: list[str] = []
    for use in found:
        label = f"{use.where}: {use.kind} {use.type_name}.{use.name}"
        schema = known[module_name(use.kind, use.type_name)]
        if schema is None:
            problems.append(f"{label}: no such {use.kind} type in google {PROVIDER_VERSION}")
            continue
        problems += check_body(use.body, schema, label, top=True)
    for where, kind, type_name, name, steps in refs:
        address = f"{where}: {'data.' if kind == 'data' else ''}{type_name}.{name}"
        if (kind, type_name, name) not in declared:
            problems.append(f"{address}: read, but this configuration does not declare it")
            continue
        node = known[module_name(kind, type_name)]
        for step in steps:
            if node is None:
                break
            if step not in node.attributes:
                problems.append(f"{address} read as ...{step}: no attribute `{step}`")
                break
            node = node.blocks.get(step)
    return sorted(set(problems))


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2] / "terraform"
    failed = False
    for directory in (root, *sorted(p for p in (root / "examples").iterdir() if p.is_dir())):
        problems = check_directory(directory)
        failed = failed or bool(problems)
        print(f"{directory}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
    print(f"cache: {cache_dir()}")
    sys.exit(1 if failed else 0)
