"""Local emulators of Google Cloud services that the workbench runs without a cloud account."""
