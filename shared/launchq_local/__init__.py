"""launchq's local stack: everything that runs only on a laptop or in CI, never in a function.

- `standin`: a stand-in for the Vertex AI CustomJob REST API (`launchq vertex-emulator`);
- `emulators`: the Pub/Sub and Firestore emulators, started and stopped as one harness;
- `devstack`: the whole loop on one machine (`launchq dev`);
- `webhook_receiver`: a team's webhook endpoint, locally: where the stack's notify function
  sends notifications, checked and recorded for `launchq dev` to print;
- `demo`: the story `make demo` tells.

Nothing in `launchq` (the runtime core the Cloud Functions archives contain) imports this
package; `tests/unit/test_packaging.py` checks it.
"""
