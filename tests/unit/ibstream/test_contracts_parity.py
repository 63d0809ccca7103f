"""The pydantic models mirror the `.avsc` files field by field: names, order, types, optionality, defaults.

A schema is compared as the loader reads it, includes expanded; each include in `avro/include/` has its own model.
"""

from __future__ import annotations

import json
import types
import typing
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from ibstream.contracts import INCLUDE_TYPES, RECORD_TYPES, TERM_FIELDS, TOPICS, OrderIntent, Record, RoutedOrder
from ibstream.contracts.serde import AVRO_DIR, INCLUDE_DIR, read_schema

PRIMITIVES: dict[str, type] = {"string": str, "double": float, "long": int, "int": int, "boolean": bool, "bytes": bytes}


def _unwrap_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _assert_type_matches(avro_type: Any, annotation: Any, where: str, named: dict[str, Any]) -> None:
    annotation = _unwrap_annotated(annotation)
    if isinstance(avro_type, list):
        assert avro_type[0] == "null" and len(avro_type) == 2, f"{where}: only [null, T] unions are used"
        origin = typing.get_origin(annotation)
        assert origin in (typing.Union, types.UnionType), f"{where}: nullable in Avro, not Optional in the model"
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        assert len(args) == 1 and type(None) in typing.get_args(annotation), f"{where}: expected T | None"
        _assert_type_matches(avro_type[1], args[0], where, named)
        return
    assert typing.get_origin(annotation) not in (typing.Union, types.UnionType), f"{where}: Optional but not in Avro"
    if isinstance(avro_type, str) and avro_type in named:
        avro_type = named[avro_type]
    if isinstance(avro_type, str):
        assert annotation is PRIMITIVES[avro_type], f"{where}: Avro {avro_type} vs model {annotation}"
        return
    if avro_type.get("logicalType") == "timestamp-micros":
        assert annotation is datetime, f"{where}: timestamp-micros must be a datetime"
        return
    kind = avro_type["type"]
    if kind == "enum":
        named[avro_type["name"]] = avro_type
        assert isinstance(annotation, type) and issubclass(annotation, StrEnum), f"{where}: enum must be a StrEnum"
        assert [member.value for member in annotation] == avro_type["symbols"], f"{where}: enum symbols differ"
    elif kind == "array":
        assert typing.get_origin(annotation) is list, f"{where}: array must be a list"
        _assert_type_matches(avro_type["items"], typing.get_args(annotation)[0], f"{where}[]", named)
    elif kind == "map":
        assert typing.get_origin(annotation) is dict, f"{where}: map must be a dict"
        key, value = typing.get_args(annotation)
        assert key is str
        _assert_type_matches(avro_type["values"], value, f"{where}{{}}", named)
    elif kind == "record":
        named[avro_type["name"]] = avro_type
        assert isinstance(annotation, type) and issubclass(annotation, Record), f"{where}: record must be a Record"
        _assert_record_matches(avro_type, annotation, named)
    else:
        _assert_type_matches(kind, annotation, where, named)


def _assert_record_matches(schema: dict[str, Any], model: type[Record], named: dict[str, Any]) -> None:
    avro_fields = schema["fields"]
    model_fields = model.model_fields
    assert [f["name"] for f in avro_fields] == list(model_fields), f"{model.__name__}: field names or order differ"
    hints = typing.get_type_hints(model, include_extras=True)
    for avro_field in avro_fields:
        name = avro_field["name"]
        where = f"{model.__name__}.{name}"
        _assert_type_matches(avro_field["type"], hints[name], where, named)
        info = model_fields[name]
        if "default" in avro_field:
            assert not info.is_required(), f"{where}: Avro has a default, the model requires the field"
            assert info.default == avro_field["default"], f"{where}: defaults differ"
        else:
            assert info.is_required(), f"{where}: the model has a default Avro lacks (old data would not decode)"


@pytest.mark.parametrize("model", RECORD_TYPES, ids=lambda model: model.__name__)
def test_model_mirrors_schema(model: type[Record]) -> None:
    schema = read_schema(AVRO_DIR / f"{model.schema_name}.avsc")
    assert schema["name"] == model.__name__
    _assert_record_matches(schema, model, {})


@pytest.mark.parametrize("model", INCLUDE_TYPES, ids=lambda model: model.__name__)
def test_include_model_mirrors_its_include(model: type[Record]) -> None:
    schema = read_schema(AVRO_DIR / f"{model.schema_name}.avsc", avro_dir=None)
    assert schema["name"] == model.__name__
    _assert_record_matches(schema, model, {})


def test_every_include_has_a_model() -> None:
    stems = {f"{INCLUDE_DIR}/{path.stem}" for path in Path(AVRO_DIR, INCLUDE_DIR).glob("*.avsc")}
    assert stems == {model.schema_name for model in INCLUDE_TYPES}


@pytest.mark.parametrize("model", [OrderIntent, RoutedOrder], ids=lambda model: model.__name__)
def test_order_terms_are_included_not_restated(model: type[Record]) -> None:
    raw = json.loads((AVRO_DIR / f"{model.schema_name}.avsc").read_text())
    assert {"include": "order_terms"} in raw["fields"]
    assert not {f.get("name") for f in raw["fields"]} & set(TERM_FIELDS)
    assert list(model.model_fields)[1 : 1 + len(TERM_FIELDS)] == list(TERM_FIELDS)


def test_every_schema_file_has_a_model() -> None:
    stems = {path.stem for path in Path(AVRO_DIR).glob("*.avsc")}
    assert stems == {model.schema_name for model in RECORD_TYPES}


def test_topics_are_unique_and_keyed() -> None:
    names = [spec.name for spec in TOPICS]
    assert len(names) == len(set(names))
    assert all(name.endswith(".v1") for name in names)
