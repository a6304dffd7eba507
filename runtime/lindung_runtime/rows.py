"""Rows a transaction inserts, built and written cheaply on the hot path.

A SQLModel table model's `__init__` costs ~100 µs (pydantic machinery plus one instrumented
`__setattr__` per field), and the ORM's flush then spends as much again per object on identity
and state bookkeeping; a consumer creating two or three rows per event spent more on that than on
the database. The values put in here come from events already validated by their contract, so a
`NewRow` holds them as plain attributes and the unit of work inserts each table's new rows with
one multi-row INSERT (Core), as it already does for the outbox and inbox. Rows loaded from the
database stay ordinary ORM objects.
"""

from __future__ import annotations

from typing import Any

from pydantic.fields import FieldInfo
from sqlalchemy import Table, and_, inspect, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

_fields: dict[type[Any], dict[str, FieldInfo]] = {}
_columns: dict[type[Any], list[tuple[str, str]]] = {}
_primary_keys: dict[type[Any], tuple[str, ...]] = {}


class NewRow:
    """A row of `model` not yet in the database: read and change it like the model's row.

    A change made after the row was written (a flush mid-batch) is saved by the next write.
    """

    _model: type[SQLModel]

    def __init__(self, model: type[SQLModel], values: dict[str, Any]) -> None:
        fields = _fields.get(model)
        if fields is None:
            fields = _fields[model] = dict(model.model_fields)
        unknown = values.keys() - fields.keys()
        if unknown:
            raise TypeError(f"{model.__name__} has no field(s) {sorted(unknown)}")
        for name, field in fields.items():
            if name not in values:
                values[name] = field.get_default(call_default_factory=True)
        state = self.__dict__
        state.update(values)
        state["_model"] = model
        state["_stored"] = False
        state["_changed"] = False

    def __setattr__(self, name: str, value: Any) -> None:
        state = self.__dict__
        state[name] = value
        if state["_stored"]:
            state["_changed"] = True

    def __repr__(self) -> str:
        return f"NewRow({self._model.__name__}, {self.values()})"

    def values(self) -> dict[str, Any]:
        """The row by column name, as the INSERT takes it."""
        state = self.__dict__
        return {column: state[attribute] for attribute, column in columns_of(self._model)}


def columns_of(model: type[Any]) -> list[tuple[str, str]]:
    """(attribute, column name) of each mapped column."""
    columns = _columns.get(model)
    if columns is None:
        columns = _columns[model] = [
            (prop.key, prop.columns[0].name) for prop in inspect(model).column_attrs
        ]
    return columns


def primary_key_attributes(model: type[Any]) -> tuple[str, ...]:
    """The attribute names of the model's primary key, in the key's column order."""
    names = _primary_keys.get(model)
    if names is None:
        mapper = inspect(model)
        names = _primary_keys[model] = tuple(
            mapper.get_property_by_column(column).key for column in mapper.primary_key
        )
    return names


async def write_new_rows(connection: AsyncConnection, rows: list[NewRow]) -> None:
    """Insert the rows not yet written (one statement per table); update those changed since."""
    fresh: dict[type[Any], list[NewRow]] = {}
    for row in rows:
        state = row.__dict__
        if not state["_stored"]:
            fresh.setdefault(state["_model"], []).append(row)
        elif state["_changed"]:
            table: Table = state["_model"].__table__
            values = row.values()
            await connection.execute(
                update(table)
                .where(and_(*(column == values[column.name] for column in table.primary_key)))
                .values(values)
            )
            state["_changed"] = False
    for model, new in fresh.items():
        await connection.execute(model.__table__.insert(), [row.values() for row in new])
        for row in new:
            row.__dict__["_stored"] = True
