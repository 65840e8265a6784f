"""What the admin's declared configuration (profiles, resources) is built on.

Profiles and resources are pydantic models: each field is declared once, with its type, its
default, its checks and its description, and from that one declaration come the validation at hub
start, the JSON Schema that ``pw-spawner schema`` prints for editors, and the reference pages of the
docs. This module holds what both share: the base class (frozen, unknown keys refused, a ``null``
value meaning "the default"), the field types with their own checks (one-line text, slugs, names a
scheduler accepts), and the translation of pydantic's errors into the "key: reason" form admins get
(``job.cores: must be at least 1``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

#: The JSON Schema dialect of what ``pw-spawner schema`` prints.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Names are shown on one line (the form, progress messages, the script's comments): no control
# characters at all, nor the Unicode line and paragraph separators. The script's `comment` filter
# (pw_spawner.scripts) folds the same characters.
LINE_BREAKING_CHARS = r"[\x00-\x1f\x7f\x85\u2028\u2029]"
_NOT_ONE_LINE = re.compile(LINE_BREAKING_CHARS)
# Values the admin writes into scripts are trusted, but they still must not contain a newline: one
# would end the directive (or command) line and start a new one.
_LINE_END = re.compile(r"[\n\r\x00]")

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_NAME_RE = re.compile(ENV_NAME_PATTERN.replace("$", r"\Z"))


class Declared(BaseModel):
    """A part of the admin's configuration: frozen once read, every key known.

    A key whose value is ``null`` (``cores:`` with nothing after it in YAML) takes its default,
    as if it were not there. An unknown key is refused with the list of known ones, so that a typo
    is not silently ignored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True,
                              use_attribute_docstrings=True)

    #: What an unknown key is called in the error ("unknown override").
    key_word: ClassVar[str] = "key"

    @classmethod
    def input_keys(cls) -> tuple[str, ...]:
        return tuple(info.alias or name for name, info in cls.model_fields.items())

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Reshape the input before its fields are validated (defaults that depend on other keys)."""
        return data

    @model_validator(mode="before")
    @classmethod
    def _known_keys_and_nulls(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        allowed = cls.input_keys()
        unknown = sorted(str(key) for key in data if key not in allowed)
        if unknown:
            raise PydanticCustomError(
                "unknown_key", "unknown {word} (allowed: {allowed})",
                {"key": unknown[0], "word": cls.key_word, "allowed": ", ".join(sorted(allowed))})
        return cls.prepare({key: value for key, value in data.items() if value is not None})


def key_error(path: str | int | tuple[str | int, ...], reason: str) -> PydanticCustomError:
    """An error about ``path`` below where it is raised (a model's check of one of its keys)."""
    where = path if isinstance(path, tuple) else (path,)
    return PydanticCustomError("at_key", "{reason}", {"path": where, "reason": reason})


# --------------------------------------------------------------------------------- field types


def _number_as_text(value: Any) -> Any:
    # YAML reads `partition: 2024` as a number; the admin meant the name.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _one_line(value: str) -> str:
    if _NOT_ONE_LINE.search(value):
        raise ValueError("must be a single line without control characters")
    return value


def _no_line_end(value: str) -> str:
    if _LINE_END.search(value):
        raise ValueError("must be a single line")
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty string")
    return value


class matching:
    """A check that the whole value matches ``pattern`` (``{value!r}`` in ``reason`` is filled in),
    with its own reason rather than pydantic's; the pattern also goes into the JSON Schema."""

    def __init__(self, pattern: str, reason: str):
        self.pattern, self.reason = pattern, reason
        self._compiled = re.compile(pattern.removeprefix("^").removesuffix("$") + r"\Z")

    def _check(self, value: str) -> str:
        if not self._compiled.match(value):
            raise ValueError(self.reason.format(value=value))
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {**handler(schema), "pattern": self.pattern}


#: Text (a number is read as its digits).
Text = Annotated[str, BeforeValidator(_number_as_text)]
#: Text shown on one line: a newline or control character is refused, not cleaned up.
OneLine = Annotated[Text, AfterValidator(_one_line)]
#: Text that goes into a script line: no line end.
ScriptLine = Annotated[str, AfterValidator(_non_empty), AfterValidator(_no_line_end)]
#: Text for a shell line, possibly empty: no line end.
ScriptText = Annotated[Text, AfterValidator(_no_line_end)]
#: One line of text that is not blank.
NonEmptyLine = Annotated[OneLine, AfterValidator(_non_empty)]
#: The name of an environment module (``module load`` takes it as one word).
ModuleName = Annotated[str, matching(r"^[A-Za-z0-9_.+/@-]+$", "{value!r} is not a module name")]
#: A lower-case identifier, the value a form posts.
Slug = Annotated[Text, matching(SLUG_PATTERN, "{value!r} is not a slug (lower-case letters, digits, '-', "
                                              "'_', '.')")]
#: A name a scheduler accepts for a partition, queue, account or QOS.
SchedulerName = Annotated[Text, matching(r"^[A-Za-z0-9_.@:+-]+$",
                                         "{value!r} has characters a scheduler name cannot have")]
#: An environment variable's name.
EnvName = Annotated[str, matching(ENV_NAME_PATTERN, "{value!r} is not a variable name")]


def enum_schema(names: Callable[[], Iterable[str]]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that lists ``names()`` as the value's ``enum``."""
    def extra(schema: dict[str, Any]) -> None:
        schema["enum"] = list(names())
        schema.pop("pattern", None)

    return extra


# --------------------------------------------------------------------------------- errors


def error_key(loc: Iterable[int | str], prefix: str = "") -> str:
    """``('environments', 0, 'modules', 1)`` as ``environments[0].modules[1]``."""
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else str(part)
    return key


def _got(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


_EXPECTED = {"int_type": "int", "int_parsing": "int", "int_from_float": "int", "bool_type": "bool",
             "bool_parsing": "bool", "string_type": "str", "list_type": "list", "tuple_type": "list",
             "float_type": "number", "float_parsing": "number"}


def describe(error: ErrorDetails, prefix: str = "") -> tuple[str, str]:
    """The key (with ``prefix`` before it) and the reason of one pydantic error, in admins' words."""
    loc = list(error["loc"])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "unknown_key":
        loc.append(ctx["key"])
    if kind == "at_key":
        loc.extend(ctx["path"])
    key = error_key(loc, prefix)
    if kind == "missing":
        return key, "is required"
    if kind == "value_error":
        return key, str(ctx.get("error", error["msg"]))
    if kind in _EXPECTED:
        return key, f"expected {_EXPECTED[kind]}, got {_got(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return key, f"expected a mapping, got {type(value).__name__}"
    if kind == "greater_than_equal":
        return key, f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return key, f"must be at most {ctx['le']}"
    return key, error["msg"]


def first_error(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """The key and reason of the first thing wrong (an admin fixes one at a time)."""
    return describe(exc.errors(include_url=False)[0], prefix)


def json_schema(model: Any, title: str, description: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of what ``model`` (a model or a TypeAdapter) validates."""
    from pydantic import TypeAdapter

    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    schema = adapter.json_schema(by_alias=True, mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, "title": title, "description": description, **schema}


__all__ = [
    "ENV_NAME_RE",
    "JSON_SCHEMA_DIALECT",
    "LINE_BREAKING_CHARS",
    "Declared",
    "EnvName",
    "ModuleName",
    "NonEmptyLine",
    "OneLine",
    "SchedulerName",
    "ScriptLine",
    "ScriptText",
    "Slug",
    "Text",
    "describe",
    "enum_schema",
    "error_key",
    "first_error",
    "json_schema",
    "key_error",
    "matching",
]
