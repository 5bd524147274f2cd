"""A tiny trainer shipped as source: `launchq enqueue --source examples/source-trainer`."""
