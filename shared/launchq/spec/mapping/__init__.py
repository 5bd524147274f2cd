"""THE table from W&B-style queue-config keys (`spec.*`, `run.*`) to `CustomJob` REST fields.

A W&B queue config holds the keyword arguments of the high-level SDK: `spec` for
`aiplatform.CustomJob(...)`, `run` for `CustomJob.submit(...)`. W&B reads 13 of those keys and
drops the rest without a word. launchq reads every one, and reaches every field of `CustomJob`
(`tests/unit/test_mapping*.py` checks the table against the installed proto descriptors, so a
field added by a newer library shows up as a failing test, not as a silently missing feature).

The typed models (`models`) describe `spec`/`run` *after* template substitution (so
`accelerator_count: "{{gpus}}"` is an integer by the time they see it). `body.to_body` then walks
the validated values and writes each one to its `ROWS` target in proto3 JSON exactly as the REST
client sends it: lowerCamelCase names (map keys untouched), int64 as strings, Durations as "Ns",
enums by name, default values omitted. Nothing here imports `google.cloud.aiplatform`: it is on
the dispatch function's cold-start path.

The package is split by idea: `vocabulary` (enums, limits), `models` (typed `spec`/`run`), `table`
(`ROWS`, hints), `checks` (validation and the rules between fields), `body` (the writer).
"""
