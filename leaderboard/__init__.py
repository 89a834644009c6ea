"""ackd-bench: leaderboard."""
