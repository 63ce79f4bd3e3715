"""Event Workbench: the CLI and the control of the embedded local stack.

Library code lives in eventmodel/, generator/, pipeline/, emulator/ and loadtest/; this package is the thin
shell users meet (`workbench ...`).
"""
