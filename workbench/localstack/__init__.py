"""The embedded local stack: emulators started in the background on loopback, for laptops with no cloud."""
