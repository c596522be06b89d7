"""Typed contracts for every document that crosses a stage boundary.

Each on-disk document that more than one stage touches has one pydantic model here, one writer
and one reader. Documents carry an integer ``schema_version`` (the major version): a reader
refuses a newer one with a one-line reason, and reads older ones only where it says so.
"""
