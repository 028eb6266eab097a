"""medvit.tracking."""
