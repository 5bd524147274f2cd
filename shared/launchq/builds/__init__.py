"""Images built from source by Cloud Build: content-addressed, built once, followed in bulk.

The image of a source item on a queue with a `builder` block is
`DESTINATION:<source sha256>-<8 hex of the builder settings>`: the same source with the same
settings is the same tag, so it is built once, ever. Three layers keep it once:

1. Artifact Registry: before building, one tag GET; a tag that exists is a finished build.
2. Firestore: one document per build key, `builds/{key}`, made with `create()` (fails if it
   exists, like the item claims in `launchq.store`). The delivery that creates it builds; every
   other delivery of an item with the same key joins it (`waiting`, an array union) and does not.
3. Cloud Build tags: the build carries `launchq-<key>`, so a claim whose builder died between
   claiming and creating is repaired by a list on that tag before a second create.

A failed build fails the items that waited on it, and a redelivery of one of them, but it does
not poison the key: a NEW item with the same source and settings builds again (attempt N+1,
tagged `launchq-<key>-rN+1`). Without that, a transient Cloud Build failure, or a permission
fixed after a refusal, would fail every later item of that source until someone deleted the
document by hand. The restart is a compare-and-swap on the failed document (`last_update_time`
precondition), so items arriving together after a failure still start one build, and each
rebuild needs a new item, so nothing loops.

The sweep follows every open build with ONE `builds.list` per 20 keys (a filter OR-ing their
tags), not a GET per build, and turns each finished one into the states of the items waiting on
it (`launchq.sweep` calls `launchq.builds.follower.settle_building`).

Modules: `records` (the build document, typed), `builder` (claim, create, follow), `gate` (the
dispatcher's decision for a source item), `follower` (the sweep's step), `sources` (a source
archive checked before its item is accepted).
"""
