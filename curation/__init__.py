"""ackd-bench: curation."""
