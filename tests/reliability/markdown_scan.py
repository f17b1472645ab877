"""An `ast` scan for user text that reaches Streamlit's Markdown unescaped.

Streamlit renders Markdown (images, links, colours, math) in st.markdown and in nearly every label, caption,
tooltip and toast. A value built into such a text must pass `plain(...)` unless it is known to be harmless:
a string literal, a number with a format spec (`{n:,}`), a module constant (UPPER_CASE, or a lookup in one),
a call of a formatter in SAFE_CALLS, a local variable only ever assigned harmless values, or a call of a
project function whose every `return` is harmless. A function that shows one of its parameters as it is
becomes a sink itself, so its callers are checked instead. Where the scan cannot follow a value (a caption
taken out of a list of image/caption pairs), the call's line, or a comment line just above it, may say why
it is safe: `# markdown-safe: <why>`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Streamlit calls whose text is Markdown: the argument positions and keywords that carry it.
_LABEL = ((0,), ("label", "help"))
SINKS: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    **{name: ((0,), ("body", "help")) for name in (
        "markdown", "caption", "info", "success", "warning", "error", "subheader", "header", "title",
        "toast")},
    **{name: _LABEL for name in (
        "button", "download_button", "link_button", "form_submit_button", "checkbox", "toggle", "selectbox",
        "multiselect", "slider", "text_input", "text_area", "number_input", "date_input", "time_input",
        "file_uploader", "camera_input", "color_picker", "expander", "popover", "status", "chat_input")},
    # options (and format_func's output) are Markdown here, unlike selectbox and multiselect options
    **{name: ((0, 1), ("label", "options", "captions", "help")) for name in (
        "radio", "pills", "segmented_control", "select_slider")},
    "page_link": ((), ("label", "help")),
    "metric": ((0, 1, 2), ("label", "value", "delta", "help")),
    "progress": ((1,), ("text",)),
    "spinner": ((0,), ("text",)),
    "dialog": ((0,), ("title",)),
    "tabs": ((0,), ()),
    "image": ((), ("caption",)),
    "write": ((), ()),  # every positional argument: see _texts
}
# the project's own: imgcls.ui.common.state.flash keeps a message that show_flash gives to st.success
# and eval_gallery.show_gallery, whose captions go to st.image one by one
PROJECT_SINKS = {"flash": ((0,), ()), "show_gallery": ((3,), ("captions",))}
FORMAT_FUNC_SINKS = {"radio", "pills", "segmented_control", "select_slider"}
# calls whose result is safe in Markdown: the escapes themselves (imgcls.store.markdown), builtins that give numbers
SAFE_CALLS = {"plain", "code", "len", "int", "float", "round", "abs", "sum", "min", "max", "bool", "percent",
              "token_hex",  # secrets.token_hex: digits and a-f only
              "pop_flash",  # what flash kept: flash is a sink, so its callers escaped it
              # imgcls.augment.labelsafety's warnings: Markdown naming the classes as the caller gives them (escaped)
              "rule_warnings", "worst",
              "card"}  # imgcls.teach.concepts.card: the app's own teaching texts, Markdown by design
STR_METHODS = {"strip", "lstrip", "rstrip", "upper", "lower", "capitalize", "title", "replace", "split"}
NUMERIC_SPEC = set("dfFeEgGn%xXob")
PRAGMA = "# markdown-safe:"
GROWERS = {"append", "extend", "insert", "add", "update", "setdefault"}


@dataclass(frozen=True)
class Finding:
    """One Markdown text that interpolates a value not made safe."""

    file: str
    line: int
    call: str
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.call}(…) shows {self.text} unescaped: wrap it in plain(…)"


def _name_of(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _numeric_spec(spec: ast.expr | None) -> bool:
    """A format spec that only a number takes (`:,`, `:.1%`, `:d`)."""
    if not isinstance(spec, ast.JoinedStr):
        return False
    text = "".join(v.value for v in spec.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return bool(text) and (text[-1] in NUMERIC_SPEC or text.endswith(","))


def _constant_root(node: ast.expr) -> bool:
    """Whether an attribute or item lookup starts from a module constant (UPPER_CASE, maybe in a module)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute) and node.attr.isupper():
            return True
        node = node.value
    return isinstance(node, ast.Name) and node.id.isupper()


class _Checker:
    """Which parts of an expression may carry user text into Markdown unescaped."""

    def __init__(self, safe_names: set[str], safe_calls: set[str], params: set[str] = frozenset()):
        self.safe_names, self.safe_calls, self.params = safe_names, safe_calls, params

    def unsafe(self, node: ast.expr, top: bool = False) -> list[ast.expr]:
        """The unsafe parts; with top, a bare parameter is allowed (the function is then a sink itself)."""
        method = getattr(self, f"_{type(node).__name__}", None)
        return method(node, top) if method else [node]  # lambdas, awaits …: not text we can vouch for

    def _all(self, nodes, top=False) -> list[ast.expr]:
        return [part for n in nodes if n is not None for part in self.unsafe(n, top)]

    def _Constant(self, node, top):
        return []

    def _JoinedStr(self, node, top):
        return self._all(v.value for v in node.values
                         if isinstance(v, ast.FormattedValue) and not _numeric_spec(v.format_spec))

    def _BinOp(self, node, top):
        if isinstance(node.op, ast.Mod) and isinstance(node.right, ast.Tuple):  # "…%s…" % (a, b)
            return self.unsafe(node.left, top) + self._all(node.right.elts)
        keep = top and isinstance(node.op, ast.Add)
        return self.unsafe(node.left, keep) + self.unsafe(node.right, keep)

    def _IfExp(self, node, top):
        return self.unsafe(node.body, top) + self.unsafe(node.orelse, top)

    def _BoolOp(self, node, top):
        return self._all(node.values, top)

    def _Compare(self, node, top):
        return []  # True or False

    def _UnaryOp(self, node, top):
        return [] if isinstance(node.op, ast.Not) else self.unsafe(node.operand)

    def _List(self, node, top):
        return self._all(node.elts, top)

    _Tuple = _Set = _List

    def _ListComp(self, node, top):
        return self.unsafe(node.elt)

    _GeneratorExp = _SetComp = _ListComp

    def _Dict(self, node, top):
        return self._all(node.values)

    def _Starred(self, node, top):
        return self.unsafe(node.value, top)

    def _Name(self, node, top):
        if node.id.isupper() or node.id in self.safe_names or (top and node.id in self.params):
            return []
        return [node]

    def _Attribute(self, node, top):  # a field of something harmless (a row of a fixed table) is harmless
        return [] if _constant_root(node) or not self.unsafe(node.value) else [node]

    _Subscript = _Attribute

    def _Call(self, node, top):
        name, func = _name_of(node.func), node.func
        if name in self.safe_calls:
            return []
        if isinstance(func, ast.Attribute):
            if name == "join":  # ", ".join(parts)
                return self.unsafe(func.value) + self._all(node.args)
            if name == "format":  # "…{}…".format(a, b=c)
                return self.unsafe(func.value) + self._all(node.args) + self._all(k.value for k in node.keywords)
            if name == "get":  # TITLES.get(kind, default): the table's value, or the default
                return self.unsafe(func.value) + self._all(node.args[1:])
            if name in ("values", "keys", "items") or name in STR_METHODS:
                return self.unsafe(func.value, top)
        if name in ("list", "tuple", "sorted", "reversed", "enumerate", "zip", "range") and isinstance(func, ast.Name):
            return self._all(node.args, top)
        if name == "map" and node.args and _name_of(node.args[0]) in self.safe_calls:
            return []
        return [node]


def _scopes(tree: ast.Module):
    """The module and each function, with the statements that belong to it (not to functions inside it)."""
    def own(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            yield child
            yield from own(child)

    yield tree, list(own(tree))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, list(own(node))


def _params(fn) -> tuple[list[str], set[str]]:
    if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [], set()
    positional = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if positional and positional[0] in ("self", "cls"):
        positional = positional[1:]
    return positional, set(positional) | {a.arg for a in fn.args.kwonlyargs}


def _safe_locals(body: list[ast.AST], safe_calls: set[str]) -> set[str]:
    """Local names whose every assignment is harmless text (loop and `with` targets never are)."""
    values: dict[str, list[ast.expr]] = {}
    tainted = set()
    for node in body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                # a, b = (plain(x) for x in …): each name is as safe as the whole
                names = [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
                if isinstance(target, (ast.Name, ast.Tuple, ast.List)):
                    for name in names:
                        values.setdefault(name, []).append(node.value)
                else:  # row["x"] = …, obj.attr = …
                    tainted |= set(names)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            values.setdefault(node.target.id, []).append(node.value or ast.Constant(None))
        elif isinstance(node, (ast.For, ast.comprehension)):  # items of a harmless sequence are harmless
            for name in (n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)):
                values.setdefault(name, []).append(node.iter)
        elif isinstance(node, (ast.withitem, ast.NamedExpr)):
            target = getattr(node, "target", None) or getattr(node, "optional_vars", None)
            tainted |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)} if target else set()
        elif isinstance(node, ast.ExceptHandler) and node.name:
            tainted.add(node.name)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)  # out.append(x): out holds x
              and isinstance(node.func.value, ast.Name) and node.func.attr in GROWERS):
            values.setdefault(node.func.value.id, []).extend(node.args or [ast.Constant(None)])
    safe = {n for n in values if n not in tainted}
    changed = True
    while changed:  # a name is safe when what it is assigned is safe, given the other safe names
        checker = _Checker(safe, safe_calls)
        keep = {n for n in safe if not checker._all(values[n])}
        changed, safe = keep != safe, keep
    return safe


def _texts(call: ast.Call, sinks: dict) -> list[ast.expr]:
    """The arguments of a sink call that are rendered as Markdown."""
    name = _name_of(call.func)
    positions, keywords = sinks[name]
    args = list(call.args) if name == "write" else [call.args[i] for i in positions if i < len(call.args)]
    texts = args + [k.value for k in call.keywords if k.arg in keywords]
    if name in FORMAT_FUNC_SINKS:
        texts += [k.value.body if isinstance(k.value, ast.Lambda) else k.value
                  for k in call.keywords if k.arg == "format_func"]
    return texts


class Scan:
    """The project's own sinks and safe formatters, found across all scanned files, then the findings."""

    def __init__(self, sources: dict[str, str]):
        trees = {file: ast.parse(text) for file, text in sources.items()}
        self.lines = {file: text.splitlines() for file, text in sources.items()}
        self.sinks = {**SINKS, **PROJECT_SINKS}
        self.project = set(PROJECT_SINKS)  # sinks whatever they are called on (not only on st or a column)
        self.safe_calls = set(SAFE_CALLS)
        self.scopes = {file: list(_scopes(tree)) for file, tree in trees.items()}
        self.modules = {file: _modules(tree) for file, tree in trees.items()}
        changed = True
        while changed:  # functions that forward to sinks, and formatters built of safe parts, build on each other
            changed = self._learn()

    def _learn(self) -> bool:
        builders: dict[str, bool] = {}
        changed = False
        for file, scopes in self.scopes.items():
            for fn, body in scopes:
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.name in SINKS:
                    continue
                positional, params = _params(fn)
                safe = _safe_locals(body, self.safe_calls)
                checker = _Checker(safe, self.safe_calls)
                returns = [n.value for n in body if isinstance(n, ast.Return) and n.value is not None]
                builders[fn.name] = builders.get(fn.name, True) and bool(returns) and not checker._all(returns)
                passed = set()
                for node in body:
                    if self._is_sink(node, self.modules[file]):
                        for text in _texts(node, self.sinks):
                            passed |= {p for p in params if _bare(text, p)}
                if passed:
                    spec = (tuple(i for i, p in enumerate(positional) if p in passed), tuple(sorted(passed)))
                    if self.sinks.get(fn.name) != spec:
                        self.sinks[fn.name] = spec
                        self.project.add(fn.name)
                        changed = True
        new = {n for n, ok in builders.items() if ok and n not in self.sinks} - self.safe_calls
        if new:
            self.safe_calls |= new
            changed = True
        return changed

    def _is_sink(self, node: ast.AST, modules: set[str]) -> bool:
        """A call that renders Markdown: a Streamlit one (on st, a column, a container …), or the project's."""
        if not isinstance(node, ast.Call) or _name_of(node.func) not in self.sinks:
            return False
        name = _name_of(node.func)
        if name in self.project:
            return True
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        # runs.status(run_id), Image.open(…): a module other than streamlit is not an element
        return receiver is not None and not (isinstance(receiver, ast.Name) and receiver.id in modules)

    def _vouched(self, file: str, node: ast.Call) -> bool:
        """Whether the call's lines (or a comment line just above) carry `# markdown-safe: <why>` with a reason."""
        lines = self.lines[file][node.lineno - 1:(node.end_lineno or node.lineno)]
        above = self.lines[file][node.lineno - 2] if node.lineno > 1 else ""
        lines += [above] if above.strip().startswith("#") else []
        return any(PRAGMA in line and line.split(PRAGMA, 1)[1].strip() for line in lines)

    def findings(self) -> list[Finding]:
        """Every Markdown text in the scanned files that interpolates a value not made safe."""
        out = []
        for file, scopes in self.scopes.items():
            for fn, body in scopes:
                _, params = _params(fn)
                checker = _Checker(_safe_locals(body, self.safe_calls), self.safe_calls, params)
                for node in body:
                    if self._is_sink(node, self.modules[file]) and not self._vouched(file, node):
                        for text in _texts(node, self.sinks):
                            out += [Finding(file, node.lineno, _name_of(node.func), ast.unparse(part))
                                    for part in checker.unsafe(text, top=True)]
        return sorted(set(out), key=lambda f: (f.file, f.line, f.text))


def _modules(tree: ast.Module) -> set[str]:
    """Names the file binds by import, except streamlit itself (st)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                full = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                if full.split(".")[0] != "streamlit":
                    out.add((alias.asname or alias.name).split(".")[0])
    return out


def _bare(text: ast.expr, name: str) -> bool:
    """Whether `text` is the variable `name` as it is (or one branch of a choice is)."""
    if isinstance(text, ast.Name):
        return text.id == name
    if isinstance(text, ast.IfExp):
        return _bare(text.body, name) or _bare(text.orelse, name)
    if isinstance(text, ast.BoolOp):
        return any(_bare(v, name) for v in text.values)
    if isinstance(text, (ast.List, ast.Tuple)):
        return any(_bare(e, name) for e in text.elts)
    if isinstance(text, ast.BinOp) and isinstance(text.op, ast.Add):
        return _bare(text.left, name) or _bare(text.right, name)
    return isinstance(text, ast.Starred) and _bare(text.value, name)


def scan_source(source: str, file: str = "<snippet>") -> list[Finding]:
    """The findings in one piece of source."""
    return Scan({file: source}).findings()


def scan_files(paths: list[Path], root: Path) -> list[Finding]:
    """The findings in these files, scanned together (a sink or formatter defined in one counts in all)."""
    return Scan({str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in paths}).findings()
