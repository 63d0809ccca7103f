"""ibstream."""
