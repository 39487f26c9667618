"""Driftway's stream processors (faust-streaming), one module each: thin agents over pure logic."""
