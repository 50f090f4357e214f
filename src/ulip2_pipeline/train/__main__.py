"""``python -m ulip2_pipeline.train``: see ulip2_pipeline.train.cli."""

from ulip2_pipeline.train.cli import main

main()
