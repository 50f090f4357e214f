"""Names for the plain data that crosses modules: they are dicts because pyarrow, json and pickle
give dicts; the name says which kind (configuration is typed instead: see ``settings``)."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]  # one row of a Parquet table, as pyarrow's Table.to_pylist() gives it
Document = dict[str, Any]  # a JSON document: metrics, a zero-shot report, a dataset summary, a model config
Message = dict[str, Any]  # a request or reply between a stage and its worker process (pickled)
RawConfig = dict[str, Any]  # the configuration as YAML gives it, before validation fills in the defaults
