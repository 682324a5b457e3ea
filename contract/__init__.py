"""The shared kernel every stage depends on: settings, message types, vocabularies and the ranking
result. It imports nothing of the project; stream, features and serving import it, never each other
backwards (see docs/architecture.md)."""
