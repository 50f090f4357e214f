"""(rows, N, 3) point arrays <-> Arrow list columns, without Python loops in either direction."""
from __future__ import annotations

import numpy as np
import pyarrow as pa


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
