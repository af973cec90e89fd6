"""YAML as a config file needs it: a key given twice is an error naming its line, and every
number keeps the text it was written as, so that a key typed as text gets that text.

Plain YAML reads ``name: 2024.10`` as the float 2024.1 and ``name: 12:30`` as 750 (a YAML 1.1
sexagesimal number), and ``a: {...}`` given twice keeps the second silently. Dates stay text:
no config key is a date.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor


class SourcedInt(int):
    """An int read from YAML, with the text it was written as (``source``)."""

    source: str


class SourcedFloat(float):
    """A float read from YAML, with the text it was written as (``source``)."""

    source: str


class DuplicateKeyError(ConstructorError):
    def __init__(self, key: object, line: int):
        super().__init__(problem=f"key {key!r} appears twice (again at line {line})")
        self.key, self.line = key, line


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and keeps numbers' source text."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise DuplicateKeyError(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _sourced(kind: type, construct):
    def constructor(loader, node):
        value = kind(construct(loader, node))
        value.source = node.value
        return value

    return constructor


ConfigLoader.add_constructor(
    "tag:yaml.org,2002:int", _sourced(SourcedInt, SafeConstructor.construct_yaml_int)
)
ConfigLoader.add_constructor(
    "tag:yaml.org,2002:float", _sourced(SourcedFloat, SafeConstructor.construct_yaml_float)
)
ConfigLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


def load_yaml(text: str) -> Any:
    """Parse ``text`` with :class:`ConfigLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=ConfigLoader)


def as_written(value: Any) -> Any:
    """The text a number was written as, or the value itself."""
    return getattr(value, "source", value)


# Dumped back as written: a value read from one config and passed on as an override (a study's
# run keys) reaches the key it is meant for with its text intact.
def _represent_as_written(tag: str):
    def represent(dumper: yaml.SafeDumper, value) -> yaml.ScalarNode:
        return dumper.represent_scalar(f"tag:yaml.org,2002:{tag}", value.source)

    return represent


yaml.SafeDumper.add_representer(SourcedInt, _represent_as_written("int"))
yaml.SafeDumper.add_representer(SourcedFloat, _represent_as_written("float"))
