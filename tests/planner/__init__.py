"""Tests of the pure planner: tables, properties and a state machine over an in-memory world."""
