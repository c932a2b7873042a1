"""The model zoo: one small file per model, registered by name."""
