"""DESIGN.md's import rules as a checker over a source tree, so the same function judges the
real tree and the small violating trees the tests plant.

Every form of import is resolved to the module it names:

- `import a.b` names a.b; `from a import b` names a.b when a/b is a module of the tree (so
  `from bot import neon` is bot.neon), and a otherwise (b is then an attribute of a);
- relative imports are resolved against the importing file's package;
- `importlib.import_module("...")` (relative with a literal or `__package__` anchor) and
  `__import__("...")` (with its fromlist and level) with literal strings;
- imports inside functions, try blocks and `if TYPE_CHECKING:` blocks count like any other.
  The rules are about dependencies, and an annotation naming storage depends on storage
  whether or not it runs, so counting them is the strict choice.

An import the checker cannot resolve (a non-literal name, a relative import beyond the
top-level package) is itself reported: a rule that an import can dodge keeps nothing.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("bot", "handlers", "storage")
STANDARD_LIBRARY = frozenset(sys.stdlib_module_names)
NEON_LIBRARIES = frozenset({"httpx", "tenacity", "pydantic", "pydantic_core"})
DATABASE_LIBRARIES = frozenset({"sqlalchemy", "sqlmodel", "alembic", "psycopg"})
BRANCH_READERS = ("bot.services.verification", "bot.services.table_source",
                  "bot.services.table_copy")
EXPORT_LIBRARIES = frozenset({"boto3", "botocore", "pyrage", "zstandard", "psycopg"})


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package relative imports start from: itself for an __init__.py."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Import:
    importer: Module
    line: int
    target: str | None  # None when the checker cannot tell which module is meant
    statement: str


@dataclass(frozen=True)
class Violation:
    rule: str  # a Rule's key
    reason: str
    path: str
    line: int
    target: str
    statement: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: `{self.statement}` imports {self.target}: {self.reason}"


def within(name: str, *packages: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def top_level(name: str) -> str:
    return name.partition(".")[0]


def is_standard(name: str) -> bool:
    return top_level(name) in STANDARD_LIBRARY


@dataclass(frozen=True)
class Rule:
    key: str
    description: str
    governs: Callable[[str], bool]  # importing module -> is it under this rule
    allows: Callable[[str, str], bool]  # (importing module, imported module) -> allowed


RULES = (
    Rule("domain", "bot/domain imports the standard library and itself only",
         governs=lambda importer: within(importer, "bot.domain"),
         allows=lambda _, target: is_standard(target) or within(target, "bot.domain")),
    Rule("neon", "bot/neon imports httpx, tenacity, pydantic, the standard library and itself",
         governs=lambda importer: within(importer, "bot.neon"),
         allows=lambda _, target: is_standard(target) or top_level(target) in NEON_LIBRARIES
         or within(target, "bot.neon")),
    # The protocols' vocabulary is bot/domain plus the Neon client's types and errors; the
    # client itself is handed in by bot/app.py. Verifying a restored branch means querying
    # it, so psycopg is allowed to the verification module and to no other service; a table
    # restore reads and copies a table between branches, so its two modules that query them
    # may use psycopg, and pglast (PostgreSQL's parser) to check a row condition.
    Rule("services", "bot/services use bot/domain and reach the outside through protocols",
         governs=lambda importer: within(importer, "bot.services"),
         allows=lambda importer, target: is_standard(target)
         or within(target, "bot.domain", "bot.services", "bot.neon.models", "bot.neon.errors")
         or (top_level(target) == "psycopg" and within(importer, *BRANCH_READERS))
         or (top_level(target) == "pglast" and within(importer, "bot.services.table_source"))),
    # Reaching the database or Neon through their libraries is touching them directly too.
    Rule("handlers", "handlers never touch storage, bot/neon or the composition root",
         governs=lambda importer: within(importer, "handlers"),
         allows=lambda _, target: not within(target, "storage", "bot.neon", "bot.app")
         and top_level(target) not in DATABASE_LIBRARIES | {"httpx"}),
    Rule("storage", "storage imports bot/domain, its database libraries and the standard "
         "library only",
         governs=lambda importer: within(importer, "storage"),
         allows=lambda _, target: is_standard(target) or within(target, "bot.domain", "storage")
         or top_level(target) in DATABASE_LIBRARIES),
    Rule("composition root", "only bot/app.py, and bot/__main__.py that calls it, import bot.app",
         governs=lambda importer: importer != "bot.app",
         allows=lambda importer, target: not within(target, "bot.app")
         or importer == "bot.__main__"),
    # bot.neon (the package) re-exports the client; its models and errors are shared vocabulary.
    Rule("wiring", "no module of bot but bot/app.py imports storage, handlers or the Neon client",
         governs=lambda importer: within(importer, "bot")
         and not within(importer, "bot.app", "bot.neon"),
         allows=lambda _, target: not within(target, "storage", "handlers", "bot.neon.client")
         and target != "bot.neon"),
)
# bot/exports is an adapter like bot/neon: the object store, pg_dump and age. Its vocabulary
# (the manifest, its errors) is bot/domain's, so services name no adapter type; like the
# Neon client, only the composition root hands it to them.
RULES += (
    Rule("exports", "bot/exports imports boto3, botocore, pyrage, zstandard, psycopg, "
         "bot/domain, the standard library and itself",
         governs=lambda importer: within(importer, "bot.exports"),
         allows=lambda _, target: is_standard(target) or top_level(target) in EXPORT_LIBRARIES
         or within(target, "bot.exports", "bot.domain")),
    Rule("export wiring", "only bot/app.py and bot/__main__.py import bot/exports",
         governs=lambda importer: not within(importer, "bot.app", "bot.__main__",
                                             "bot.exports"),
         allows=lambda _, target: not within(target, "bot.exports")),
)
UNRESOLVED = Rule("unresolved", "every import names its module literally, inside its "
                  "top-level package", governs=lambda _: True, allows=lambda _, __: False)


def modules_under(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            modules[name] = Module(name, path, is_package)
    return modules


def _anchored(package: str, level: int, name: str | None) -> str | None:
    """`name` imported with `level` leading dots from `package`; None beyond the top level."""
    if level == 0:
        return name
    parts = package.split(".") if package else []
    if level - 1 >= len(parts):
        return None
    return ".".join(parts[: len(parts) - (level - 1)] + ([name] if name else []))


def _from(base: str, names: list[str], known: dict[str, Module]) -> list[str]:
    """What `from base import names` depends on: the submodules it names, else base itself."""
    return [f"{base}.{name}" if f"{base}.{name}" in known else base for name in names]


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((kw.value for kw in call.keywords if kw.arg == keyword), None)


def _import_functions(tree: ast.Module) -> tuple[set[str], set[str], set[str]]:
    """Names this file binds to importlib, to importlib.import_module and to builtins."""
    importlib_names, import_module_names, builtins_names = set(), {"__import__"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "importlib" or (alias.asname is None
                                                 and alias.name.startswith("importlib.")):
                    importlib_names.add(alias.asname or "importlib")
                elif alias.name == "builtins":
                    builtins_names.add(alias.asname or "builtins")
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                if (node.module, alias.name) in {("importlib", "import_module"),
                                                 ("importlib", "__import__"),
                                                 ("builtins", "__import__")}:
                    import_module_names.add(alias.asname or alias.name)
    return importlib_names, import_module_names, builtins_names


def _dynamic_import(call: ast.Call, functions: tuple[set[str], set[str], set[str]]) -> str | None:
    """"import_module" or "__import__" when `call` calls one of them, else None."""
    importlib_names, import_module_names, builtins_names = functions
    func = call.func
    if isinstance(func, ast.Name) and func.id in import_module_names:
        return "__import__" if func.id == "__import__" else "import_module"
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        if func.value.id in importlib_names and func.attr in ("import_module", "__import__"):
            return func.attr
        if func.value.id in builtins_names and func.attr == "__import__":
            return "__import__"
    return None


def _targets_of_call(call: ast.Call, kind: str, importer: Module,
                     known: dict[str, Module]) -> list[str | None]:
    name = _literal(_argument(call, 0, "name"))
    if name is None:
        return [None]
    if kind == "import_module":
        level = len(name) - len(name.lstrip("."))
        anchor = _argument(call, 1, "package")
        package = (importer.package if isinstance(anchor, ast.Name) and anchor.id == "__package__"
                   else _literal(anchor))
        if level and package is None:
            return [None]
        return [_anchored(package or "", level, name[level:] or None)]
    level_node = _argument(call, 4, "level")
    level = 0 if level_node is None else getattr(level_node, "value", None)
    fromlist = _argument(call, 3, "fromlist")
    if not isinstance(level, int) or not isinstance(fromlist, ast.List | ast.Tuple | None):
        return [None]
    names = [_literal(element) for element in fromlist.elts] if fromlist else []
    base = _anchored(importer.package, level, name or None)
    if base is None or None in names:
        return [None]
    return _from(base, [n for n in names if n is not None], known) if names else [base]


def imports_of(module: Module, known: dict[str, Module]) -> Iterator[Import]:
    source = module.path.read_text()
    tree = ast.parse(source, filename=str(module.path))
    functions = _import_functions(tree)
    for node in ast.walk(tree):
        targets: list[str | None]
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _anchored(module.package, node.level, node.module)
            targets = [None] if base is None else _from(
                base, [alias.name for alias in node.names], known)
        elif isinstance(node, ast.Call) and (kind := _dynamic_import(node, functions)):
            targets = _targets_of_call(node, kind, module, known)
        else:
            continue
        for target in dict.fromkeys(targets):
            yield Import(module, node.lineno, target, ast.unparse(node))


def imports_under(root: Path) -> list[Import]:
    known = modules_under(root)
    return [found for module in known.values() for found in imports_of(module, known)]


def layering_violations(root: Path) -> list[Violation]:
    """Every import under `root`'s bot, handlers and storage that breaks DESIGN.md's rules."""
    violations = []
    for found in imports_under(root):
        path = str(found.importer.path.relative_to(root))
        if found.target is None:
            violations.append(Violation(UNRESOLVED.key, UNRESOLVED.description, path,
                                        found.line, "an unknown module", found.statement))
            continue
        for rule in RULES:
            if rule.governs(found.importer.name) and not rule.allows(found.importer.name,
                                                                     found.target):
                violations.append(Violation(rule.key, rule.description, path, found.line,
                                            found.target, found.statement))
    return sorted(violations, key=lambda v: (v.path, v.line, v.rule))
