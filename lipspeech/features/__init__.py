"""Per-utterance features and the feature stores."""
