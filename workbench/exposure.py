"""Where the workbench's servers listen: the check and the warning live in eventmodel.exposure, below every
package that starts a server (the Pub/Sub emulator included, which must not import the workbench)."""

from eventmodel.exposure import is_loopback, warn_if_exposed

__all__ = ["is_loopback", "warn_if_exposed"]
