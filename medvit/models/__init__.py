"""medvit.models."""
