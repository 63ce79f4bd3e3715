"""Event Workbench: the CLI and the control of the embedded local stack.

Library code lives in eventmodel/, generator/, pipeline/ and emulator/; this package is the thin
shell users meet (`workbench ...`).
"""
