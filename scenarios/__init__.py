"""What-if scenarios: the YAML schema, its validation, and the built-in scenarios (``gradwire.scenarios``)."""
