"""Static import closure of ``rho`` code (``ast`` only, nothing is imported).

:class:`Closure` follows a code path: importing a module runs its module-level statements (its
imports, decorators, default values, class bodies), calling a function runs its body (its
function-level imports and the functions and classes it names).  A name is followed through the
imports that bind it (``from rho.x import f``, ``import rho.x as m`` then ``m.f``) and through
package re-exports; a name a package serves lazily (a module ``__getattr__``) is looked up in the
package's modules.  A class that is named is followed whole (all its methods).  Method calls on
values (``obj.method()``) are not typed: their classes count only where the code names them.
Annotations are not followed (they do not run).  Only modules of the package (``rho``) are
followed; anything else is ignored.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

#: A resolved name: ("module", "rho.x") or ("symbol", "rho.x", "name").
Target = tuple[str, ...]


@dataclass
class ModuleInfo:
    """A parsed module: its top-level definitions and the names its top-level imports bind."""

    name: str
    path: Path | None
    tree: ast.Module
    defs: dict[str, ast.AST] = field(default_factory=dict)
    bindings: dict[str, Target] = field(default_factory=dict)


class Closure:
    """The ``rho`` modules (and so files) a code path imports; add entry points with the ``add_*`` methods."""

    def __init__(self, root: Path, package: str = "rho") -> None:
        self.root = Path(root)
        self.package = package
        self._infos: dict[str, ModuleInfo] = {}
        self.modules: set[str] = set()
        self._reached: set[tuple[str, str]] = set()
        self._symbols: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ modules and files
    def path_of(self, module: str) -> Path | None:
        """``rho/x/y.py`` or ``rho/x/y/__init__.py`` of ``rho.x.y`` (None: not a module of the package)."""
        if module != self.package and not module.startswith(self.package + "."):
            return None
        base = self.root.joinpath(*module.split("."))
        for p in (base.with_suffix(".py"), base / "__init__.py"):
            if p.is_file():
                return p
        return None

    def files(self) -> set[str]:
        """The files of the imported modules, relative to the root (posix)."""
        return {self.path_of(m).relative_to(self.root).as_posix() for m in self.modules}  # type: ignore[union-attr]

    def info(self, module: str) -> ModuleInfo:
        """The parsed module (cached)."""
        if module not in self._infos:
            path = self.path_of(module)
            assert path is not None, module
            self._infos[module] = _parse(
                module, path, path.read_text(encoding="utf-8"), self.path_of, self.package
            )
        return self._infos[module]

    # ------------------------------------------------------------------ entry points
    def add_module(self, module: str) -> None:
        """``import module``: its parents' and its own module-level code."""
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in self.modules or self.path_of(name) is None:
                continue
            self.modules.add(name)
            self._run_module_body(self.info(name))

    def add_symbol(self, module: str, name: str) -> None:
        """Use ``module.name``: import the module, run the function (or class) it names."""
        if (module, name) in self._symbols:
            return
        self._symbols.add((module, name))
        self.add_module(module)
        info = self.info(module)
        if name in info.defs:
            self._reach_def(info, name)
        elif name in info.bindings:
            self._follow(info.bindings[name])
        elif self.path_of(f"{module}.{name}") is not None:
            self.add_module(f"{module}.{name}")
        elif "__getattr__" in info.defs and (info.path is not None and info.path.name == "__init__.py"):
            for sub in self._package_modules(module):
                if name in self.info(sub).defs:
                    self.add_symbol(sub, name)

    def add_code(self, module: str, stmts: list[ast.stmt]) -> None:
        """Run ``stmts`` as the body of a function of ``module`` (e.g. one branch of a dispatcher)."""
        self.add_module(module)
        self._run_function_body(self.info(module), stmts)

    def add_source(self, name: str, source: str) -> None:
        """Run ``source`` (e.g. a notebook's code) as a script outside the package."""
        info = _parse(name, None, source, self.path_of, self.package)
        self._run_module_body(info)
        for stmt in info.tree.body:  # a script's functions are called by the script
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self._reach_def(info, stmt.name)

    # ------------------------------------------------------------------ walking code
    def _package_modules(self, package: str) -> list[str]:
        pkg_dir = self.path_of(package).parent  # type: ignore[union-attr]
        out = []
        for p in sorted(pkg_dir.rglob("*.py")):
            rel = p.relative_to(self.root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            if name != package and self.path_of(name) is not None:
                out.append(name)
        return out

    def _follow(self, target: Target) -> None:
        if target[0] == "module":
            self.add_module(target[1])
        else:
            self.add_symbol(target[1], target[2])

    def _reach_def(self, info: ModuleInfo, name: str) -> None:
        key = (info.name, name)
        if key in self._reached:
            return
        self._reached.add(key)
        node = info.defs[name]
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                    self._run_function_body(info, stmt.body)
        else:
            self._run_function_body(info, node.body)  # type: ignore[attr-defined]

    def _run_module_body(self, info: ModuleInfo) -> None:
        for stmt in info.tree.body:
            if _is_main_guard(stmt):
                continue  # runs only as a script, not on import
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self._refs(info, {}, [*stmt.decorator_list, *_defaults(stmt.args)])
            elif isinstance(stmt, ast.ClassDef):
                self._refs(info, {}, [*stmt.decorator_list, *stmt.bases, *(k.value for k in stmt.keywords)])
                for sub in stmt.body:
                    if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                        self._refs(info, {}, [*sub.decorator_list, *_defaults(sub.args)])
                    else:
                        self._imports(info, None, sub)
                        self._refs(info, {}, [sub])
            else:
                self._imports(info, None, stmt)
                self._refs(info, {}, [stmt])

    def _run_function_body(self, info: ModuleInfo, stmts: list[ast.stmt]) -> None:
        local: dict[str, Target] = {}
        for stmt in stmts:
            self._imports(info, local, stmt)
        self._refs(info, local, stmts)

    def _imports(self, info: ModuleInfo, local: dict[str, Target] | None, node: ast.AST) -> None:
        """Run every import statement in ``node``; bind the names into ``local`` (a function's scope)."""
        for sub in ast.walk(node):
            for name, target, loaded in _import_bindings(sub, self.path_of, self.package):
                for module in loaded:
                    self.add_module(module)
                if local is not None:
                    local.setdefault(name, target)

    def _refs(self, info: ModuleInfo, local: dict[str, Target], nodes: list[ast.AST]) -> None:
        """Follow every name and dotted name that ``nodes`` use (annotations excluded)."""
        for node in nodes:
            for sub in _walk_no_annotations(node):
                if isinstance(sub, ast.Attribute):
                    chain = _dotted(sub)
                    if chain:
                        self._resolve_chain(info, local, chain)
                elif isinstance(sub, ast.Name):
                    self._resolve_chain(info, local, [sub.id])

    def _resolve_chain(self, info: ModuleInfo, local: dict[str, Target], chain: list[str]) -> None:
        head = chain[0]
        if head in local:
            target = local[head]
        elif head in info.defs:
            self._reach_def(info, head)
            return
        elif head in info.bindings:
            target = info.bindings[head]
        else:
            return
        for attr in chain[1:]:
            if target[0] != "module":
                break
            sub = f"{target[1]}.{attr}"
            target = ("module", sub) if self.path_of(sub) is not None else ("symbol", target[1], attr)
        self._follow(target)


def _parse(name: str, path: Path | None, source: str, path_of=None, package: str = "rho") -> ModuleInfo:
    tree = ast.parse(source, filename=str(path or name))
    info = ModuleInfo(name, path, tree)
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            info.defs[stmt.name] = stmt
        else:  # module-level imports, also inside top-level if/try blocks
            for sub in ast.walk(stmt):
                for bound, target, _loaded in _import_bindings(sub, path_of, package):
                    info.bindings[bound] = target
    return info


def _import_bindings(node: ast.AST, path_of, package: str) -> list[tuple[str, Target, list[str]]]:
    """``(name bound, target, modules loaded)`` of an import statement, for modules of ``package``."""
    out: list[tuple[str, Target, list[str]]] = []
    ours = lambda m: m == package or m.startswith(package + ".")  # noqa: E731
    if isinstance(node, ast.Import):
        for alias in node.names:
            if ours(alias.name):
                if alias.asname:
                    out.append((alias.asname, ("module", alias.name), [alias.name]))
                else:
                    out.append((alias.name.split(".")[0], ("module", package), [alias.name]))
    elif isinstance(node, ast.ImportFrom) and node.level:
        raise AssertionError("relative imports are not followed; write `from rho.x import y`")
    elif isinstance(node, ast.ImportFrom) and node.module and ours(node.module):
        for alias in node.names:
            if alias.name == "*":
                raise AssertionError(f"`from {node.module} import *` cannot be followed; name the imports")
            sub = f"{node.module}.{alias.name}"
            if path_of is not None and path_of(sub) is not None:
                out.append((alias.asname or alias.name, ("module", sub), [sub]))
            else:
                out.append((alias.asname or alias.name, ("symbol", node.module, alias.name), [node.module]))
    return out


def _is_main_guard(stmt: ast.stmt) -> bool:
    """``if __name__ == "__main__":``"""
    t = stmt.test if isinstance(stmt, ast.If) else None
    return (
        isinstance(t, ast.Compare)
        and isinstance(t.left, ast.Name)
        and t.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators)
    )


def _defaults(args: ast.arguments) -> list[ast.AST]:
    return [*args.defaults, *(d for d in args.kw_defaults if d is not None)]


def _dotted(node: ast.Attribute) -> list[str] | None:
    parts: list[str] = []
    cur: ast.AST = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if not isinstance(cur, ast.Name):
        return None
    parts.append(cur.id)
    return parts[::-1]


def _walk_no_annotations(node: ast.AST):  # noqa: ANN202 - a generator of nodes
    """``ast.walk`` without annotations (they are not evaluated at run time here)."""
    todo = [node]
    while todo:
        cur = todo.pop()
        yield cur
        for name, value in ast.iter_fields(cur):
            if name in ("annotation", "returns"):
                continue
            if isinstance(value, ast.AST):
                todo.append(value)
            elif isinstance(value, list):
                todo.extend(v for v in value if isinstance(v, ast.AST))


_MAGIC = re.compile(r"^\s*[%!]")


def notebook_code(path: Path) -> str:
    """The code cells of a notebook as one script (IPython magics and shell lines dropped)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            cells.append("\n".join(line for line in src.splitlines() if not _MAGIC.match(line)))
    return "\n\n".join(cells) + "\n"


def module_imports(root: Path, module: str, package: str = "rho") -> set[str]:
    """The package modules that ``module``'s import statements load (module- and function-level)."""
    c = Closure(root, package)
    out: set[str] = set()
    for node in ast.walk(c.info(module).tree):
        for _name, _target, loaded in _import_bindings(node, c.path_of, package):
            out.update(loaded)
    return out
