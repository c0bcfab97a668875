"""The fairness audit: who is flagged, how often, how accurate it is per group, and what a feedback loop would do."""
