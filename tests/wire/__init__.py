"""Tests of the member transport (p2pledger.wire) and its crypto (kx, aead)."""
