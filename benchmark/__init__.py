"""ackd-bench: benchmark."""
