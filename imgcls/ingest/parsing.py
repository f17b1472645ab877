"""Reading text files people upload (pipeline JSON/YAML, label CSVs) with caps checked before the parse.

A parser's cost is not bounded by the size of its input: 400 kB of '[' nested 200,000 deep makes
`json.loads` raise RecursionError, and PyYAML's pure-Python scanner spends minutes on a 100 kB YAML
nested 50,000 deep. So every uploaded text is size-capped, then its nesting depth is measured by a
cheap scan that never builds anything, and only then parsed; YAML is read by a safe loader that also
stops at the depth cap, and refuses aliases and tags.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

MAX_PIPELINE_BYTES = 100_000  # a pipeline file is a few kB; PyYAML reads about 0.2 MB a second
MAX_DEPTH = 32  # an albumentations pipeline nests 6 deep, 10 with a OneOf inside
MAX_CSV_BYTES = 64 * 1024**2  # a label CSV of 200,000 rows with long paths and notes is about 30 MB

# JSON strings (escapes included) and the brackets outside them
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.S)
# where YAML nests without brackets: block indentation and compact '- - x' / '? x' indicators
_YAML_INDICATORS = re.compile(r"(?:[-?](?:[ \t]+|$))+")


class ParseRefused(ValueError):
    """An uploaded text that is not read at all; str() is one plain sentence naming the file."""


def read_file(path: Path, max_bytes: int, kind: str = "text file") -> bytes:
    """A file's bytes, refused by its size before any of it is read."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ParseRefused(f"{path.name} is {size:,} bytes, over the limit of {max_bytes:,} for a {kind}.")
    with open(path, "rb") as fh:
        return fh.read(max_bytes + 1)  # a file that grew since is still cut at the cap (and refused)


def read_text(data: bytes, filename: str, max_bytes: int, kind: str = "text file") -> str:
    """The bytes as UTF-8 text (a byte-order mark allowed), refused when over max_bytes or not text."""
    if len(data) > max_bytes:
        raise ParseRefused(f"{filename} is {len(data):,} bytes, over the limit of {max_bytes:,} for a {kind}.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ParseRefused(f"{filename} is not a text file (UTF-8), so it cannot be a {kind}.") from None


def json_depth(text: str, stop: int | None = None) -> int:
    """How deep the brackets of JSON text nest (strings skipped); stops counting once past `stop`."""
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()  # a whole string, or one bracket
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
            if stop is not None and deepest > stop:
                break
        elif token in ("]", "}"):
            depth = max(depth - 1, 0)
    return deepest


def yaml_depth(text: str, stop: int | None = None) -> int:
    """An upper bound of how deep YAML nests: open flow brackets plus block levels plus '- ' indicators.

    Brackets inside quoted strings count too (an overestimate); the loader checks the exact depth."""
    flow = deepest = 0
    indents: list[int] = []
    for line in text.splitlines():
        body = line.lstrip(" ")
        if not body or body.startswith("#"):
            continue
        indent = len(line) - len(body)
        if flow == 0:  # block levels only mean something outside a flow collection
            while indents and indents[-1] > indent:
                indents.pop()
            if not indents or indents[-1] < indent:
                indents.append(indent)
        compact = _YAML_INDICATORS.match(body)
        marks = compact.group().count("-") + compact.group().count("?") if compact else 0
        line_deepest = flow
        for char in body:
            if char in "[{":
                flow += 1
                line_deepest = max(line_deepest, flow)
            elif char in "]}":
                flow = max(flow - 1, 0)
        deepest = max(deepest, len(indents) + marks + line_deepest)
        if stop is not None and deepest > stop:
            break
    return deepest


def _too_deep(filename: str, max_depth: int) -> ParseRefused:
    return ParseRefused(f"{filename} nests more than {max_depth} levels deep, over the limit for this file; "
                        "it was not read.")


class _Alias(yaml.YAMLError):
    pass


class _TooDeep(yaml.YAMLError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader (no tags but the standard ones), refusing aliases and nodes nested too deep.

    PyYAML reads events lazily, so a hostile file is refused after max_depth levels, not at its end."""

    def __init__(self, text: str, max_depth: int):
        super().__init__(text)
        self.max_depth, self.depth = max_depth, 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):  # anchors and aliases can make a tiny file expand enormously
            raise _Alias()
        self.depth += 1
        try:
            if self.depth > self.max_depth:
                raise _TooDeep()
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_json(text: str, filename: str, max_depth: int = MAX_DEPTH):
    """JSON text as Python values, refused when it nests deeper than max_depth (checked before parsing)."""
    if json_depth(text, max_depth) > max_depth:
        raise _too_deep(filename, max_depth)
    try:
        return json.loads(text)
    except RecursionError:  # only reached by text the scan misread, such as an unterminated string
        raise _too_deep(filename, max_depth) from None


def load_yaml(text: str, filename: str, max_depth: int = MAX_DEPTH, invalid: str = "is not valid YAML"):
    """YAML text as Python values with the safe loader: no tags beyond the standard ones, no aliases, no
    nesting deeper than max_depth (scanned before parsing, and checked again while loading)."""
    if yaml_depth(text, max_depth) > max_depth:
        raise _too_deep(filename, max_depth)
    loader = _BoundedLoader(text, max_depth)
    try:
        return loader.get_single_data()
    except _TooDeep:
        raise _too_deep(filename, max_depth) from None
    except _Alias:
        raise ParseRefused(f"{filename} uses YAML aliases, which this file does not need; it was not read.") from None
    except yaml.YAMLError as exc:
        tag = re.search(r"tag '([^']*)'", str(exc)) if isinstance(exc, yaml.constructor.ConstructorError) else None
        if tag:  # the safe loader knows only plain data; anything else could build objects or run code
            raise ParseRefused(f"{filename} uses the YAML tag '{tag.group(1)}': only plain data is read, "
                               "so it was not read.") from None
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ParseRefused(f"{filename} {invalid}{where}.") from None
    finally:
        loader.dispose()


def load_structured(data: bytes, filename: str, max_bytes: int = MAX_PIPELINE_BYTES, max_depth: int = MAX_DEPTH,
                    kind: str = "pipeline file"):
    """An uploaded JSON or YAML file as Python values, every cap checked before the parse.

    A .yaml/.yml file is YAML; a .json file is JSON; any other name is read as JSON, else as YAML."""
    text = read_text(data, filename, max_bytes, kind)
    suffix = Path(filename).suffix.lower()
    if suffix not in (".yaml", ".yml"):
        try:
            return load_json(text, filename, max_depth)
        except json.JSONDecodeError as exc:
            if suffix == ".json":
                raise ParseRefused(f"{filename} is not valid JSON (line {exc.lineno}: {exc.msg}).") from None
    return load_yaml(text, filename, max_depth, invalid="is neither valid JSON nor valid YAML")
