"""Search expressions over the index's rows: `lr > 0.05 and best_test_acc > 0.6`,
`status == "completed"`, `"baseline" in tags`, `preset != "fast" or epochs >= 20`.

    query = compile_query(text)          # once; raises QueryError saying what is wrong and where
    rows = query.filter(index.refresh())  # then per row: plain closures, no eval

The text is parsed by Python's `ast` and compiled node by node from a whitelist (comparisons,
`and` / `or` / `not`, `+ - * /`, names, numbers, quoted text, lists, None / True / False or JSON's
null / true / false); user text is never evaluated.
A name is a summary field (`status`, `best_test_acc`, `final_test_loss`, `tags`, `note`, ...) or a
config field (`lr`, `preset`, `epochs`, ...); where both have it (`name`, `dataset`, `device`) the
summary's wins and `config.NAME` reaches the config's. Missing values and mismatched types never
raise: `lr > 0.05` is false for a run without an `lr`, arithmetic on a missing value gives nothing.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.config import TrainConfig
from engine.run_layout import Status
from engine.run_summary import BOOKKEEPING, SUMMARY_KEYS
from engine.safe_io import is_number

SUMMARY_FIELDS = tuple(k for k in SUMMARY_KEYS if k not in BOOKKEEPING and k != "config")
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
ALLOWED = ("comparisons (== != < <= > >= in, not in), and / or / not, + - * /, names, numbers, "
           '"quoted text", [lists]')

Getter = Callable[[dict], Any]
# JSON's spellings, as `list --json` and the run files print values: `sweep != null` as `sweep != None`
JSON_CONSTANTS = {"null": None, "true": True, "false": False}


class QueryError(ValueError):
    """A search expression that cannot be used: `message` says what is wrong, `column` (1-based)
    where, or None when it is the whole expression."""

    def __init__(self, expression: str, message: str, column: int | None = None):
        self.expression, self.message, self.column = expression, message, column
        super().__init__(f"column {column}: {message}" if column else message)

    def pointer(self) -> str:
        """The expression with a caret under the column, for a terminal or a code block."""
        if not self.column:
            return self.expression
        return f"{self.expression}\n{' ' * (self.column - 1)}^"


@dataclasses.dataclass(frozen=True)
class Query:
    """A compiled expression: call it on a row, or `filter` rows; `names` are the fields it reads."""

    text: str
    names: frozenset[str]
    test: Callable[[dict], bool]

    def __call__(self, row: dict) -> bool:
        return self.test(row)

    def filter(self, rows: Iterable[dict]) -> list[dict]:
        test = self.test
        return [row for row in rows if test(row)]


def config_keys(rows: Iterable[dict]) -> set[str]:
    """Every config key the rows hold (configs of other versions may add some)."""
    keys: set[str] = set()
    for row in rows:
        keys.update(row.get("config") or ())
    return keys


def known_names(extra_config_keys: Iterable[str] = ()) -> list[str]:
    """The names an expression may use: summary fields, then config fields."""
    return list(dict.fromkeys((*SUMMARY_FIELDS, *CONFIG_FIELDS, *sorted(extra_config_keys))))


def compile_query(text: str, extra_config_keys: Iterable[str] = ()) -> Query:
    """Parse and compile `text`; raises QueryError (unknown name: the nearest known names;
    syntax: the column). `extra_config_keys` adds config keys beyond TrainConfig's fields (pass
    `config_keys(rows)` for runs of other versions)."""
    config_names = set(CONFIG_FIELDS) | set(extra_config_keys)
    flat = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")  # one line; columns unchanged
    if not flat.strip():
        raise QueryError(text, "the expression is empty")
    try:
        tree = ast.parse(flat, mode="eval")
    except SyntaxError as exc:
        raise QueryError(text, _syntax_message(flat, exc), exc.offset) from None
    compiler = _Compiler(flat, config_names)
    test = compiler.compile(tree.body)
    return Query(text, frozenset(compiler.names), lambda row: bool(test(row)))


def _syntax_message(text: str, exc: SyntaxError) -> str:
    hints = []
    if "=" in text.replace("==", "").replace("!=", "").replace("<=", "").replace(">=", ""):
        hints.append("compare with ==, not =")
    if "&&" in text or "||" in text or " AND " in text or " OR " in text:
        hints.append("join with and / or")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return f"syntax error: {exc.msg}{hint}"


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:  # numbers with numbers, text with text; anything else is false
        return op(a, b) if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)) else False
    return compare


def _contains(a: Any, b: Any) -> bool:
    if isinstance(b, str):
        return isinstance(a, str) and a in b  # "seed" in name: a substring
    return a in b if isinstance(b, (list, tuple)) else False


def _not_contains(a: Any, b: Any) -> bool:
    if isinstance(b, str):
        return isinstance(a, str) and a not in b
    return a not in b if isinstance(b, (list, tuple)) else False


COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: _ordered(operator.lt), ast.LtE: _ordered(operator.le),
    ast.Gt: _ordered(operator.gt), ast.GtE: _ordered(operator.ge), ast.In: _contains, ast.NotIn: _not_contains,
}


def _arithmetic(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (is_number(a) and is_number(b)):
            return None
        try:
            return op(a, b)
        except (ZeroDivisionError, OverflowError):
            return None
    return apply


ARITHMETIC = {ast.Add: _arithmetic(operator.add), ast.Sub: _arithmetic(operator.sub),
              ast.Mult: _arithmetic(operator.mul), ast.Div: _arithmetic(operator.truediv)}
SYMBOLS = {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.RShift: ">>", ast.LShift: "<<", ast.Pow: "**",
           ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.Is: "is", ast.IsNot: "is not", ast.Invert: "~"}


class _Compiler:
    def __init__(self, text: str, config_names: set[str]):
        self.text, self.config_names, self.names = text, config_names, set()

    def column(self, node: ast.AST) -> int:
        """1-based character column of a node (ast counts UTF-8 bytes)."""
        return len(self.text.encode("utf-8")[: node.col_offset].decode("utf-8", errors="ignore")) + 1

    def fail(self, node: ast.AST, message: str) -> QueryError:
        return QueryError(self.text, message, self.column(node))

    def compile(self, node: ast.AST) -> Getter:
        kind = type(node).__name__
        method = getattr(self, f"_{kind}", None)
        if method is None:
            raise self.fail(node, f"{_describe(node)} is not allowed here; use {ALLOWED}")
        return method(node)

    def _Constant(self, node: ast.Constant) -> Getter:
        value = node.value
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise self.fail(node, f"{value!r} is not a number, text, True, False or None")
        return lambda row: value

    def _List(self, node: ast.List | ast.Tuple) -> Getter:
        if not all(isinstance(e, ast.Constant) for e in node.elts):
            bad = next(e for e in node.elts if not isinstance(e, ast.Constant))
            raise self.fail(bad, "a list holds only numbers and quoted text")
        values = tuple(self._Constant(e)(None) for e in node.elts)
        return lambda row: values

    _Tuple = _List

    def _Name(self, node: ast.Name) -> Getter:
        name = node.id
        if name in JSON_CONSTANTS:
            value = JSON_CONSTANTS[name]
            return lambda row: value
        if name in SUMMARY_FIELDS:
            self.names.add(name)
            return lambda row: row.get(name)
        if name in self.config_names:
            self.names.add(name)
            return lambda row: (row.get("config") or {}).get(name)
        raise self.fail(node, _unknown(name, known_names(self.config_names)))

    def _Attribute(self, node: ast.Attribute) -> Getter:
        if not (isinstance(node.value, ast.Name) and node.value.id == "config"):
            raise self.fail(node, "only config.NAME may use a dot (the config's field where the summary has one "
                                  "of that name too)")
        name = node.attr
        if name not in self.config_names:
            raise self.fail(node, _unknown(name, sorted(self.config_names), prefix="config."))
        self.names.add(f"config.{name}")
        return lambda row: (row.get("config") or {}).get(name)

    def _BoolOp(self, node: ast.BoolOp) -> Getter:
        parts = [self.compile(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda row: all(part(row) for part in parts)
        return lambda row: any(part(row) for part in parts)

    def _UnaryOp(self, node: ast.UnaryOp) -> Getter:
        inner = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda row: not inner(row)
        if isinstance(node.op, ast.USub):
            return lambda row: -v if is_number(v := inner(row)) else None
        if isinstance(node.op, ast.UAdd):
            return lambda row: v if is_number(v := inner(row)) else None
        raise self.fail(node, f"{SYMBOLS.get(type(node.op), type(node.op).__name__)} is not allowed; use {ALLOWED}")

    def _BinOp(self, node: ast.BinOp) -> Getter:
        apply = ARITHMETIC.get(type(node.op))
        if apply is None:
            symbol = SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise self.fail(node, f"{symbol!r} is not allowed; use {ALLOWED}")
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda row: apply(left(row), right(row))

    def _Compare(self, node: ast.Compare) -> Getter:
        operands = [node.left, *node.comparators]
        tests = []
        for op in node.ops:
            test = COMPARE.get(type(op))
            if test is None:
                raise self.fail(node, f"{SYMBOLS.get(type(op), type(op).__name__)!r} is not allowed; use {ALLOWED}")
            tests.append(test)
        self._check_status_values(operands)
        getters = [self.compile(o) for o in operands]
        if len(tests) == 1:
            test, left, right = tests[0], getters[0], getters[1]
            return lambda row: test(left(row), right(row))

        def chained(row: dict) -> bool:  # 0.01 < lr <= 0.1
            values = [g(row) for g in getters]
            return all(t(values[i], values[i + 1]) for i, t in enumerate(tests))
        return chained

    def _check_status_values(self, operands: Sequence[ast.AST]) -> None:
        """`status == "complete"` would match nothing, silently: name the statuses instead."""
        if not any(isinstance(o, ast.Name) and o.id == "status" for o in operands):
            return
        for o in operands:
            values = o.elts if isinstance(o, (ast.List, ast.Tuple)) else [o]
            for v in values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value not in set(Status):
                    raise self.fail(v, f"no run has status {v.value!r}; a status is one of "
                                       f"{', '.join(s.value for s in Status)}")


def _describe(node: ast.AST) -> str:
    kinds = {"Call": "a function call", "Subscript": "indexing ([...])", "Lambda": "lambda", "IfExp": "if/else",
             "Dict": "a dict", "Set": "a set", "ListComp": "a comprehension", "GeneratorExp": "a comprehension",
             "SetComp": "a comprehension", "DictComp": "a comprehension", "JoinedStr": "an f-string",
             "Starred": "*", "NamedExpr": ":=", "Await": "await", "Slice": "a slice"}
    return kinds.get(type(node).__name__, type(node).__name__)


def _unknown(name: str, known: Sequence[str], prefix: str = "") -> str:
    """The message for an unknown name: the nearest known names, else what names there are."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    quote = f'text is quoted: "{name}"'
    if close:
        return f"unknown name {prefix + name!r}; did you mean {', '.join(prefix + c for c in close)}? ({quote})"
    return (f"unknown name {prefix + name!r}; names are summary fields ({', '.join(SUMMARY_FIELDS[:6])}, ...) and "
            f"config fields (lr, preset, epochs, ...); {quote}")
