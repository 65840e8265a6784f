"""``python -m pw_spawner.testing.fake [SCHEDULER] COMMAND [ARGS...]``: run one fake command.

The wrappers (and the fake itself, for a job's supervisor) run this file by its path instead:
a caller that strips ``PYTHONPATH`` from the environment (the spawner does) must still reach the
package, so run that way it puts the directory holding ``pw_spawner`` first on ``sys.path``, in
place of its own directory. The fake imports nothing but the standard library.
"""

import os
import sys

if not __package__:
    here = os.path.dirname(os.path.realpath(__file__))  # .../pw_spawner/testing/fake
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(here)))

from pw_spawner.testing.fake.cli import main

sys.exit(main())
