"""``python -m ulip2_pipeline.train``: see ulip2_pipeline.train.cli."""
from .cli import main

main()
