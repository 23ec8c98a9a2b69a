"""Tests of the Raft ordering core: unit, scripted, scenario and seeded simulation."""
