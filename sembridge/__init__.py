"""ackd-bench: sembridge."""
