"""Flex Template entry point: the launcher runs this file with the template's parameters as flags.

It sits outside the pipeline package on purpose: run as a script, its folder becomes sys.path[0], and the
package's own modules (core, options, ...) must not turn into top-level modules.
"""

import logging

from pipeline.runners import DATAFLOW
from pipeline.stream import run

if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run(default_runner=DATAFLOW)
