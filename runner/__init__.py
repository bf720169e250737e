"""runner: a declarative pipeline-spec runner for PEFT adapters."""

__version__ = "0.1.0"
