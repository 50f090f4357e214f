"""(rows, N, 3) point arrays <-> Arrow list columns, without Python loops in either direction."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

POINT_COLUMNS = ("xyz", "rgb")


def to_arrow(values: np.ndarray, value_type: pa.DataType, fixed_length: bool = False) -> pa.Array:
    """list<fixed_size_list<3>> (points shards) or, with ``fixed_length``, a fixed-size outer list (triplets)."""
    rows, n, width = values.shape
    inner = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=value_type), width)
    if fixed_length:
        return pa.FixedSizeListArray.from_arrays(inner, n)
    return pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * n), inner)


def to_numpy(table: pa.Table, column: str, dtype=None) -> np.ndarray:
    """A (rows, N, 3) column of ``table`` as one NumPy array (every row holds N points)."""
    flat = table.column(column).combine_chunks().flatten().flatten().to_numpy(zero_copy_only=False)
    if dtype is not None:
        flat = flat.astype(dtype, copy=False)
    return flat.reshape(table.num_rows, -1, 3)


def rows_with_points(table: pa.Table) -> list[dict]:
    """The table's rows as dicts, its point columns (where present) as (N, 3) NumPy arrays."""
    arrays = {c: to_numpy(table, c) for c in POINT_COLUMNS if c in table.column_names}
    rows = table.drop_columns(list(arrays)).to_pylist()
    for index, row in enumerate(rows):
        row.update({c: values[index] for c, values in arrays.items()})
    return rows
