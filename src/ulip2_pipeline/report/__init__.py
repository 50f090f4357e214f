"""A visual report of a dataset: self-contained HTML pages that Snakemake's report embeds.

Each page is one file with its images inlined (data URIs), hand-written SVG charts and
inline CSS, so it renders offline, inside Snakemake's report or on its own. Pages are
built from a bounded sample of the dataset, read shard by shard, so an 800k-object
dataset gives a report of the same size as the demo's.

- ``collect``: one streaming pass over the ranked and triplet shards (statistics, the
  object sample, the lowest and highest scored kept captions), then the sampled rows.
- ``splat``: a NumPy point-cloud renderer (recorded cameras, depth ordering).
- ``svg``, ``html``: charts and page building blocks.
- ``pages``: the dataset pages; ``quality`` (flags with examples), ``failures`` and ``training`` the others.
"""
