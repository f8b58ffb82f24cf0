"""The `chaser` command line (click), built only on the SDK in `chaser.client`."""
